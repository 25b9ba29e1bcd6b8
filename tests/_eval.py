"""What the evaluation tests share: the predictions' columns, and one torch thread for a module's generation."""

from __future__ import annotations

from contextlib import contextmanager

PREDICTION_COLUMNS = [
    "question",
    "reference",
    "completion",
    "predicted_answer",
    "correct",
    "extracted",
    "num_tokens",
    "finish_reason",
]


@contextmanager
def one_torch_thread():
    """Generate with one thread: on a 2-core machine where another process holds a core, two OpenMP threads make
    generation ~15x slower (oversubscription); one keeps a module's time bounded either way."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
