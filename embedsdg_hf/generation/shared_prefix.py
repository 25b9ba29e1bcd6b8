"""Batched generation after a shared prefix: the prefix is run once, its keys/values are kept once (not copied per
row), and each row only carries its own suffix.

Every pair's copy prompt P_d starts with the same ~1,300 tokens (chat header, the four few-shot examples); every
teacher prompt starts with the same instructions. ``generate(inputs_embeds=...)`` on the whole left-padded prompt
prefills those tokens again for every row and copies them into every row of the KV cache, which then grows by
``torch.cat`` at each step. This module instead:

- prefills the prefix once per process (batch 1) and keeps its keys/values per layer;
- prefills only each row's suffix, attending to the prefix keys (shared by all rows, broadcast in one matmul per
  KV head) and to its own suffix keys;
- writes new keys/values into a preallocated per-row buffer (no per-step concatenation);
- drops a row from the batch as soon as it emits a stop token or reaches its own budget;
- prefills the tails with SDPA in the model's dtype (as ``generate`` does), and at each new token computes the
  scores and softmax over [prefix, own keys] in float32 (as the CPU SDPA kernels do for bf16 inputs).

It plugs into any ``transformers`` decoder that dispatches attention through ``ALL_ATTENTION_FUNCTIONS`` (Llama,
Mistral, Qwen2/3, Gemma, ...): the model runs with ``use_cache=False`` and a registered attention function that owns
the cache. Positions are those of each unpadded sequence (prefix, then the suffix's real tokens), so a row's tokens
do not depend on the other rows of its batch. In float32 the greedy tokens equal ``model.generate`` on the whole
left-padded prompt (``tests/test_shared_prefix.py``); in bf16 they agree up to rounding, as any two kernels do.

Example:
    >>> tokens, finish = generate_after_prefix(model, prefix_ids, [suffix_embeds], [32], stops={2})  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..common.models import fork_safe_torch
from .packed_linear import packed_linears

ATTENTION = "embedsdg_shared_prefix"


@dataclass
class _State:
    """What the attention function reads and writes for one batch (passed to it as the ``shared_prefix`` kwarg)."""

    prefix_keys: list  # per layer: (kv_heads, P, head_dim) float32
    prefix_values: list
    keys: dict = field(default_factory=dict)  # per layer: (B, kv_heads, S_max, head_dim) float32, allocated lazily
    values: dict = field(default_factory=dict)
    valid: object = None  # (B, S_max) bool: False where a row is left-padded; S_max sizes the key buffers
    length: int = 0  # suffix positions written so far

    def keep(self, rows) -> None:
        """Keep only ``rows`` of the batch (finished rows leave)."""
        for store in (self.keys, self.values):
            for layer, tensor in store.items():
                store[layer] = tensor.index_select(0, rows)
        self.valid = self.valid.index_select(0, rows)


class DecodeControl(Protocol):
    """Per-row constraints on :func:`generate_after_prefix` (e.g. :mod:`~embedsdg_hf.generation.constrained`).

    ``mask`` sets the logits of tokens a row may not emit to ``-inf`` (in place; ``logits[i]`` is row ``rows[i]``);
    ``advance`` is told every token a row emitted (drawn or queued, stop tokens excepted) and returns the tokens that
    row must emit next, in order (usually none). Rows are the indexes of ``suffixes``.
    """

    def mask(self, rows: list[int], logits) -> None: ...

    def advance(self, row: int, token: int) -> list[int]: ...


class TailCache:
    """Each prompt tail's keys/values and first-token logits after its prefill, kept so that the same prompt asked
    again (a best-of-n retry with another seed) skips its prefill. Bounded by ``max_bytes`` (oldest dropped first).

    Example:
        >>> cache = TailCache(max_bytes=1 << 20)
        >>> cache.hits, len(cache.entries)
        (0, 0)
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self.entries: collections.OrderedDict = collections.OrderedDict()
        self.bytes = 0
        self.hits = 0

    def get(self, key):
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key, keys: list, values: list, logits) -> None:
        size = sum(t.numel() * t.element_size() for t in (*keys, *values, logits))
        if size > self.max_bytes:
            return
        if key in self.entries:
            self.bytes -= self.entries.pop(key)[3]
        self.entries[key] = (keys, values, logits, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= self.entries.popitem(last=False)[1][3]


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, shared_prefix=None, **kwargs):
    """Attention over [shared prefix keys, this row's suffix keys]; stores the new keys/values in the state."""
    torch = fork_safe_torch()
    state: _State = shared_prefix
    layer = module.layer_idx
    batch, heads, steps, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    scaling = dim**-0.5 if scaling is None else scaling
    if layer not in state.keys:
        capacity = state.valid.shape[1]
        state.keys[layer] = key.new_zeros((batch, kv_heads, capacity, dim), dtype=torch.float32)
        state.values[layer] = key.new_zeros((batch, kv_heads, capacity, dim), dtype=torch.float32)
    end = state.length + steps
    state.keys[layer][:, :, state.length : end] = key
    state.values[layer][:, :, state.length : end] = value
    keys, values = state.keys[layer][:, :, :end], state.values[layer][:, :, :end]
    prefix_keys, prefix_values = state.prefix_keys[layer], state.prefix_values[layer]
    n_prefix = prefix_keys.shape[1]

    if steps > 1:  # the suffix's prefill: one SDPA call over [prefix (broadcast), suffix], causal in the suffix
        return _prefill_attention(query, keys, values, state, prefix_keys, prefix_values, scaling), None
    # one new token per row: scores against the prefix (one matmul per KV head, the prefix stored once) and against
    # the row's own keys, one softmax over both, in float32
    q = query.to(torch.float32).reshape(batch, kv_heads, group, dim)
    prefix_scores = torch.bmm(q.transpose(0, 1).reshape(kv_heads, batch * group, dim), prefix_keys.transpose(1, 2))
    prefix_scores = prefix_scores.view(kv_heads, batch, group, n_prefix).transpose(0, 1)  # (B, kv, g, P)
    own_scores = torch.matmul(q, keys.transpose(-1, -2))  # (B, kv, g, S)
    own_scores = own_scores.masked_fill(~state.valid[:, None, None, :end], float("-inf"))
    probs = torch.softmax(torch.cat([prefix_scores, own_scores], dim=-1) * scaling, dim=-1)
    prefix_probs, own_probs = probs.split([n_prefix, end], dim=-1)
    out = torch.matmul(own_probs, values)  # (B, kv, g, d)
    from_prefix = torch.bmm(prefix_probs.transpose(0, 1).reshape(kv_heads, batch * group, n_prefix), prefix_values)
    out = out + from_prefix.view(kv_heads, batch, group, dim).transpose(0, 1)
    out = out.reshape(batch, heads, 1, dim).transpose(1, 2).to(query.dtype)
    return out, None


