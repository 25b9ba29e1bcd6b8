"""``add_embeddings``: pooled token embeddings of the student, as a fixed-length float32 column (METHOD.md §1).

The pooled vector of a text t is ``SM^e(t) x SM^w(t)``: the student's input-embedding rows of its tokens, weighted
per token and summed. Weights:

- ``"mask"``: 1 per token (the paper-literal sum of token embeddings);
- ``"mean"`` (default): 1/m per token (length-normalised);
- ``"attention"``: the attention each token receives in one layer of a real forward pass (normalised to sum to 1).

``"mask"`` and ``"mean"`` need no transformer forward pass: the whole step is the tokenizer plus one
``embedding_bag`` over the embedding matrix, which is why it runs at tokenizer speed.

The same tokenisation and weights are used for the seeds' token-embedding sequences of the interpolation step
(:func:`tokenize_and_weigh` is the one shared function), so pooled vectors and interpolations agree exactly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.mapping import column_array
from ..common.models import (
    BUILTIN_MODELS,
    fork_safe_torch,
    load_input_embeddings,
    load_student,
    load_tokenizer,
    resolve_model,
)
from ..common.options import WEIGHTS as _WEIGHTS
from ..common.splits import is_streaming, map_batched, splitwise
from ..common.text import render_texts
from ..common.validation import require_rows, require_template_columns, template_fields

logger = logging.getLogger(__name__)

WEIGHTS = _WEIGHTS
_VERSION = "1"  # bump when the computation changes, so cached results are not reused


@dataclass(frozen=True)
class EmbeddingSpec:
    """What defines an embedding: the model (and its revision), the text template, the weights, the max length.

    This is the whole pickled state of the ``Dataset.map`` function, so fingerprints are stable across runs and
    ``num_proc`` workers load the model lazily.
    """

    model: str
    text_template: str = "{question}\n{answer}"
    weights: str = "mean"
    max_length: int | None = None
    attention_layer: int = -1
    model_revision: str = ""
    version: str = _VERSION

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights={self.weights!r} is not supported; choose one of {list(WEIGHTS)}.")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise ValueError(f"max_length must be a positive int or None, got {self.max_length!r}.")
        template_fields(self.text_template)

    @classmethod
    def create(cls, model: str, **kwargs) -> EmbeddingSpec:
        """Build a spec, pinning the model revision and the default max length (the model's context size)."""
        spec = cls(model=model, **kwargs)
        max_length = spec.max_length or _model_max_length(model)
        return cls(**{**spec.__dict__, "max_length": max_length, "model_revision": model_revision(model)})

    def render(self, batch: dict[str, list]) -> list[str]:
        return render_texts(batch, self.text_template, template_fields(self.text_template))


def model_revision(spec: str) -> str:
    """A short content stamp of a local model folder (config + weight file sizes), so a changed model at the same
    path gets a new fingerprint. Hub ids return "" (the Hub revision is the caller's to pin)."""
    path = Path(resolve_model(spec))
    if not path.is_dir():
        return ""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for file in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{file.name}:{file.stat().st_size}".encode())
    if spec in BUILTIN_MODELS:
        digest.update(json.dumps(BUILTIN_MODELS[spec]).encode())
    return digest.hexdigest()[:16]


def _model_max_length(spec: str) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(spec))
    limits = [getattr(config, "max_position_embeddings", None), load_tokenizer(spec).model_max_length]
    limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**7]
    return min(limits) if limits else 4096


def tokenize_and_weigh(spec: EmbeddingSpec, texts: list[str]) -> tuple[list[list[int]], list[np.ndarray], list[int]]:
    """Token ids (truncated to ``spec.max_length``), per-token weights, and the untruncated token counts.

    This is the single definition of ``SM^w(t)`` used by both pooling and interpolation.
    """
    tokenizer = load_tokenizer(spec.model)
    encoded = tokenizer(texts, add_special_tokens=True, return_attention_mask=False)["input_ids"]
    counts = [len(ids) for ids in encoded]
    ids = [seq[: spec.max_length] for seq in encoded]
    if spec.weights == "attention":
        weights = _attention_weights(spec, ids)
    else:
        weights = [
            np.full(len(seq), 1.0 if spec.weights == "mask" else 1.0 / max(len(seq), 1), np.float32) for seq in ids
        ]
    return ids, weights, counts


