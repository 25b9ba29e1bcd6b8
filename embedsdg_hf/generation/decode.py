"""``add_decoded_text``: decode each pair's interpolated embedding sequence back to text through the student
(METHOD.md §5, paper eq. 6, Listing 1).

The copy prompt P_d (four few-shot ``Input:``/``Output:`` examples drawn from the pool, then the final ``Input:``) is
rendered through the student's chat template when it has one. Its final input text is replaced by the averaged
token-embedding sequence of the pair (rebuilt from the seeds' token ids and weights by
:func:`~embedsdg_hf.space.interpolate.interpolate_sequences`), the ``Output:`` cue follows, and the student continues
with ``generate(inputs_embeds=...)``: batched, left-padded, greedy by default.

Shared prefix (the default, ``shared_prefix=True``): every pair's prompt starts with the same tokens (the
chat-template header and the four few-shot examples, drawn once with ``seed`` for all pairs), ~85% of the prompt.
That part is run through the student once per process and its keys/values are kept once, not per row; each batch
prefills only its spliced sequences and the ``Output:`` cue, and a pair leaves the batch when it ends
(:mod:`~embedsdg_hf.generation.shared_prefix`). In float32 the greedy tokens equal ``generate`` on the whole
left-padded prompt (``tests/test_shared_prefix.py``); in bf16 both paths round differently, as ``generate`` itself
does between batch sizes (``benchmarks/bench_decode.py`` measures both). ``shared_prefix=False`` runs
``generate(inputs_embeds=...)`` on the whole prompt of every pair.

Scale: with ``weights="mean"`` (or ``"attention"``) the weighted token embeddings are ~1/m of a token's size, which
is right for pooling but reads as near-silence to the decoder. By default (``rescale=True``) each seed's weights
are divided by their mean before averaging, i.e. the decoder sees the token-wise average of the two sequences at
the model's own scale (for ``"mask"`` weights this changes nothing). ``rescale=False`` feeds eq. 4 literally.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from ..common.models import (
    cut_at_stop,
    fork_safe_torch,
    load_input_embeddings,
    load_student,
    resolve_model,
    stop_token_ids,
)
from ..common.splits import splitwise
from ..common.validation import require_columns, require_rows, require_template_columns
from ..space.interpolate import interpolate_sequences
from .decode_cache import DecodeCache, decode_key
from .decode_engines import generate_via_http, generate_via_vllm, parse_engine, per_row
from .prompts import load_prompt
from .shared_prefix import generate_after_prefix

logger = logging.getLogger(__name__)

SPLICE = "\x00EMBEDSDG_SPLICE\x00"
PAIR_COLUMNS = ("seed_input_ids_a", "seed_token_weights_a", "seed_input_ids_b", "seed_token_weights_b")
_VERSION = "3"  # 2: the default budget is per pair, not per batch; 3: the shared-prefix engine is the default


def build_copy_prompt(model: str, examples: list[str], prompt: str = "decode_v1") -> tuple[list[int], list[int]]:
    """Token ids of the copy prompt before and after the spliced input, chat template applied when there is one.

    Example:
        >>> before, after = build_copy_prompt("smollm2-135m-instruct", ["2+2=4", "a b", "x", "y"])  # doctest: +SKIP
    """
    template = load_prompt(prompt)
    shots = "\n".join(f"Input: {text}\nOutput: {text}" for text in examples)
    content = template.render(examples=shots, input=SPLICE)
    _, tokenizer = load_student(model)
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = content
    before, after = text.split(SPLICE)
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731 - the template has them
    before_ids = encode(before)
    if not tokenizer.chat_template and tokenizer.bos_token_id is not None:
        before_ids = [tokenizer.bos_token_id, *before_ids]
    return before_ids, encode(after)


def _seed_weights(weights, rescale: bool) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float32)
    return w / w.mean() if rescale and len(w) and w.mean() > 0 else w


class _Decode:
    """The ``Dataset.map`` function of :func:`add_decoded_text` (state: model spec, prompt ids, settings)."""

    def __init__(self, model, before, after, max_new_tokens, rescale, do_sample, temperature, seed, **options):
        self.model, self.before, self.after = model, before, after
        self.max_new_tokens, self.rescale = max_new_tokens, rescale
        self.do_sample, self.temperature, self.seed = do_sample, temperature, seed
        self.shared_prefix, self.engine = options["shared_prefix"], options["engine"]
        self.cache = None if options.get("cache") is None else str(options["cache"])

    def sequences(self, batch) -> list:
        torch = fork_safe_torch()
        matrix = load_input_embeddings(self.model)
        before, after = matrix[torch.tensor(self.before)], matrix[torch.tensor(self.after)]
        out = []
        for ids_a, w_a, ids_b, w_b in zip(*(batch[c] for c in PAIR_COLUMNS)):
            avg = interpolate_sequences(
                self.model, ids_a, _seed_weights(w_a, self.rescale), ids_b, _seed_weights(w_b, self.rescale)
            )
            out.append(torch.cat([before, avg, after]))
        return out

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        budgets = row_budgets(batch, self.max_new_tokens)
        sequences = self.sequences(batch)
        texts: list = [None] * len(sequences)
        finish: list = [None] * len(sequences)
        if self.cache is None:
            self._decode(sequences, budgets, range(len(sequences)), texts, finish)
        else:
            keys = [self._key(seq, budget) for seq, budget in zip(sequences, budgets)]
            with DecodeCache(self.cache) as cache:
                todo = []
                for i, key in enumerate(keys):
                    hit = cache.get(key)
                    if hit is None:
                        todo.append(i)
                    else:
                        texts[i], finish[i] = hit
                if len(todo) < len(keys):
                    logger.info("Decoding: %d of %d pairs from the decode cache %s", len(keys) - len(todo), len(keys),
                                cache.path)  # fmt: skip
                self._decode(sequences, budgets, todo, texts, finish)
                for i in todo:
                    cache.put(keys[i], (texts[i], finish[i]))
        return {"decoded_text": texts, "decoded_finish_reason": finish}

    def _key(self, sequence, budget: int) -> str:
        kind, _ = parse_engine(self.engine)
        return decode_key(
            sequence, model=resolve_model(self.model), engine=kind, budget=budget, do_sample=self.do_sample,
            temperature=self.temperature, seed=self.seed, shared_prefix=self.shared_prefix,
        )  # fmt: skip

    def _decode(self, sequences: list, budgets: list[int], rows, texts: list, finish: list) -> None:
        """Decode ``sequences[rows]`` (each within its own budget) into ``texts`` / ``finish`` in place."""
        rows = list(rows)
        if not rows:
            return
        seqs, budget = [sequences[i] for i in rows], [budgets[i] for i in rows]
        kind, urls = parse_engine(self.engine)
        temperature = self.temperature if self.do_sample else 0.0
        if kind == "http":
            out = generate_via_http(urls, resolve_model(self.model), seqs, max_new_tokens=budget,
                                    temperature=temperature, seed=self.seed)  # fmt: skip
        elif kind == "vllm":
            out = generate_via_vllm(self.model, seqs, max_new_tokens=budget, temperature=temperature, seed=self.seed)
        else:
            start = len(self.before) if self.shared_prefix else 0
            out = generate_from_embeddings(
                self.model,
                [seq[start:] for seq in seqs],
                prefix_ids=self.before if self.shared_prefix else None,
                max_new_tokens=budget,
                do_sample=self.do_sample,
                temperature=self.temperature,
                seed=self.seed,
            )
        for i, text, reason in zip(rows, *out):
            texts[i], finish[i] = text, reason


def row_budgets(batch, max_new_tokens: int | None) -> list[int]:
    """Each pair's decoding budget: ``max_new_tokens``, or by default 1.25x its longer seed + 16 tokens (at most
    512). Per row, so a pair's text never depends on which pairs share its batch."""
    lengths = [max(len(a), len(b)) for a, b in zip(batch["seed_input_ids_a"], batch["seed_input_ids_b"])]
    if max_new_tokens:
        return [int(max_new_tokens)] * len(lengths)
    return [int(min(512, longest * 1.25 + 16)) for longest in lengths]


