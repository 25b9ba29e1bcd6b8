"""Stage 2 (paper §3.6-3.7): decode the interpolations through the student, ask the teacher, parse its answers."""
