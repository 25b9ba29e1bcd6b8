"""Stage 4 (paper §4): LoRA fine-tuning with TRL and evaluation (density vs accuracy, §4.4, is analysis/density.py)."""