def pool(spec: EmbeddingSpec, ids: list[list[int]], weights: list[np.ndarray] | None = None) -> np.ndarray:
    """``SM^e(t) x SM^w(t)`` for a batch, without materialising the m x N token matrices (one ``embedding_bag``)."""
    torch = fork_safe_torch()
    matrix = load_input_embeddings(spec.model)
    lengths = np.fromiter((len(seq) for seq in ids), dtype=np.int64, count=len(ids))
    flat = torch.from_numpy(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum())))
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
    if weights is None:
        mode = {"mask": "sum", "mean": "mean"}[spec.weights]
        out = torch.nn.functional.embedding_bag(flat, matrix, offsets, mode=mode)
    else:
        per_token = torch.from_numpy(np.concatenate(weights).astype(np.float32)) if len(flat) else None
        out = torch.nn.functional.embedding_bag(flat, matrix, offsets, mode="sum", per_sample_weights=per_token)
    return out.numpy()


class _LayerDone(Exception):
    """Raised by the capture hook: the layer whose attention is used has run, the rest of the model is not needed."""


def _attention_module(model, layer: int):
    """The self-attention module of decoder layer ``layer`` (llama, mistral, qwen, gemma, phi, gpt2, ... layouts)."""
    torch = fork_safe_torch()
    n_layers = model.config.num_hidden_layers
    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers]
    if not stacks:
        raise ValueError(f"Cannot find the {n_layers} decoder layers of {type(model).__name__} (weights='attention').")
    block = stacks[0][layer]
    for name in ("self_attn", "attn", "attention", "self_attention"):
        if isinstance(getattr(block, name, None), torch.nn.Module):
            return getattr(block, name)
    raise ValueError(f"Cannot find the attention module of {type(block).__name__} (weights='attention').")


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``accelerate launch`` / ``torchrun``; 0, 1 otherwise)."""
    torch = fork_safe_torch()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState()  # joins the process group the launcher set up (gloo on CPU, nccl on GPUs)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


ATTENTION_BATCH_TOKENS = 8192  # padded tokens per forward pass of weights="attention"


def _attention_weights(spec: EmbeddingSpec, ids: list[list[int]]) -> list[np.ndarray]:
    """Mean attention each token receives (over heads and over the queries that can see it) in one layer.

    One forward pass per batch of similar lengths (at most ``ATTENTION_BATCH_TOKENS`` padded tokens), stopped
    right after the chosen layer's attention (no later layers, no LM head, no other layer's attention map). Under
    ``accelerate launch`` / ``torchrun`` each process computes every world-th batch on its own device and the
    weights are gathered in order, so every process returns the same list.
    """
    torch = fork_safe_torch()
    rank, world = _rank_and_world()
    device = "cpu"
    if world > 1:
        from accelerate import PartialState

        device = str(PartialState().device)
    model, tokenizer = load_student(spec.model, attn_implementation="eager", device=device)
    captured = {}

    def capture(module, args, output):
        captured["attention"] = output[1]
        raise _LayerDone

    handle = _attention_module(model, spec.attention_layer).register_forward_hook(capture)
    weights: dict[int, np.ndarray] = {}
    order = [i for i in sorted(range(len(ids)), key=lambda i: len(ids[i])) if ids[i]]  # similar lengths together
    batches, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * len(ids[order[stop]]) <= ATTENTION_BATCH_TOKENS:
            stop += 1
        batches.append(order[start:stop])
        start = stop
    try:
        for chunk in batches[rank::world]:
            width = max(len(ids[i]) for i in chunk)
            input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):  # right padding keeps positions 0..m-1 for every text
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            with torch.inference_mode():
                try:
                    model(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False)
                except _LayerDone:
                    pass
            attention = captured.pop("attention").float().mean(dim=1).cpu()  # (B, S, S), averaged over heads
            for row, i in enumerate(chunk):
                m = len(ids[i])
                received = attention[row, :m, :m].sum(dim=0) / torch.arange(m, 0, -1, dtype=torch.float32)
                weights[i] = (received / received.sum()).numpy().astype(np.float32)
    finally:
        handle.remove()
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, weights)
        weights = {i: w for part in gathered for i, w in part.items()}
    return [weights.get(i, np.zeros(0, np.float32)) for i in range(len(ids))]


class _Embed:
    """The ``Dataset.map`` function of :func:`add_embeddings`; its only state is the spec and column names."""

    def __init__(self, spec: EmbeddingSpec, column: str, count_column: str):
        self.spec, self.column, self.count_column = spec, column, count_column

    def __call__(self, batch: dict[str, list]) -> dict[str, object]:
        ids, weights, counts = tokenize_and_weigh(self.spec, self.spec.render(batch))
        pooled = pool(self.spec, ids, weights if self.spec.weights == "attention" else None)
        return {self.column: pooled, self.count_column: np.asarray(counts, dtype=np.int32)}


@splitwise()
def add_embeddings(
    ds,
    *,
    model: str,
    text_template: str = "{question}\n{answer}",
    weights: str = "mean",
    max_length: int | None = None,
    attention_layer: int = -1,
    column: str = "embedding",
    count_column: str = "num_tokens",
    batch_size: int = 1000,
    **map_kwargs,
):
    """Add the student's pooled token embedding of every example as a fixed-length float32 column.

    Args:
        ds: a ``Dataset``, ``IterableDataset`` (embedded lazily as rows are read) or a ``DatasetDict`` /
            ``IterableDatasetDict`` (every split), whose columns the template names.
        model: student spec: Hub id, local folder, or built-in name (``"smollm2-135m-instruct"``).
        text_template: ``str.format`` template over columns: the student's training format of an example.
        weights: ``"mean"`` (default), ``"mask"`` (paper-literal sum) or ``"attention"`` (needs a forward pass).
        max_length: truncate longer texts (default: the model's context size); truncations are counted and warned.
        attention_layer: layer whose attention is used with ``weights="attention"``.
        column / count_column: output columns: the embedding, and the untruncated token count.
        batch_size, **map_kwargs: passed to ``Dataset.map`` (``num_proc``, ``load_from_cache_file`` ...).

    Example:
        >>> ds = add_embeddings(ds, model="smollm2-135m-instruct")  # doctest: +SKIP
        >>> len(ds[0]["embedding"])  # doctest: +SKIP
        576
    """
    from datasets import List, Value

    spec = EmbeddingSpec.create(
        model, text_template=text_template, weights=weights, max_length=max_length, attention_layer=attention_layer
    )
    require_rows(ds, step="add_embeddings")
    require_template_columns(ds, text_template)
    dim = int(load_input_embeddings(model).shape[1])
    streaming = is_streaming(ds)
    function = _Embed(spec, column, count_column)
    out = map_batched(
        ds,
        _WarnTruncatedPerBatch(function, count_column, spec.max_length) if streaming else function,
        new_features={column: List(Value("float32"), length=dim), count_column: Value("int32")},
        step="add_embeddings",
        batch_size=batch_size,
        desc=f"Embedding with {model} ({weights})",
        **map_kwargs,
    )
    if not streaming:
        _warn_truncated(out, count_column, spec.max_length)
    return out


class _WarnTruncatedPerBatch:
    """For an ``IterableDataset``, whose rows are only seen as they are read: the truncation warning per batch."""

    def __init__(self, function: _Embed, count_column: str, max_length: int):
        self.function, self.count_column, self.max_length = function, count_column, max_length

    def __call__(self, batch: dict[str, list]) -> dict[str, object]:
        out = self.function(batch)
        counts = np.asarray(out[self.count_column])
        n_long = int((counts > self.max_length).sum())
        if n_long:
            logger.warning(
                "%d of %d texts in this batch are longer than max_length=%d tokens (longest: %d); they were "
                "truncated to max_length before embedding.",
                n_long,
                len(counts),
                self.max_length,
                int(counts.max()),
            )
        return out


def _warn_truncated(ds, count_column: str, max_length: int) -> None:
    counts = column_array(ds, count_column)
    n_long, n_empty = int((counts > max_length).sum()), int((counts == 0).sum())
    if n_long:
        warnings.warn(
            f"{n_long} of {len(counts)} texts are longer than max_length={max_length} tokens (longest: "
            f"{int(counts.max())}); they were truncated to max_length before embedding.",
            UserWarning,
            stacklevel=3,
        )
    if n_empty:
        warnings.warn(f"{n_empty} texts have no tokens; their embedding is all zeros.", UserWarning, stacklevel=3)
