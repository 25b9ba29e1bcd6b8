"""Stage 1 (paper §3.2-3.5): the student's embedding space: embed, reduce, sparse regions, seed pairs,
interpolation."""