def generate_from_embeddings(
    model: str,
    sequences: list,
    *,
    max_new_tokens: int | Sequence[int],
    do_sample: bool = False,
    temperature: float = 1.0,
    seed=0,
    prefix_ids: list[int] | None = None,
) -> tuple[list[str], list[str]]:
    """Pad (L_i, N) embedding sequences into one batch and ``generate(inputs_embeds=...)``.

    ``max_new_tokens`` is one budget for all, or one per sequence (the batch runs to the largest and each row is cut
    at its own, so a row's text does not depend on the others' budgets).

    Without ``prefix_ids`` the whole left-padded batch goes through ``generate``. With ``prefix_ids`` (token ids every
    sequence starts with, not repeated in ``sequences``) it goes through
    :func:`~embedsdg_hf.generation.shared_prefix.generate_after_prefix`: the prefix is run once per process, each
    sequence follows it at the positions it would have unpadded, and a row stops as soon as it ends.

    Returns the decoded new text of each sequence and its finish reason (``"stop"`` or ``"length"``).
    """
    torch = fork_safe_torch()
    student, tokenizer = load_student(model)
    budgets = per_row(max_new_tokens, len(sequences))
    stops = stop_token_ids(student, tokenizer)
    if prefix_ids is not None:
        rows, finish = generate_after_prefix(
            student, prefix_ids, sequences, budgets, stops=stops, do_sample=do_sample, temperature=temperature,
            seed=seed,
        )  # fmt: skip
        return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in rows], finish
    width = max(len(s) for s in sequences)
    dim = sequences[0].shape[1]
    dtype = student.get_input_embeddings().weight.dtype
    embeds = torch.zeros((len(sequences), width, dim), dtype=dtype)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        embeds[row, width - len(seq) :] = seq.to(dtype)
        mask[row, width - len(seq) :] = 1
    kwargs = {"do_sample": do_sample, "max_new_tokens": max(budgets), "pad_token_id": tokenizer.pad_token_id}
    if do_sample:
        kwargs["temperature"] = temperature
        torch.manual_seed(seed)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        out = student.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
    texts, finish = [], []
    for row, budget in zip(out.tolist(), budgets):
        kept, reason = cut_at_stop(row[:budget], stops)
        texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
        finish.append(reason)
    return texts, finish


