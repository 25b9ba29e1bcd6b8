"""``make_synthetic_dataset``: the teacher turns seeds into new examples (METHOD.md §6, paper §3.7, Listings 2 and 4).

- ``method="embedsdg"``: one item per seed pair; the prompt P_g shows both seeds and the student's decoding of their
  interpolated embedding (``decoded_text``, from :func:`~embedsdg_hf.generation.decode.add_decoded_text`).
- ``method="random"`` (the RandomSDG baseline, §4.2): ``n_samples`` seeds drawn uniformly without replacement from
  the pool (``numpy.random.default_rng(seed)``), one generated example per seed with the prompt P_b. By default
  ``n_samples = len(pairs)``, so both methods get the same teacher budget.

Every item is asked ``samples_per_item`` times (``sample_index`` 0..k-1), each as one user message with the rendered
prompt and the assistant prefill ``"### Question\\n"``. The request seed is a deterministic function of the run
``seed``, the item's own identity (``pair_id`` for EmbedSDG, the pool row for RandomSDG, not its position, so that
filtering or reordering pairs keeps the other requests' keys) and the sample index.

Resume: with ``cache_dir``, each successful response is appended durably to ``cache_dir/requests.jsonl``
(:class:`~embedsdg_hf.generation.request_cache.RequestCache`) the moment the teacher reports it; a rerun sends only the
requests not there. Failed requests are never cached: their rows are kept (reject reason ``teacher_error``) and they
are sent again on the next run. The result has exactly one row per (item, sample_index), in item order.

Accepted rows carry the example three ways for SFT: ``messages`` (user question, assistant answer) and TRL's
conversational *prompt-completion* form, ``prompt`` (the user turn) and ``completion`` (the assistant turn). With
``prompt``/``completion`` present, ``trl sft --dataset_name <run dir>`` turns completion-only loss on by itself, so
plain TRL trains on the answer only, as ``embedsdg train`` does. Rejected rows have all three empty.

Every response is parsed (:func:`~embedsdg_hf.generation.parse.parse_generation`); rows that cannot be used are *kept*
with a ``reject_reason`` and removed for training with ``ds.filter(filter_accepted)``.

Public API: :func:`make_synthetic_dataset`, :func:`filter_accepted`, :func:`summarize_generation`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc

from ..common.mapping import column_array
from ..common.splits import whole_dataset
from ..common.validation import is_int, require_columns, require_rows
from .parse import TEACHER_ERROR, ParsedExample, parse_generation
from .prompts import PromptTemplate, load_prompt
from .request_cache import request_key, run_cached
from .teachers.base import SamplingParams, Teacher, TeacherRequest, TeacherResponse

logger = logging.getLogger(__name__)

__all__ = ["FEATURES", "METHODS", "filter_accepted", "make_synthetic_dataset", "request_seed", "summarize_generation"]

METHODS = ("embedsdg", "random")
PAIR_COLUMNS = ("seed_a", "seed_b", "decoded_text")
CACHE_FILE = "requests.jsonl"
DEFAULT_SAMPLING = SamplingParams()
METHOD_PROMPTS = {
    "embedsdg": ("generate_embedsdg_v1", ("q1", "a1", "q2", "a2", "interpolated_decoded_text")),
    "random": ("generate_random_v1", ("q1", "a1")),
}

_string, _int64 = datasets.Value("string"), datasets.Value("int64")
_turns = datasets.List({"role": _string, "content": _string})
FEATURES = datasets.Features(
    {
        "question": _string,
        "answer": _string,
        "final_answer": _string,
        "messages": _turns,
        "prompt": _turns,
        "completion": _turns,
        "reject_reason": _string,
        "method": _string,
        "seed_a": _int64,
        "seed_b": _int64,
        "region_id": _int64,
        "pair_id": _int64,
        "decoded_text": _string,
        "teacher_model": _string,
        "teacher": _string,
        "prompt_version": _string,
        "sampling": _string,
        "seed": _int64,
        "sample_index": _int64,
        "attempt": _int64,
        "request_key": _string,
        "raw_response": _string,
        "finish_reason": _string,
        "prompt_tokens": _int64,
        "completion_tokens": _int64,
        "error": _string,
        "from_cache": datasets.Value("bool"),
    }
)


@dataclass(frozen=True)
class _Item:
    """One prompt to send: its provenance and the values that fill the template."""

    seed_a: int
    seed_b: int
    region_id: int
    pair_id: int
    decoded_text: str
    values: dict[str, str]
    identity: int  # pair_id (EmbedSDG) or pool row (RandomSDG): mixed into the request seed


@dataclass(frozen=True)
class _Job:
    """One request: an item asked for the ``sample_index``-th time."""

    item: _Item
    sample_index: int
    request: TeacherRequest
    key: str


@dataclass(frozen=True)
class _Run:
    """What every row of one call shares."""

    method: str
    prompt_version: str
    teacher: str
    teacher_model: str
    sampling: str
    prefill: str


@whole_dataset("the seed pool is read by row position (pairs name their seeds by row)")
def make_synthetic_dataset(
    pool: datasets.Dataset,
    pairs: datasets.Dataset | None = None,
    *,
    teacher: Teacher,
    method: str = "embedsdg",
    n_samples: int | None = None,
    samples_per_item: int = 1,
    prompt: str | os.PathLike | PromptTemplate | None = None,
    sampling: SamplingParams = DEFAULT_SAMPLING,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    question_column: str = "question",
    answer_column: str = "answer",
    prefill: str = "### Question\n",
    attempts: int = 1,
    row_check: Callable[[ParsedExample], str | None] | None = None,
) -> datasets.Dataset:
    """Ask the teacher for new examples from seed pairs (EmbedSDG) or random seeds (RandomSDG); one row per request.

    Args:
        pool: the seed pool (row identity = position), with ``question_column`` and ``answer_column``.
        pairs: the pairs (``seed_a``, ``seed_b``, ``decoded_text``; ``pair_id``, ``region_id`` when present). Needed
            for ``"embedsdg"``; for ``"random"`` its length is the default budget.
        teacher: a :class:`~embedsdg_hf.generation.teachers.base.Teacher`.
        method: ``"embedsdg"`` or ``"random"``.
        n_samples: seeds to draw for ``"random"`` (default ``len(pairs)``).
        samples_per_item: responses asked per item (k).
        prompt: a packaged template name, a path to your own ``.txt`` template, or a ``PromptTemplate``; default
            ``"generate_embedsdg_v1"`` / ``"generate_random_v1"``. It must use exactly the fields the method fills.
        sampling: sampling settings sent with every request.
        seed: the run seed (random seed choice and request seeds).
        cache_dir: where finished requests are recorded (``requests.jsonl``) so an interrupted run resumes.
        question_column / answer_column: the pool's columns.
        prefill: text the assistant turn starts with (kept in ``raw_response`` when the backend applied it).
        attempts: best-of-n: responses drawn per (item, sample) until one passes the parser and ``row_check``; each
            attempt has its own seed and cache entry (attempt 0 is the request ``attempts=1`` sends). The row of the
            first passing attempt is kept, else the last attempt's; its ``attempt`` column says which (0-based).
        row_check: a per-row gate beyond the parser, e.g. verification: the reason a parsed example fails, or None.

    Returns:
        A new Dataset with the columns of :data:`FEATURES`, rejects included (``reject_reason`` set).

    Raises:
        TeacherError: from the teacher, after every result it reported has been saved to ``cache_dir``.

    Example:
        >>> synthetic = make_synthetic_dataset(pool, pairs, teacher=teacher, cache_dir="runs/gen")  # doctest: +SKIP
        >>> train = synthetic.filter(filter_accepted)  # doctest: +SKIP
    """
    _check_arguments(teacher, method, samples_per_item, seed)
    if not is_int(attempts) or attempts < 1:
        raise ValueError(f"attempts must be an integer >= 1, got {attempts!r}.")
    require_rows(pool, what="seed pool", step="make_synthetic_dataset")
    require_columns(pool, [question_column, answer_column], what="seed pool")
    template = _resolve_prompt(prompt, method)
    columns = (question_column, answer_column)
    if method == "embedsdg":
        if n_samples is not None:
            logger.warning("n_samples=%s is ignored for method='embedsdg' (one item per pair).", n_samples)
        items = _pair_items(pool, pairs, columns)
    else:
        items = _random_items(pool, pairs, n_samples, seed, columns)
    identity = teacher.identity()
    jobs = [
        _job(item, k, template, sampling, seed, prefill, identity) for item in items for k in range(samples_per_item)
    ]
    cache_path = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
    run = _Run(
        method=method,
        prompt_version=template.tag,
        teacher=json.dumps(identity, sort_keys=True),
        teacher_model=str(identity.get("model", "")),
        sampling=json.dumps(sampling.to_dict(), sort_keys=True),
        prefill=prefill,
    )
    rows: list[dict[str, Any]] = [{} for _ in jobs]
    pending = list(range(len(jobs)))
    for attempt in range(attempts):  # best-of-n: only the rows that failed a gate are asked again
        if attempt:
            logger.info("Teacher attempt %d of %d: %d row(s) failed a gate and are asked again.", attempt + 1,
                        attempts, len(pending))  # fmt: skip
            for index in pending:
                job = jobs[index]
                jobs[index] = _job(job.item, job.sample_index, template, sampling, seed, prefill, identity, attempt)
        results = run_cached(
            teacher, [jobs[i].request for i in pending], [jobs[i].key for i in pending], cache_path,
            what="teacher_error rows",
        )  # fmt: skip
        failed = []
        for index, (response, from_cache) in zip(pending, results):
            rows[index] = row = _row(jobs[index], response, from_cache, run, attempt)
            if row["reject_reason"] is not None or (
                row_check is not None
                and row_check(ParsedExample(row["question"], row["answer"], row["final_answer"])) is not None
            ):
                failed.append(index)
        pending = failed
        if not pending:
            break
    ds = datasets.Dataset.from_dict({name: [row[name] for row in rows] for name in FEATURES}, features=FEATURES)
    summary = summarize_generation(ds)
    logger.info(
        "make_synthetic_dataset(method=%r): %d rows, %d accepted, rejects %s; %d from cache, %d sent; "
        "tokens %d prompt + %d completion.",
        method,
        summary["rows"],
        summary["accepted"],
        summary["rejects_by_reason"],
        summary["from_cache"],
        summary["rows"] - summary["from_cache"],
        summary["prompt_tokens"],
        summary["completion_tokens"],
    )
    return ds


def filter_accepted(example: dict[str, Any]) -> bool:
    """``Dataset.filter`` predicate: keep the rows the parser accepted.

    Example:
        >>> filter_accepted({"reject_reason": None}), filter_accepted({"reject_reason": "truncated"})
        (True, False)
    """
    return example["reject_reason"] is None


def summarize_generation(ds: datasets.Dataset) -> dict[str, Any]:
    """Counts of a generated dataset: rows, accepted, rejects by reason, token totals, rows served from the cache.

    Example:
        >>> summarize_generation(synthetic)  # doctest: +SKIP
        {'rows': 40, 'accepted': 38, 'rejects_by_reason': {'truncated': 2}, 'prompt_tokens': 21000, ...}
    """
    require_columns(
        ds, ["reject_reason", "prompt_tokens", "completion_tokens", "from_cache"], what="generated dataset"
    )
    table = ds.with_format("arrow")
    attempts = len(ds) + (int(pc.sum(table["attempt"]).as_py() or 0) if "attempt" in ds.column_names else 0)
    reasons = Counter(table["reject_reason"].to_pylist())
    accepted = reasons.pop(None, 0)

    def total(column: str) -> int:
        return int(pc.sum(table[column]).as_py() or 0)

    return {
        "rows": len(ds),
        "accepted": accepted,
        "rejects_by_reason": dict(sorted(reasons.items())),
        "prompt_tokens": total("prompt_tokens"),
        "completion_tokens": total("completion_tokens"),
        "from_cache": total("from_cache"),
        "attempts": attempts,
    }


def error_kind(message: str) -> str:
    """The kind of a teacher error message, for counting: ``HTTP 500``, ``timed out``, ``malformed response``...

    Example:
        >>> error_kind("HTTP 503 from http://127.0.0.1:8000/v1: busy"), error_kind("timed out (ReadTimeout) (x)")
        ('HTTP 503', 'timed out')
    """
    match = re.match(r"(HTTP \d{3}|timed out|malformed response|connection \w+|could not reach)", message.strip())
    if match:
        return match.group(1)
    return re.split(r"[:(]", message.strip(), maxsplit=1)[0].strip() or "unknown"


def summarize_errors(ds: datasets.Dataset, *, column: str = "error") -> dict[str, Any]:
    """Failed teacher requests of a generated dataset: how many, counts by :func:`error_kind`, the first message.

    Example:
        >>> summarize_errors(synthetic)  # doctest: +SKIP
        {'failed': 4, 'by_kind': {'HTTP 500': 4}, 'first': 'HTTP 500 from http://127.0.0.1:8000/v1: ...'}
    """
    require_columns(ds, [column], what="generated dataset")
    messages = [m for m in ds.with_format("arrow")[column].to_pylist() if m]
    kinds = Counter(error_kind(m) for m in messages)
    return {"failed": len(messages), "by_kind": dict(kinds.most_common()), "first": messages[0] if messages else None}


# ------------------------------------------------------------------------------------------------------------------
# Validation and items
# ------------------------------------------------------------------------------------------------------------------


def _check_arguments(teacher: Any, method: str, samples_per_item: int, seed: int) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; allowed: {', '.join(map(repr, METHODS))}.")
    if not is_int(samples_per_item) or samples_per_item < 1:
        raise ValueError(f"samples_per_item must be an integer >= 1, got {samples_per_item!r}.")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher must implement the Teacher protocol (identity() and generate()), got {type(teacher).__name__}; "
            "see embedsdg_hf.generation.teachers."
        )


def _resolve_prompt(prompt: str | os.PathLike | PromptTemplate | None, method: str) -> PromptTemplate:
    default, fields = METHOD_PROMPTS[method]
    template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(default if prompt is None else prompt)
    template.validate(fields, purpose=f"method={method!r}")
    return template


def _int_column(ds: datasets.Dataset, column: str) -> np.ndarray:
    values = column_array(ds, column)
    if len(values) and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            f"Column {column!r} of the pairs dataset must hold integers; its type is {ds.features[column]}."
        )
    return values.astype(np.int64)


def _pool_texts(pool: datasets.Dataset, rows: np.ndarray, columns: tuple[str, str]) -> dict[int, tuple[str, str]]:
    """(question, answer) of the given pool rows, read through Arrow."""
    unique = np.unique(rows)
    if len(unique) and (unique[0] < 0 or unique[-1] >= len(pool)):
        bad = unique[(unique < 0) | (unique >= len(pool))]
        raise ValueError(
            f"Seed rows {bad[:5].tolist()} are outside the seed pool (it has {len(pool)} rows); the pairs were made "
            "from another pool."
        )
    table = pool.select(unique.tolist()).with_format("arrow")
    texts = [table[column].to_pylist() for column in columns]
    for column, values in zip(columns, texts):
        bad = [int(row) for row, value in zip(unique, values) if not isinstance(value, str)]
        if bad:
            raise ValueError(f"Column {column!r} of the seed pool is not text in row(s) {bad[:5]}.")
    return {int(row): (q, a) for row, q, a in zip(unique, *texts)}


def _pair_items(pool: datasets.Dataset, pairs: datasets.Dataset | None, columns: tuple[str, str]) -> list[_Item]:
    if pairs is None:
        raise ValueError(
            "method='embedsdg' needs `pairs` (from make_seed_pairs, with decoded_text from add_decoded_text)."
        )
    require_columns(pairs, PAIR_COLUMNS, what="pairs dataset")
    seed_a, seed_b = _int_column(pairs, "seed_a"), _int_column(pairs, "seed_b")
    optional = {}
    for column, fallback in (("pair_id", np.arange(len(pairs))), ("region_id", np.full(len(pairs), -1))):
        if column in pairs.column_names:
            optional[column] = _int_column(pairs, column)
        else:
            logger.warning(
                "The pairs dataset has no %r column; using %s.", column, "row positions" if column == "pair_id" else -1
            )
            optional[column] = fallback.astype(np.int64)
    decoded = pairs.with_format("arrow")["decoded_text"].to_pylist()
    missing = [i for i, text in enumerate(decoded) if not isinstance(text, str)]
    if missing:
        raise ValueError(
            f"Column 'decoded_text' of the pairs dataset is empty (None) in {len(missing)} row(s) (first: "
            f"{missing[:5]}); run add_decoded_text first."
        )
    texts = _pool_texts(pool, np.concatenate([seed_a, seed_b]), columns)
    items = []
    for a, b, pair_id, region_id, text in zip(seed_a, seed_b, optional["pair_id"], optional["region_id"], decoded):
        (q1, a1), (q2, a2) = texts[int(a)], texts[int(b)]
        values = {"q1": q1, "a1": a1, "q2": q2, "a2": a2, "interpolated_decoded_text": text}
        items.append(_Item(int(a), int(b), int(region_id), int(pair_id), text, values, identity=int(pair_id)))
    return items


def _random_items(
    pool: datasets.Dataset, pairs: datasets.Dataset | None, n_samples: int | None, seed: int, columns: tuple[str, str]
) -> list[_Item]:
    if n_samples is None:
        if pairs is None:
            raise ValueError("method='random' needs n_samples, or pairs (whose length is then the budget).")
        n_samples = len(pairs)
    if not is_int(n_samples) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer, got {n_samples!r}.")
    if n_samples > len(pool):
        raise ValueError(
            f"n_samples={n_samples} is larger than the seed pool ({len(pool)} rows); RandomSDG draws seeds without "
            "replacement."
        )
    rows = np.random.default_rng(seed).choice(len(pool), size=n_samples, replace=False)
    texts = _pool_texts(pool, rows, columns)
    return [
        _Item(int(row), -1, -1, -1, "", {"q1": texts[int(row)][0], "a1": texts[int(row)][1]}, identity=int(row))
        for row in rows
    ]


# ------------------------------------------------------------------------------------------------------------------
# Requests, the cache, rows
# ------------------------------------------------------------------------------------------------------------------


def request_seed(seed: int, identity: int, sample_index: int, attempt: int = 0) -> int:
    """The sampling seed of one request: 31 bits of sha256 of (run seed, item identity, sample index[, attempt]).

    Example:
        >>> request_seed(0, 7, 0) == request_seed(0, 7, 0) != request_seed(0, 7, 1) != request_seed(0, 7, 0, 1)
        True
    """
    key = f"embedsdg-request:{seed}:{identity}:{sample_index}" + (f":{attempt}" if attempt else "")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _job(
    item: _Item,
    sample_index: int,
    template: PromptTemplate,
    sampling: SamplingParams,
    seed: int,
    prefill: str,
    identity: dict[str, Any],
    attempt: int = 0,
) -> _Job:
    request = TeacherRequest(
        messages=({"role": "user", "content": template.render(**item.values)},),
        sampling=sampling,
        seed=request_seed(seed, item.identity, sample_index, attempt),
        prefill=prefill,
    )
    return _Job(item, sample_index, request, request_key(identity, request, sample_index))


def _training_answer(parsed: ParsedExample) -> str:
    """The assistant turn for SFT: the solution ending in GSM8K's ``#### N`` line, so trained students emit it."""
    last = parsed.answer.rstrip().splitlines()[-1] if parsed.answer.strip() else ""
    if last.lstrip().startswith("####") or not parsed.final_answer:
        return parsed.answer
    return f"{parsed.answer.rstrip()}\n#### {parsed.final_answer}"