def _prefill_attention(query, keys, values, state: _State, prefix_keys, prefix_values, scaling: float):
    """SDPA for a multi-token step (the suffixes' prefill), in the model's dtype like ``generate``'s own prefill: keys
    are the prefix (expanded over the rows) then each row's suffix so far; causal within the suffix, padding masked."""
    torch = fork_safe_torch()
    batch, heads, steps, dim = query.shape
    end = keys.shape[2]

    def every(prefix, own):
        return torch.cat([prefix.unsqueeze(0).expand(batch, -1, -1, -1), own], dim=2).to(query.dtype)

    causal = torch.ones((steps, end), dtype=torch.bool, device=query.device).tril(end - steps)
    allowed = state.valid[:, None, None, :end] & causal
    allowed = torch.cat([allowed.new_ones((batch, 1, steps, prefix_keys.shape[1])), allowed], dim=-1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, every(prefix_keys, keys), every(prefix_values, values), attn_mask=allowed,
        scale=scaling, enable_gqa=True,
    )  # fmt: skip
    return out.transpose(1, 2)


@functools.cache
def _register() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, _attention)
    return ATTENTION


@functools.lru_cache(maxsize=4)
def _prefix_kv(model, prefix_ids: tuple[int, ...]):
    """Per-layer float32 keys/values (kv_heads, P, head_dim) of ``prefix_ids``, computed once per model and prefix."""
    torch = fork_safe_torch()
    if not prefix_ids:  # nothing shared: every row is all suffix
        config = model.config.get_text_config()
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        empty = torch.zeros((kv_heads, 0, head_dim), device=model.device)
        return [empty] * config.num_hidden_layers, [empty] * config.num_hidden_layers
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prefix_ids], device=model.device), use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    keys = [layer.keys[0].to(torch.float32) for layer in cache.layers]
    return keys, [layer.values[0].to(torch.float32) for layer in cache.layers]


@contextlib.contextmanager
def _shared_prefix_attention(model):
    """Run ``model`` with the shared-prefix attention, then restore its own (also on errors)."""
    before = model.config._attn_implementation
    model.set_attn_implementation(_register())
    try:
        yield
    finally:
        model.set_attn_implementation(before)


