"""Finished decodings, addressed by what was decoded, so runs that share pairs decode each of them once.

A decoding is keyed by the exact input the student sees (the bytes of the spliced embedding sequence: copy prompt,
averaged seeds, ``Output:`` cue), the student, the engine kind, the row's token budget and the sampling settings
(:func:`decode_key`). Anything that changes the input (seeds, weights, ``rescale``, the few-shot examples, which are
drawn with the run's ``seed``, the prompt template, the model's embedding matrix) changes the key, so a hit is the
same request decoded before. Budget sweeps are where it pays: with the same seed and selector, a smaller budget's
pairs are the first pairs of a larger one, and a run with budget 48 after one with 12 and 24 decodes only the new
ones.

What it does not promise: the bit-identical text a fresh decode in another batch would give. Batched generation pads
rows to a common length, and in bf16 the padding can move a greedy choice late in a long text; a hit returns the text
this input got the first time.

The file is a :class:`~embedsdg_hf.common.jsonl_store.JsonlStore` (append-only, fsync per record, one writer at a
time). Use it through ``add_decoded_text(..., cache=path)`` or the ``decode_cache`` key of ``embedsdg run``.
"""

from __future__ import annotations

import hashlib
import os

from ..common.jsonl_store import JsonlStore, canonical_key

__all__ = ["DecodeCache", "decode_key"]

_KEY_VERSION = 1


def decode_key(
    sequence, *, model: str, engine: str, budget: int, do_sample: bool, temperature: float, seed: int, **extra
) -> str:
    """The content address of one decoding: the sha256 of its input embeddings' bytes (as float32) and settings.

    Example:
        >>> import torch
        >>> seq = torch.ones(3, 4)
        >>> a = decode_key(seq, model="m", engine="transformers", budget=8, do_sample=False, temperature=1.0, seed=0)
        >>> b = decode_key(seq, model="m", engine="transformers", budget=9, do_sample=False, temperature=1.0, seed=0)
        >>> a != b and len(a) == 64
        True
    """
    data = sequence.detach().float().cpu().contiguous().numpy()
    payload = {
        "version": _KEY_VERSION,
        "input": hashlib.sha256(data.tobytes()).hexdigest(),
        "shape": list(data.shape),
        "model": model,
        "engine": engine,
        "budget": int(budget),
        "do_sample": bool(do_sample),
        # greedy decoding ignores temperature and seed: the same text whatever they are
        "temperature": float(temperature) if do_sample else None,
        "seed": int(seed) if do_sample else None,
        **extra,
    }
    return canonical_key(payload)


def _decoded(record) -> tuple[str, str]:
    text, finish = record["text"], record["finish_reason"]
    if not isinstance(text, str) or finish not in ("stop", "length"):
        raise ValueError("not a decoding record")
    return text, finish


class DecodeCache(JsonlStore):
    """``(decoded_text, finish_reason)`` by :func:`decode_key`, in an append-only JSONL file.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with DecodeCache(Path(tempfile.mkdtemp()) / "decode.jsonl") as cache:
        ...     cache.put("k", ("Input: 3 apples", "stop"))
        ...     cache.get("k")
        ('Input: 3 apples', 'stop')
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__(
            path,
            what="decode cache",
            field="decoded",
            parse=_decoded,
            busy_fix="Runs that share a decode_cache must run one after the other; give this one its own file.",
        )

    def put(self, key: str, decoded: tuple[str, str]) -> None:
        """Append one finished decoding (text, finish reason) durably; a key already stored is left as it is."""
        text, finish = decoded
        super().put(key, (text, finish), {"text": text, "finish_reason": finish})
