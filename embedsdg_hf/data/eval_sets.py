"""Evaluation sets: GSM8K test (local ``../shared`` copy or the Hub), MATH-500, or a local file.

Used by evaluation (:mod:`embedsdg_hf.training.evaluate`) and decontamination
(:mod:`embedsdg_hf.quality.decontaminate`), so it lives below both.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from ..common.answers import KINDS
from ..common.validation import require_rows
from .seed_pools import load_seed_pool

__all__ = ["BUILTIN_EVAL_DATA", "load_eval_data", "local_gsm8k_file"]

logger = logging.getLogger(__name__)

BUILTIN_EVAL_DATA = {"gsm8k-test": "gsm8k", "math-test": "math"}
_GSM8K_DIR = Path("shared") / "data" / "gsm8k"


def local_gsm8k_file(split: str = "test") -> Path | None:
    """``../shared/data/gsm8k/<split>.jsonl`` relative to the working directory, else relative to this repository;
    None when neither exists."""
    for root in (Path.cwd().parent, Path(__file__).resolve().parents[2].parent):
        if (root / _GSM8K_DIR / f"{split}.jsonl").is_file():
            return root / _GSM8K_DIR / f"{split}.jsonl"
    return None


def load_eval_data(
    spec: str, *, kind: str | None = None, limit: int | None = None, seed: int | None = None
) -> tuple[Any, str]:
    """Load evaluation problems; return ``(Dataset, kind)`` with kind ``"gsm8k"`` or ``"math"``.

    Args:
        spec: ``"gsm8k-test"`` (``../shared/data/gsm8k/test.jsonl`` next to the working directory or to this
            repository when present, else the Hub's ``openai/gsm8k``, config ``main``, split ``test``),
            ``"math-test"`` (Hub ``HuggingFaceH4/MATH-500``, split ``test``: columns ``problem``/``answer``), or a
            local ``.jsonl``/``.json``/``.parquet``/``.csv`` file.
        kind: the benchmark kind of a local file; inferred when None (an ``answer`` column with ``#### N`` is GSM8K,
            a ``solution`` column or ``\\boxed`` answers are MATH).
        limit: keep only ``limit`` rows: the first ``limit`` rows of the file (so runs with the same limit compare
            the same problems), or a random sample of them when ``seed`` is given.
        seed: with ``limit``, sample ``limit`` rows with this seed (kept in file order) instead of taking the first.

    Example:
        >>> data, kind = load_eval_data("gsm8k-test", limit=8)  # doctest: +SKIP
        >>> kind, len(data), data.column_names  # doctest: +SKIP
        ('gsm8k', 8, ['question', 'answer'])
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)} or None, got {kind!r}.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for every row), got {limit}.")
    if seed is not None and limit is None:
        logger.warning("seed=%s is ignored without limit: every row is evaluated", seed)
    if spec in BUILTIN_EVAL_DATA:
        if kind is not None and kind != BUILTIN_EVAL_DATA[spec]:
            raise ValueError(f"{spec!r} is a {BUILTIN_EVAL_DATA[spec]} benchmark, but kind={kind!r} was given.")
        kind = BUILTIN_EVAL_DATA[spec]
        local = local_gsm8k_file("test") if spec == "gsm8k-test" else None
        if local is not None:
            ds = load_seed_pool(str(local), what="evaluation data")
        elif spec == "gsm8k-test":
            ds = load_seed_pool("openai/gsm8k", name="main", split="test")
        else:
            ds = load_seed_pool("HuggingFaceH4/MATH-500", split="test")
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"Evaluation data {spec!r} is neither a built-in name ({sorted(BUILTIN_EVAL_DATA)}) nor an existing "
                "local file."
            )
        ds = load_seed_pool(str(path), what="evaluation data")
    require_rows(ds, what=f"evaluation data {spec!r}", step="evaluation")
    kind = kind or _infer_kind(ds, spec)
    if limit is not None and limit < len(ds):
        indices = range(limit) if seed is None else sorted(random.Random(seed).sample(range(len(ds)), limit))
        ds = ds.select(indices)
    logger.info("Evaluation data %s (%s): %d rows", spec, kind, len(ds))
    return ds, kind


def _infer_kind(ds, spec: str) -> str:
    columns = ds.column_names
    head = ds.select(range(min(20, len(ds))))
    answers = [str(a) for a in head["answer"]] if "answer" in columns else []
    if any("####" in a for a in answers):
        return "gsm8k"
    if "solution" in columns or any("\\boxed" in a for a in answers):
        return "math"
    raise ValueError(
        f"Cannot tell whether {spec!r} holds GSM8K or MATH problems: GSM8K needs an 'answer' column ending in "
        f"'#### N', MATH a 'solution' column (or answers in \\boxed{{}}). Columns present: {columns}. "
        "Pass kind='gsm8k' or kind='math' (CLI: --kind) and name the columns if they differ."
    )
