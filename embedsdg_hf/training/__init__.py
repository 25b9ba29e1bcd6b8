"""Stage 4 (paper §4): LoRA fine-tuning with TRL, evaluation, and density-vs-accuracy analysis (§4.4)."""