@splitwise(streaming="the pairs are a small in-memory table from make_seed_pairs")
def add_decoded_text(
    pairs,
    pool,
    *,
    model: str,
    text_template: str = "{question}\n{answer}",
    n_examples: int = 4,
    prompt: str = "decode_v1",
    max_new_tokens: int | None = None,
    rescale: bool = True,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    shared_prefix: bool = True,
    engine: str = "transformers",
    cache: str | os.PathLike | None = None,
    **map_kwargs,
):
    """Decode every pair's interpolation through the student into a ``decoded_text`` column (+ finish reason).

    Args:
        pairs: the output of ``add_interpolations`` (seed token ids and weights).
        pool: the seed pool: ``n_examples`` few-shot examples are drawn from it with ``seed`` (same for all pairs).
        model: the student spec used for the embeddings (its embedding matrix and generation).
        text_template: how pool rows are written as few-shot examples (the embedding template).
        prompt: the copy prompt P_d: a packaged name or a path to your own template with ``{examples}``/``{input}``.
        max_new_tokens: default per pair: 1.25x its longer seed + 16 (at most 512).
        rescale: feed the average at token scale (see the module docstring); False is eq. 4 literally.
        do_sample / temperature / seed: greedy by default.
        shared_prefix: run the few-shot part of P_d once and keep its keys/values once for all pairs (default; see
            the module docstring); False runs ``generate`` on the whole prompt of every pair.
        engine: ``"transformers"`` (in-process), ``"vllm"`` (offline vLLM, prompt embeds) or the base URL(s) of
            ``vllm serve <model> --enable-prompt-embeds`` servers, comma-separated: see
            :mod:`~embedsdg_hf.generation.decode_engines`. The served model name is ``resolve_model(model)``.
        cache: a JSONL file of finished decodings (:mod:`~embedsdg_hf.generation.decode_cache`): a pair whose exact
            input, budget and settings were decoded before is read from it, the others are decoded and added. Share
            one file across runs that share pairs (a budget sweep); one run writes it at a time.

    Example:
        >>> pairs = add_decoded_text(pairs, pool, model="smollm2-135m-instruct")  # doctest: +SKIP
    """
    from datasets import Value

    require_rows(pairs, what="pairs dataset", step="add_decoded_text")
    require_columns(pairs, PAIR_COLUMNS, what="pairs dataset (run add_interpolations first)")
    require_rows(pool, what="seed pool", step="add_decoded_text")
    fields = require_template_columns(pool, text_template)
    if not 0 <= n_examples <= len(pool):
        raise ValueError(f"n_examples must be in [0, {len(pool)}] (the pool's rows), got {n_examples}.")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    rows = np.sort(np.random.default_rng(seed).choice(len(pool), size=n_examples, replace=False)).tolist()
    shots = pool.select_columns(fields).select(rows).to_list()
    examples = [text_template.format_map(row) for row in shots]
    before, after = build_copy_prompt(model, examples, prompt)
    fn = _Decode(
        model,
        before,
        after,
        max_new_tokens,
        rescale,
        do_sample,
        temperature,
        seed,
        shared_prefix=shared_prefix,
        engine=engine,
        cache=cache,
    )
    parse_engine(engine)  # a clear error before mapping
    fn.version = (_VERSION, load_prompt(prompt).version)  # part of the fingerprint
    features = pairs.features.copy()
    features["decoded_text"] = Value("string")
    features["decoded_finish_reason"] = Value("string")
    return pairs.map(
        fn, batched=True, batch_size=batch_size, features=features, desc="Decoding through the student", **map_kwargs
    )
