"""Experiments that run the whole pipeline end to end (the ablation), above every stage."""