_NUCLEUS_CANDIDATES = 256  # the likeliest tokens a top-p draw looks at first (the whole vocabulary if they are short)


def _next_tokens(logits, *, do_sample: bool, temperature: float, top_p: float, generators=None):
    """Greedy argmax, or sampling with temperature then nucleus (top-p), like ``generate``'s warpers; each row draws
    from its own generator (``None``: torch's global one), so a row's sample does not depend on its batch.

    The nucleus is the likeliest tokens whose more likely neighbours hold less than ``top_p`` of the mass (the set
    ``generate``'s ascending-sort rule keeps). It is looked for among the ``_NUCLEUS_CANDIDATES`` likeliest tokens
    (``topk``), and over the whole sorted vocabulary only for a row whose candidates hold less than ``top_p``: the
    same set at a fraction of a full sort, and the draw is over the candidates, not the whole vocabulary.
    """
    torch = fork_safe_torch()
    logits = logits.to(torch.float32)
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = (logits / temperature).softmax(dim=-1)
    generators = [None] * len(probs) if generators is None else generators
    if top_p >= 1.0:
        return torch.cat([torch.multinomial(p, num_samples=1, generator=g) for p, g in zip(probs, generators)])
    drawn = []
    for row, (weights, candidates) in enumerate(nucleus(probs, top_p)):
        drawn.append(candidates[torch.multinomial(weights, num_samples=1, generator=generators[row])])
    return torch.cat(drawn)


