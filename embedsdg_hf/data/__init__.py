"""Seed pools, evaluation sets and the built-in word-problem generator (the data every stage reads)."""
