"""Stage 3: quality gates on generated rows (verification, dedup, decontamination, self-consistency) and coverage."""