def nucleus(probs, top_p: float) -> list[tuple]:
    """Each row's nucleus as (weights, token ids): the likeliest tokens whose more likely tokens hold less than
    ``top_p`` of the mass (weight 0 for candidates outside it), i.e. the set ``generate``'s top-p warper keeps."""
    top, index = probs.topk(min(_NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
    rows = []
    for row in range(len(probs)):
        weights, candidates = top[row], index[row]
        if float(weights.sum()) < top_p:  # a flat row: its nucleus reaches past the candidates
            weights, candidates = probs[row].sort(descending=True)
        rows.append((weights.masked_fill(weights.cumsum(dim=0) - weights >= top_p, 0.0), candidates))
    return rows


def generate_after_prefix(
    model,
    prefix_ids: Sequence[int],
    suffixes: list,
    budgets: Sequence[int],
    *,
    stops: set[int],
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | Sequence[int | None] | None = None,
    control: DecodeControl | None = None,
    tail_cache: TailCache | None = None,
    tail_keys: Sequence | None = None,
) -> tuple[list[list[int]], list[str]]:
    """Generate after ``prefix_ids`` + each suffix (an (L_i, hidden) embedding tensor), each within its own budget.

    Returns each row's new tokens (up to and including its stop token) and its finish reason (``"stop"`` or
    ``"length"``). Greedy unless ``do_sample``. Sampling draws each row from its own generator, seeded with ``seed``
    (one for all rows, or one per row; ``None``: torch's global generator), so a row's sample is reproducible and
    does not depend on which rows share its batch.
    Suffixes may differ in length (they are left-padded after the prefix, the padding masked out).
    ``control`` (a :class:`DecodeControl`) constrains rows: it masks each step's logits (a grammar) and may queue
    tokens a row must emit next (a calculator's result), which the batched step takes instead of the drawn token.
    """
    torch = fork_safe_torch()
    if not suffixes:
        return [], []
    prefix = tuple(int(i) for i in prefix_ids)
    n_prefix = len(prefix)
    embed = model.get_input_embeddings()
    dtype = embed.weight.dtype
    rows = len(suffixes)
    width = max(len(s) for s in suffixes)
    hidden = suffixes[0].shape[-1]
    device = model.device
    inputs = torch.zeros((rows, width, hidden), dtype=dtype, device=device)
    valid = torch.zeros((rows, width + max(budgets)), dtype=torch.bool, device=device)
    positions = torch.zeros((rows, width), dtype=torch.long, device=device)
    lengths = torch.tensor([len(s) for s in suffixes], device=device)
    for row, suffix in enumerate(suffixes):
        pad = width - len(suffix)
        inputs[row, pad:] = suffix.to(device=device, dtype=dtype)
        valid[row, pad:width] = True
        positions[row, pad:] = torch.arange(n_prefix, n_prefix + len(suffix), device=device)
    keys, values = _prefix_kv(model, prefix)
    state = _State(prefix_keys=keys, prefix_values=values, valid=valid)
    cache_keys = None
    if tail_cache is not None:
        cache_keys = [(id(model), prefix, key) for key in tail_keys]
    first_logits = _reuse_tails(state, tail_cache, cache_keys, lengths.tolist(), width)
    generators = None
    if do_sample:
        seeds = list(seed) if isinstance(seed, Sequence) else [seed] * rows
        generators = [None if s is None else torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    active = torch.arange(rows, device=device)
    tokens: list[list[int]] = [[] for _ in range(rows)]
    finish = ["length"] * rows
    queued = [collections.deque() for _ in range(rows)]  # tokens ``control`` makes a row emit next
    next_positions = n_prefix + lengths  # where each row's first new token goes
    with _shared_prefix_attention(model), packed_linears(model), torch.inference_mode():
        step_inputs, step_positions = inputs, positions
        for step in range(max(budgets)):  # every active row has produced ``step`` tokens before this pass
            if step == 0 and first_logits is not None:  # every tail's prefill is in the cache
                logits = first_logits
            else:
                logits = model(
                    inputs_embeds=step_inputs, position_ids=step_positions, use_cache=False, logits_to_keep=1,
                    shared_prefix=state,
                ).logits[:, -1]  # fmt: skip
                state.length += step_inputs.shape[1]
                if step == 0 and cache_keys is not None:
                    _store_tails(state, tail_cache, cache_keys, lengths.tolist(), width, logits)
            drawn_with = None if generators is None else [generators[r] for r in active.tolist()]
            if control is not None:
                control.mask(active.tolist(), logits)
            chosen = _next_tokens(logits, do_sample=do_sample, temperature=temperature, top_p=top_p,
                                  generators=drawn_with)  # fmt: skip
            if control is not None:  # a row with queued tokens emits the next one instead of the drawn token
                for slot, row in enumerate(active.tolist()):
                    if queued[row]:
                        chosen[slot] = queued[row].popleft()
            keep = []
            for slot, (row, token) in enumerate(zip(active.tolist(), chosen.tolist())):
                tokens[row].append(token)
                if control is not None and token not in stops:
                    queued[row].extend(control.advance(row, token))
                if token in stops:
                    finish[row] = "stop"
                elif len(tokens[row]) < budgets[row]:
                    keep.append(slot)
            if not keep:
                break
            if len(keep) < len(active):
                slots = torch.tensor(keep, device=device)
                state.keep(slots)
                active, chosen = active[slots], chosen[slots]
            state.valid[:, state.length] = True
            step_inputs = embed(chosen[:, None])
            step_positions = (next_positions[active] + step)[:, None]
    return tokens, finish


def _reuse_tails(state: _State, cache: TailCache | None, keys: list | None, lengths: list[int], width: int):
    """Fill ``state`` with every row's cached tail (left-padded to ``width``) and return the first logits, or None
    (and leave ``state`` untouched) when a row's tail is not cached."""
    if cache is None:
        return None
    entries = [cache.get(key) for key in keys]
    if any(entry is None for entry in entries):
        return None
    torch = fork_safe_torch()
    capacity = state.valid.shape[1]
    for layer in range(len(entries[0][0])):
        for store, part in ((state.keys, 0), (state.values, 1)):
            kv_heads, _, dim = entries[0][part][layer].shape
            buffer = entries[0][part][layer].new_zeros((len(entries), kv_heads, capacity, dim))
            for row, (entry, length) in enumerate(zip(entries, lengths)):
                buffer[row, :, width - length : width] = entry[part][layer]
            store[layer] = buffer
    state.length = width
    cache.hits += len(entries)
    return torch.stack([entry[2] for entry in entries])


def _store_tails(state: _State, cache: TailCache, keys: list, lengths: list[int], width: int, logits) -> None:
    """Keep each row's tail keys/values (after the prefill) and its first logits (before any masking)."""
    for row, (key, length) in enumerate(zip(keys, lengths)):
        layers = sorted(state.keys)
        cache.put(
            key,
            [state.keys[layer][row, :, width - length : width].clone() for layer in layers],
            [state.values[layer][row, :, width - length : width].clone() for layer in layers],
            logits[row].clone(),
        )


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``sequences`` share, leaving every sequence at least one token of its own.

    Example:
        >>> common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])
        2
    """
    if not sequences:
        return 0
    shortest = min(len(s) for s in sequences)
    n = 0
    while n < shortest - 1 and all(s[n] == sequences[0][n] for s in sequences):
        n += 1
    return n