def _row(job: _Job, response: TeacherResponse, from_cache: bool, run: _Run, attempt: int = 0) -> dict[str, Any]:
    if response.ok:
        raw = run.prefill + response.text if response.prefill_applied else response.text
        parsed = parse_generation(raw, finish_reason=response.finish_reason)
    else:
        raw, parsed = response.text or "", ParsedExample(reject_reason=TEACHER_ERROR)
    messages = (
        [{"role": "user", "content": parsed.question}, {"role": "assistant", "content": _training_answer(parsed)}]
        if parsed.accepted
        else []
    )
    item = job.item
    return {
        "question": parsed.question,
        "answer": parsed.answer,
        "final_answer": parsed.final_answer,
        "messages": messages,
        "prompt": messages[:-1],
        "completion": messages[-1:],
        "reject_reason": parsed.reject_reason,
        "method": run.method,
        "seed_a": item.seed_a,
        "seed_b": item.seed_b,
        "region_id": item.region_id,
        "pair_id": item.pair_id,
        "decoded_text": item.decoded_text,
        "teacher_model": response.model or run.teacher_model,
        "teacher": run.teacher,
        "prompt_version": run.prompt_version,
        "sampling": run.sampling,
        "seed": job.request.seed,
        "sample_index": job.sample_index,
        "attempt": attempt,
        "request_key": job.key,
        "raw_response": raw,
        "finish_reason": response.finish_reason,
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "error": response.error,
        "from_cache": from_cache,
    }
