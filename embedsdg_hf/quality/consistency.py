"""An optional self-consistency gate: the teacher solves each generated question ``k`` times; the majority of its
answers must agree with the row's final answer.

For every row, ``k`` requests (``sample_index`` 0..k-1) go to the teacher, each one user message rendered from a
packaged solve prompt (``solve_gsm8k_v1``: step by step, ending with a ``#### <number>`` line; ``solve_math_v1``:
the final answer in ``\\boxed{}``; field ``{question}``) or your own template. The request seed is
:func:`~embedsdg_hf.generation.generate.request_seed` of the run ``seed``, the row's identity (a hash of its question
text, not its position, so filtering rows keeps the other rows' requests and cache keys) and the sample index.

Each solution's answer is read with :func:`~embedsdg_hf.common.answers.extract_gsm8k_answer` (``strict=False``: the
``####`` line, else "the answer is N", else the last number) or :func:`~embedsdg_hf.common.answers.extract_boxed` (the
last complete box). A failed request, a solution without an answer, and a GSM8K solution cut off at the token limit
(``finish_reason="length"``) without a ``#### N`` line (its last number is a step, not its answer) are *no vote*.
The votes are grouped by :func:`~embedsdg_hf.common.answers.answers_equal` and the largest group is the majority. On a
tie between the largest groups, the group of the row's final answer wins if it is among them (the gate only rejects a
row when another answer got strictly more votes), otherwise the group whose first vote came first (lowest sample
index).

New columns:

- ``consistency_answers``: the k extracted answers (None for no vote);
- ``consistency_majority``: the majority answer as first written (None when there was no vote);
- ``consistency_agreement``: the share of the k votes equal to the row's final answer (no votes count in the
  denominator), for your own threshold;
- ``consistency_reason`` (``reason_column``): None when the majority equals the final answer, else one of
  :data:`CONSISTENCY_REASONS`: ``consistency_mismatch`` (the majority answer is another one) or
  ``consistency_no_answer`` (none of the k solutions gave an answer).

Rows the parser rejected (a ``reject_reason`` column that is not None) are skipped: no requests are sent, their
reason is None (they are filtered out by :func:`~embedsdg_hf.generation.generate.filter_accepted` anyway), their
answers list is empty and majority and agreement are None.

Resume: with ``cache_dir``, every successful response is appended durably to ``cache_dir/consistency.jsonl`` the
moment the teacher reports it (:func:`~embedsdg_hf.generation.request_cache.run_cached`); a rerun sends only what is
not there. Failed requests are never cached, so they are sent again next time.

Public API: :func:`add_self_consistency`, :func:`filter_consistent`, :data:`CONSISTENCY_REASONS`.

Example:
    >>> from embedsdg_hf.generation.teachers import load_teacher
    >>> teacher = load_teacher("openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1")  # doctest: +SKIP
    >>> synthetic = add_self_consistency(synthetic, teacher, k=5, cache_dir="runs/gen")  # doctest: +SKIP
    >>> train = synthetic.filter(filter_accepted).filter(filter_consistent)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from ..common.answers import KINDS, answers_equal, extract_boxed, extract_gsm8k_answer, strip_boxed
from ..common.mapping import attach_columns
from ..common.splits import splitwise
from ..common.validation import is_int, require_columns
from ..generation.generate import request_seed
from ..generation.prompts import PromptTemplate, load_prompt
from ..generation.request_cache import request_key, run_cached
from ..generation.teachers.base import SamplingParams, Teacher, TeacherRequest, TeacherResponse
from .verify import count_reasons

logger = logging.getLogger(__name__)

__all__ = ["CONSISTENCY_REASONS", "add_self_consistency", "filter_consistent"]

CONSISTENCY_MISMATCH = "consistency_mismatch"
CONSISTENCY_NO_ANSWER = "consistency_no_answer"
CONSISTENCY_REASONS = (CONSISTENCY_MISMATCH, CONSISTENCY_NO_ANSWER)

CACHE_FILE = "consistency.jsonl"
REJECT_COLUMN = "reject_reason"
KIND_PROMPTS = {"gsm8k": "solve_gsm8k_v1", "math": "solve_math_v1"}
OUTPUT_FEATURES = {
    "consistency_answers": datasets.List(datasets.Value("string")),
    "consistency_majority": datasets.Value("string"),
    "consistency_agreement": datasets.Value("float64"),
}


@splitwise(streaming="rows with the same question share their teacher requests, which are sent and cached together")
def add_self_consistency(
    ds: datasets.Dataset,
    teacher: Teacher,
    *,
    k: int = 5,
    kind: str = "gsm8k",
    question_column: str = "question",
    final_column: str = "final_answer",
    sampling: SamplingParams | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    prompt: str | os.PathLike | PromptTemplate | None = None,
    reason_column: str = "consistency_reason",
) -> datasets.Dataset:
    """Ask the teacher to solve every question ``k`` times and add the vote (columns in the module docstring).

    Args:
        ds: rows with ``question_column`` and ``final_column`` (e.g. from
            :func:`~embedsdg_hf.generation.generate.make_synthetic_dataset`).
        teacher: a :class:`~embedsdg_hf.generation.teachers.base.Teacher`.
        k: solutions asked per question.
        kind: ``"gsm8k"`` (``#### N`` answers, compared as numbers) or ``"math"`` (``\\boxed{}`` answers).
        question_column / final_column: the question and the final answer it is checked against.
        sampling: sampling settings of every request; default temperature 0.7, top_p 0.95, 512 tokens.
        seed: the run seed, mixed into every request seed.
        cache_dir: where finished requests are recorded (``consistency.jsonl``) so an interrupted run resumes.
        prompt: a packaged template name, a path to your own ``.txt`` template, or a ``PromptTemplate`` with exactly
            the field ``{question}``; default ``"solve_gsm8k_v1"`` / ``"solve_math_v1"``.
        reason_column: the name of the reason column.

    Returns:
        ``ds`` with the four new columns (existing columns of those names are replaced, with a warning).

    Raises:
        TeacherError: from the teacher, after every result it reported has been saved to ``cache_dir``.

    Example:
        >>> checked = add_self_consistency(synthetic, teacher, k=5, cache_dir="runs/gen")  # doctest: +SKIP
        >>> checked[0]["consistency_answers"], checked[0]["consistency_reason"]  # doctest: +SKIP
        (['18', '18', None, '16', '18'], None)
    """
    sampling = SamplingParams() if sampling is None else sampling
    _check_arguments(teacher, k, kind, seed, sampling)
    require_columns(ds, [question_column, final_column])
    template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(prompt or KIND_PROMPTS[kind])
    template.validate(["question"], purpose="add_self_consistency")
    table = ds.with_format("arrow")
    questions, finals = table[question_column].to_pylist(), table[final_column].to_pylist()
    rejected = table[REJECT_COLUMN].to_pylist() if REJECT_COLUMN in ds.column_names else [None] * len(ds)
    active = [i for i, reason in enumerate(rejected) if reason is None]
    _check_questions(questions, active, question_column)
    if len(active) < len(ds):
        logger.info("add_self_consistency: %d row(s) the parser rejected are skipped.", len(ds) - len(active))

    identity = teacher.identity()
    keys: dict[tuple[int, int], str] = {}
    requests: dict[str, TeacherRequest] = {}  # by key: rows with the same question share their requests
    for row in active:
        content = template.render(question=questions[row])
        for sample_index in range(k):
            request = TeacherRequest(
                messages=({"role": "user", "content": content},),
                sampling=sampling,
                seed=request_seed(seed, _question_identity(questions[row]), sample_index),
            )
            key = request_key(identity, request, sample_index)
            keys[row, sample_index] = key
            requests.setdefault(key, request)
    cache_path = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
    results = run_cached(
        teacher, list(requests.values()), list(requests), cache_path, what="consistency votes (counted as no vote)"
    )
    votes_by_key = {key: _extract(response, kind) for key, (response, _) in zip(requests, results)}

    columns: dict[str, list[Any]] = {name: [] for name in (*OUTPUT_FEATURES, reason_column)}
    is_active = set(active)
    for row in range(len(ds)):
        if row not in is_active:
            values = ([], None, None, None)
        else:
            votes = [votes_by_key[keys[row, sample_index]] for sample_index in range(k)]
            values = (votes, *_vote(votes, finals[row], kind))
        for name, value in zip(columns, values):
            columns[name].append(value)
    out = _add_columns(ds, columns, reason_column)
    failures = count_reasons(out, reason_column)
    logger.info(
        "add_self_consistency(k=%d, kind=%r): %d row(s) checked, %d agree; %s; %d request(s) in all.",
        k,
        kind,
        len(active),
        len(active) - sum(failures.values()),
        failures,
        len(requests),
    )
    return out


def filter_consistent(example: dict[str, Any]) -> bool:
    """``Dataset.filter`` predicate: keep the rows whose ``consistency_reason`` is None (agreeing, or skipped).

    Example:
        >>> filter_consistent({"consistency_reason": None})
        True
        >>> filter_consistent({"consistency_reason": "consistency_mismatch"})
        False
    """
    return example["consistency_reason"] is None


def _check_arguments(teacher: Any, k: int, kind: str, seed: int, sampling: Any) -> None:
    if not is_int(k) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}.")
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; allowed: {', '.join(map(repr, KINDS))}.")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if not isinstance(sampling, SamplingParams):
        raise TypeError(f"sampling must be a SamplingParams (or None for the default), got {type(sampling).__name__}.")
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher must implement the Teacher protocol (identity() and generate()), got {type(teacher).__name__}; "
            "see embedsdg_hf.generation.teachers."
        )


def _check_questions(questions: list[Any], rows: list[int], column: str) -> None:
    bad = [row for row in rows if not isinstance(questions[row], str) or not questions[row].strip()]
    if bad:
        raise ValueError(
            f"Column {column!r} is empty or not text in {len(bad)} row(s) the parser did not reject (first: "
            f"{bad[:5]}); every checked row needs a question."
        )


def _question_identity(question: str) -> int:
    """A row's identity for its request seeds: 63 bits of the sha256 of its question text."""
    return int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big") >> 1


def _extract(response: TeacherResponse, kind: str) -> str | None:
    """The answer of one solution, or None (no vote): a failed request gives none, and a GSM8K solution cut off at
    the token limit counts only with a finished ``#### N`` line (its last number is a step, not its answer)."""
    if not response.ok:
        return None
    if kind == "math":
        return extract_boxed(response.text)
    return extract_gsm8k_answer(response.text, strict=response.finish_reason == "length")


def _equal(a: str | None, b: str | None, kind: str) -> bool:
    return bool(answers_equal(a, b, kind))


def _vote(votes: Sequence[str | None], final_answer: str | None, kind: str) -> tuple[str | None, float, str | None]:
    """(majority, agreement, reason) of one row's votes (tie rule in the module docstring)."""
    reference = strip_boxed(final_answer or "") if kind == "math" else final_answer
    agreement = sum(_equal(vote, reference, kind) for vote in votes) / len(votes)
    groups: list[list[str]] = []  # votes grouped by equality, in order of first appearance
    for vote in votes:
        if vote is None:
            continue
        group = next((g for g in groups if _equal(vote, g[0], kind)), None)
        if group is None:
            groups.append([vote])
        else:
            group.append(vote)
    if not groups:
        return None, agreement, CONSISTENCY_NO_ANSWER
    top = max(len(group) for group in groups)
    leaders = [group[0] for group in groups if len(group) == top]
    majority = next((vote for vote in leaders if _equal(vote, reference, kind)), leaders[0])
    return majority, agreement, None if _equal(majority, reference, kind) else CONSISTENCY_MISMATCH


def _add_columns(ds: datasets.Dataset, columns: dict[str, list[Any]], reason_column: str) -> datasets.Dataset:
    replaced = [name for name in columns if name in ds.column_names]
    if replaced:
        logger.warning("Column(s) %s already exist and will be replaced by the self-consistency check.", replaced)
    features = datasets.Features({**OUTPUT_FEATURES, reason_column: datasets.Value("string")})
    return attach_columns(ds, columns, features)
