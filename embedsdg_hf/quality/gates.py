"""Quality gates in sequence: each gate sees only the rows every earlier gate passed, so "keep the first" in dedup
never keeps a row that verification dropped, and the costly self-consistency check runs last, on the survivors.

A gate is any transform that adds a reason column (None = passed): :func:`~embedsdg_hf.quality.verify.add_verification`
(``verify_reason``), :func:`~embedsdg_hf.quality.dedup.add_duplicate_flags` (``duplicate_reason``),
:func:`~embedsdg_hf.quality.decontaminate.add_contamination_flags` (``contamination_reason``),
:func:`~embedsdg_hf.quality.consistency.add_self_consistency` (``consistency_reason``). :func:`apply_gate` runs one on
the rows still passing and writes its columns back (null for rows it never saw); :func:`add_quality_reason` names, per
row, the first gate that dropped it; ``ds.filter(filter_passed)`` keeps the rest; :func:`summarize_quality` counts
drops by gate and reason for the run summary and the dataset card.

Example:
    >>> checked = apply_gate(accepted, add_verification)  # doctest: +SKIP
    >>> checked = apply_gate(checked, add_duplicate_flags, pool, model="smollm2-135m-instruct")  # doctest: +SKIP
    >>> train = add_quality_reason(checked).filter(filter_passed)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from ..common.mapping import attach_columns
from ..common.splits import map_batched, splitwise

logger = logging.getLogger(__name__)

__all__ = ["GATES", "add_quality_reason", "apply_gate", "filter_passed", "summarize_quality"]

# gate name -> its reason column, in the order gates run in a pipeline
GATES = {
    "verification": "verify_reason",
    "deduplication": "duplicate_reason",
    "decontamination": "contamination_reason",
    "self-consistency": "consistency_reason",
}


def _present(ds: datasets.Dataset) -> dict[str, str]:
    return {gate: column for gate, column in GATES.items() if column in ds.column_names}


def _passing(ds: datasets.Dataset) -> np.ndarray:
    table = ds.with_format("arrow")
    mask = np.ones(len(ds), dtype=bool)
    for column in _present(ds).values():
        mask &= table[column].is_null().to_numpy(zero_copy_only=False)
    return mask


@splitwise(streaming="it selects the rows still passing by position and writes the gate's columns back")
def apply_gate(ds: datasets.Dataset, gate: Callable[..., datasets.Dataset], *args: Any, **kwargs: Any):
    """Run ``gate(rows, *args, **kwargs)`` on the rows that passed every gate so far; write its new columns back.

    Rows the gate did not see get nulls in its columns (so they count as neither passed nor dropped by it). Only
    columns ``ds`` does not have yet are written back: run each gate once.
    """
    passing = np.flatnonzero(_passing(ds))
    if len(passing) == 0:
        logger.info("No rows left for %s: every row was dropped by an earlier gate.", getattr(gate, "__name__", gate))
        return ds
    if len(passing) == len(ds):
        return gate(ds, *args, **kwargs)
    out = gate(ds.select(passing), *args, **kwargs)
    new = [c for c in out.column_names if c not in ds.column_names]
    where = np.full(len(ds), -1, dtype=np.int64)
    where[passing] = np.arange(len(passing))
    take = pa.array(where, mask=where < 0)
    table = out.with_format("arrow")
    columns = {c: table[c].combine_chunks().take(take) for c in new}
    return attach_columns(ds, columns, datasets.Features({c: out.features[c] for c in new}))


class _FirstReason:
    """The ``map`` function of :func:`add_quality_reason` (state: the reason columns, in gate order)."""

    def __init__(self, reason_columns: list[str], column: str):
        self.reason_columns, self.column = reason_columns, column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        n = len(next(iter(batch.values()))) if batch else 0
        reasons: list[str | None] = [None] * n
        for gate_column in self.reason_columns:
            for i, value in enumerate(batch[gate_column]):
                if reasons[i] is None and value is not None:
                    reasons[i] = value
        return {self.column: reasons}


@splitwise()
def add_quality_reason(ds: datasets.Dataset, column: str = "quality_reason", **map_kwargs: Any) -> datasets.Dataset:
    """Add ``column``: the reason of the first gate (in :data:`GATES` order) that dropped the row, or None.

    ``ds`` may be a ``Dataset``, an ``IterableDataset`` (as rows are read) or a dict of them (every split);
    ``map_kwargs`` go to the batched ``map``.

    Example:
        >>> add_quality_reason(datasets.Dataset.from_dict({"verify_reason": [None, "bad_arithmetic"]}))[1]
        {'verify_reason': 'bad_arithmetic', 'quality_reason': 'bad_arithmetic'}
    """
    return map_batched(
        ds,
        _FirstReason(list(_present(ds).values()), column),
        new_features={column: datasets.Value("string")},
        step="add_quality_reason",
        desc="Naming the first gate that dropped each row",
        **map_kwargs,
    )


def filter_passed(example: dict[str, Any]) -> bool:
    """``Dataset.filter`` predicate: keep rows no gate dropped (after :func:`add_quality_reason`).

    Example:
        >>> filter_passed({"quality_reason": None}), filter_passed({"quality_reason": "bad_arithmetic"})
        (True, False)
    """
    return example["quality_reason"] is None


def summarize_quality(ds: datasets.Dataset) -> dict[str, Any]:
    """``{"checked", "passed", "gates": {gate: {"checked", "dropped", "reasons": {reason: n}}}}`` of a gated set.

    Example:
        >>> from embedsdg_hf.quality.verify import add_verification
        >>> rows = datasets.Dataset.from_dict(
        ...     {"answer": ["2*3 = <<2*3=6>>6\\n#### 6", "2*3 = <<2*3=7>>7\\n#### 7"], "final_answer": ["6", "7"]}
        ... )
        >>> checked = add_quality_reason(apply_gate(rows, add_verification))
        >>> summarize_quality(checked)  # doctest: +NORMALIZE_WHITESPACE
        {'checked': 2, 'passed': 1,
         'gates': {'verification': {'checked': 2, 'dropped': 1, 'reasons': {'bad_arithmetic': 1}}}}
    """
    table = ds.with_format("arrow")
    gates, alive = {}, np.ones(len(ds), dtype=bool)
    for gate, column in _present(ds).items():
        values = table[column].to_pylist()
        reasons = Counter(v for v, a in zip(values, alive) if a and v is not None)
        gates[gate] = {"checked": int(alive.sum()), "dropped": sum(reasons.values()), "reasons": dict(reasons)}
        alive &= np.array([v is None for v in values], dtype=bool)
    return {"checked": len(ds), "passed": int(alive.sum()), "gates": gates}
