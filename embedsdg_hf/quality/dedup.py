"""``add_duplicate_flags``: exact and near-duplicate detection, within a generated set and against the seed pool.

Keep the first. The seed pool comes first (a generated example that repeats a pool example teaches nothing new), then
the generated rows in order. A row is flagged, with the first check that fires:

1. ``exact_duplicate``: its normalised text (case, punctuation, spacing and Unicode form ignored; see
   :func:`~embedsdg_hf.common.text.words`) equals a pool row's, or an earlier generated row's;
2. ``near_duplicate``: the centred cosine of its student embedding (:mod:`~embedsdg_hf.space.neighbors`) with a pool
   row, or with an earlier *kept* generated row, is ``>= threshold``.

The text compared is ``text_template`` over the rows (default the question alone: the same problem with another
solution is still the same problem). The embedding is the student's pooled token embedding of that text, the same
space the method searches; it is added as a column (``embedding_column``) and reused by decontamination.

Added columns: ``duplicate_reason`` (None, ``"exact_duplicate"`` or ``"near_duplicate"``), ``duplicate_source``
(``"pool"`` or ``"synthetic"``), ``duplicate_row`` (the row it repeats, in that source) and ``duplicate_score`` (the
cosine; 1.0 for exact duplicates). ``ds.filter(filter_unique)`` keeps the rest.

Memory is bounded by batches: the pool is hashed and searched ``batch_size`` rows at a time.

Public API: :func:`add_duplicate_flags`, :func:`filter_unique`, :data:`DUPLICATE_REASONS`.
"""

from __future__ import annotations

import logging
from typing import Any

import datasets
import numpy as np

