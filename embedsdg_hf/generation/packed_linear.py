"""bf16 linear layers on CPU with their weights packed once for oneDNN, for the length of one generation.

Each decoding step multiplies a few rows (the batch's new tokens) by every weight matrix of the model. On CPU,
``torch.nn.functional.linear`` in bfloat16 re-lays the weight out for oneDNN at each call; with one to a few dozen
rows that is most of the call. :func:`packed_linears` packs every bf16 ``nn.Linear`` weight of a model once
(``torch.ops.mkldnn._reorder_linear_weight``, what ``torch.compile``'s CPU weight prepacking does) and runs the
layers with ``torch.ops.mkldnn._linear_pointwise`` while the context is open; leaving it restores the layers. The
products are the same oneDNN bf16 kernel's (``tests/test_packed_linear.py`` checks that the tokens do not change).

The weights are packed again at every entry, so a model trained between two generations is never run with stale
weights. A context opened on a model that is already packed (nested, or from another thread) leaves it to the one
that packed it, so the model's own layers always come back. Nothing changes where it does not apply: a model on
another device or in another dtype, or a torch without oneDNN bf16 support.

Example:
    >>> with packed_linears(model):  # doctest: +SKIP
    ...     logits = model(input_ids=ids).logits
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref

from ..common.models import fork_safe_torch

_LOCK = threading.Lock()
_PACKED: weakref.WeakSet = weakref.WeakSet()  # models whose layers a context has swapped, until it closes


@functools.cache
def _supported() -> bool:
    torch = fork_safe_torch()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN, or without these ops
        return False


def _packed_forward(packed, bias, x):
    torch = fork_safe_torch()
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def _linears(model):
    torch = fork_safe_torch()
    for module in model.modules():
        if (
            type(module) is torch.nn.Linear  # subclasses (quantised, LoRA) keep their own forward
            and module.weight.dtype == torch.bfloat16
            and module.weight.device.type == "cpu"
            and (module.bias is None or module.bias.dtype == torch.bfloat16)
        ):
            yield module


@contextlib.contextmanager
def packed_linears(model, *, batch_hint: int = 1):
    """Run ``model``'s bf16 CPU ``nn.Linear`` layers with weights packed for oneDNN while the context is open.

    ``batch_hint`` is the row count the packing is laid out for (any count runs; small ones gain most).
    """
    torch = fork_safe_torch()
    swapped = []
    with _LOCK:
        owner = _supported() and model not in _PACKED
        if owner:
            _PACKED.add(model)
            with torch.inference_mode():
                for module in _linears(model):
                    packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), batch_hint)
                    had_forward = "forward" in module.__dict__
                    swapped.append((module, had_forward, module.__dict__.get("forward")))
                    module.forward = functools.partial(_packed_forward, packed, module.bias)
    try:
        yield len(swapped)
    finally:
        if owner:
            with _LOCK:
                for module, had_forward, forward in swapped:
                    if had_forward:
                        module.forward = forward
                    else:
                        del module.forward
                _PACKED.discard(model)
