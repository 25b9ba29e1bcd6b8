"""Shared pieces below every stage: the student model loader, answer extraction, column/array helpers, validation."""