from ..common.mapping import attach_columns, vector_matrix
from ..common.splits import splitwise
from ..common.text import render_texts, text_hash
from ..common.validation import require_template_columns, template_fields
from ..space.neighbors import (
    DEFAULT_BATCH_SIZE,
    batched_mean,
    best_match,
    check_cosine,
    ensure_embeddings,
    first_near_duplicates,
    unit_rows,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_THRESHOLD", "DUPLICATE_REASONS", "add_duplicate_flags", "filter_unique"]

EXACT, NEAR = "exact_duplicate", "near_duplicate"
DUPLICATE_REASONS = (EXACT, NEAR)
DEFAULT_THRESHOLD = 0.95
FEATURES = datasets.Features(
    {
        "duplicate_reason": datasets.Value("string"),
        "duplicate_source": datasets.Value("string"),
        "duplicate_row": datasets.Value("int64"),
        "duplicate_score": datasets.Value("float32"),
    }
)


def filter_unique(example: dict[str, Any]) -> bool:
    """``Dataset.filter`` predicate: keep rows that :func:`add_duplicate_flags` did not flag.

    Example:
        >>> filter_unique({"duplicate_reason": None}), filter_unique({"duplicate_reason": "near_duplicate"})
        (True, False)
    """
    return example["duplicate_reason"] is None


def _hashes(ds, template: str, *, batch_size: int) -> np.ndarray:
    fields = template_fields(template)
    table = ds.select_columns(fields).with_format("arrow")
    out = np.empty(len(ds), dtype=np.int64)
    for start in range(0, len(ds), batch_size):
        batch = table[start : start + batch_size].to_pydict()
        out[start : start + batch_size] = [text_hash(text) for text in render_texts(batch, template, fields)]
    return out


def _first_rows(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique hashes and the first row holding each."""
    unique, first = np.unique(hashes, return_index=True)
    return unique, first.astype(np.int64)


@splitwise(
    streaming="it compares every row with the pool and with every earlier row at once (FAISS over all embeddings)"
)
def add_duplicate_flags(
    ds: datasets.Dataset,
    pool: datasets.Dataset | None = None,
    *,
    model: str | None = None,
    text_template: str = "{question}",
    pool_template: str | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    embedding_column: str = "question_embedding",
    batch_size: int = DEFAULT_BATCH_SIZE,
    approximate: bool | None = None,
) -> datasets.Dataset:
    """Flag exact and near duplicates of earlier rows and of the seed pool (see the module docstring).

    Args:
        ds: the generated rows, in the order that decides which of two duplicates is kept.
        pool: the seed pool (optional): its rows count as coming before every row of ``ds``.
        model: the student spec, to embed rows that have no ``embedding_column`` yet.
        text_template: ``str.format`` template over ``ds``'s columns: the text compared.
        pool_template: the same text over the pool's columns (default ``text_template``).
        threshold: centred cosine at or above which two rows are near duplicates; None checks exact duplicates only.
        embedding_column: where the embeddings are (or are put) in ``ds``; the pool's are computed on the fly
            unless it has that column too.
        batch_size: pool rows hashed / searched at a time.
        approximate: near-duplicate search through a FAISS IVF index (None: from ``APPROX_MIN_ROWS`` indexed rows
            on, exact below; see :mod:`~embedsdg_hf.space.neighbors`); True / False force it.

    Returns:
        ``ds`` with ``duplicate_reason``, ``duplicate_source``, ``duplicate_row``, ``duplicate_score`` (and
        ``embedding_column`` when near duplicates are checked).

    Example:
        >>> flagged = add_duplicate_flags(synthetic, pool, model="smollm2-135m-instruct")  # doctest: +SKIP
        >>> unique = flagged.filter(filter_unique)  # doctest: +SKIP
    """
    pool_template = pool_template or text_template
    require_template_columns(ds, text_template)
    if pool is not None:
        require_template_columns(pool, pool_template)
    check_cosine(threshold, "threshold", off="checks exact duplicates only")
    n = len(ds)
    reason: list[str | None] = [None] * n
    source: list[str | None] = [None] * n
    row = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan, dtype=np.float32)

    def flag(mask: np.ndarray, why: str, where: str, rows: np.ndarray, scores: np.ndarray | float) -> None:
        new = mask & np.array([r is None for r in reason], dtype=bool)
        for i in np.flatnonzero(new):
            reason[i], source[i] = why, where
        row[new] = rows[new]
        score[new] = scores[new] if isinstance(scores, np.ndarray) else scores

    hashes = _hashes(ds, text_template, batch_size=batch_size)
    if pool is not None and len(pool) and n:
        pool_unique, pool_first = _first_rows(_hashes(pool, pool_template, batch_size=batch_size))
        at = np.clip(np.searchsorted(pool_unique, hashes), 0, len(pool_unique) - 1)
        flag(pool_unique[at] == hashes, EXACT, "pool", pool_first[at], 1.0)
    unique, first = _first_rows(hashes)
    earlier = first[np.searchsorted(unique, hashes)]
    flag(earlier < np.arange(n), EXACT, "synthetic", earlier, 1.0)

    if threshold is not None and n:
        ds = ensure_embeddings(ds, model=model, text_template=text_template, column=embedding_column)
        vectors = vector_matrix(ds, embedding_column)
        pool_vectors = None
        if pool is not None and len(pool):
            pool_vectors = ensure_embeddings(
                pool if embedding_column in pool.column_names else pool.select_columns(template_fields(pool_template)),
                model=model,
                text_template=pool_template,
                column=embedding_column,
                what="seed pool",
            )
            center = (batched_mean(pool_vectors, embedding_column) * len(pool) + vectors.sum(0)) / (len(pool) + n)
        else:
            center = vectors.mean(0)
        queries = unit_rows(vectors, center)
        if pool_vectors is not None:
            best, at = best_match(
                queries,
                pool_vectors,
                column=embedding_column,
                center=center,
                batch_size=batch_size,
                desc="Near duplicates vs the seed pool",
                approximate=approximate,
            )
            flag(best >= threshold, NEAR, "pool", at, best)
        undecided = np.array([r is None for r in reason], dtype=bool)
        duplicate_of, similar = first_near_duplicates(
            queries, threshold=threshold, candidates=undecided, approximate=approximate
        )
        flag(duplicate_of >= 0, NEAR, "synthetic", duplicate_of, similar)

    counts = {why: reason.count(why) for why in DUPLICATE_REASONS}
    logger.info("Duplicates among %d rows: %s (threshold %s).", n, counts, threshold)
    columns = {
        "duplicate_reason": reason,
        "duplicate_source": source,
        "duplicate_row": [int(r) if r >= 0 else None for r in row],
        "duplicate_score": [None if np.isnan(s) else float(s) for s in score],
    }
    return attach_columns(ds, columns, FEATURES)
