"""Cosine neighbours of student embeddings through FAISS, with memory bounded by batches (dedup, decontamination).

Mean-pooled token embeddings of texts from one domain all point roughly the same way (they share their frequent
tokens), so raw cosines of unrelated GSM8K questions are already ~0.92. Subtracting the corpus mean first
(``center``) spreads them out: measured on GSM8K with SmolLM2-135M (``benchmarks/bench_similarity.py``), the
nearest test question of a train question then has a median cosine of 0.54 (99.9th percentile 0.89), while a copy
with one word or the numbers changed stays above 0.95 in most cases. Thresholds in this library are for centred
cosines.

Two searches, both streaming; exact (``faiss.IndexFlatIP`` on unit vectors) below ``APPROX_MIN_ROWS`` indexed rows,
approximate above it. The approximate index finds candidates cheaply and re-ranks them exactly:

- candidates: the vectors are projected by PCA to a third of their dimensions (at least 128) and searched in an
  IVF index (``nlist = 2 sqrt(n)`` k-means cells trained on a sample, fp16 codes, ``nprobe`` cells per query);
- re-ranking: the ``REFINE_FACTOR`` best candidates of each query are scored again on their full fp16 vectors
  (``faiss.IndexRefine``), so a reported cosine is the full-space one.

Near duplicates sit very close to their source, so they are in the cell of the query or a neighbouring one:
measured recall on planted duplicates in ``benchmarks/bench_quality.py``. Pass ``approximate=False`` to force the
exact search at any size:

- :func:`best_match`: for every query, its most similar reference row. The reference is read in batches from Arrow
  (a 400k-row pool is never held in memory at once); each batch is indexed, searched, and dropped.
- :func:`first_near_duplicates`: within one set, "keep the first": a row is a duplicate when it is at least
  ``threshold`` similar to an *earlier kept* row. Rows are taken in blocks: a block is searched against the index of
  rows kept so far, then resolved within itself in order, then its kept rows join the index.

Public API: :func:`best_match`, :func:`first_near_duplicates`, :func:`unit_rows`, :func:`batched_mean`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from ..common.mapping import list_matrix
from ..common.validation import as_float_matrix, require_columns

logger = logging.getLogger(__name__)

__all__ = [
    "batched_mean",
    "best_match",
    "check_cosine",
    "ensure_embeddings",
    "first_near_duplicates",
    "iter_vectors",
    "unit_rows",
]

DEFAULT_BATCH_SIZE = 65_536
APPROX_MIN_ROWS = 100_000  # indexed rows from which the approximate (IVF) search is used by default
_TRAIN_PER_CELL = 39  # k-means training rows per IVF cell (FAISS's minimum without a warning)
DEFAULT_NPROBE = 48  # IVF cells searched per query (of 2 sqrt(n))
REFINE_FACTOR = 4  # candidates per query re-scored on the full vectors
MIN_PCA_DIMS = 128  # the candidate search's PCA keeps max(this, dims // 3) dimensions


def check_cosine(value: float | None, name: str, *, off: str) -> None:
    """A cosine threshold must be a number in [-1, 1]; None turns the check ``off`` (said in the error)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a cosine in [-1, 1], or None ({off}); got {value!r}.")


def iter_vectors(ds, column: str, *, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[tuple[int, np.ndarray]]:
    """``(start_row, float32 matrix)`` for consecutive batches of a vector column, read through Arrow."""
    require_columns(ds, [column])
    for start in range(0, len(ds), batch_size):
        chunk = ds.select(range(start, min(start + batch_size, len(ds))))
        yield start, as_float_matrix(list_matrix(chunk, column), column=column)


def batched_mean(ds, column: str, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """The mean vector of a column, accumulated in float64 one batch at a time."""
    total, count = None, 0
    for _, block in iter_vectors(ds, column, batch_size=batch_size):
        block_sum = block.sum(axis=0, dtype=np.float64)
        total = block_sum if total is None else total + block_sum
        count += len(block)
    if total is None:
        raise ValueError(f"Column {column!r} has no rows to average.")
    return total / count


def unit_rows(vectors: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
    """Rows minus ``center``, scaled to unit length (float32, C-contiguous, as FAISS wants). Zero rows stay zero."""
    x = np.asarray(vectors, dtype=np.float32)
    if center is not None:
        x = x - np.asarray(center, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def _flat_index(vectors: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(vectors)
    return index


def _use_ivf(n_indexed: int, approximate: bool | None) -> bool:
    return n_indexed >= APPROX_MIN_ROWS if approximate is None else bool(approximate)


def _ivf_cells(n_total: int) -> int:
    return max(1, int(2 * np.sqrt(n_total)))


def _ivf_index(sample: np.ndarray, n_total: int, nprobe: int | None):
    """The approximate index for ``n_total`` unit rows (see the module docstring), trained on ``sample``: PCA +
    IVF (fp16 codes) for candidates, re-ranked on the full fp16 vectors. Rows are numbered in the order added."""
    import faiss

    dim = sample.shape[1]
    nlist = max(1, min(_ivf_cells(n_total), len(sample) // _TRAIN_PER_CELL))
    reduced = max(MIN_PCA_DIMS, dim // 3)
    steps = f"PCA{reduced},IVF{nlist},SQfp16" if reduced < dim else f"IVF{nlist},SQfp16"
    candidates = faiss.index_factory(dim, steps, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(candidates)
    ivf.cp.seed, ivf.cp.niter = 0, 10  # same cells every run; 10 k-means rounds are plenty for routing
    full = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexRefine(candidates, full)
    index.k_factor = REFINE_FACTOR
    index.train(sample)
    ivf.nprobe = min(nlist, nprobe or DEFAULT_NPROBE)
    return index


def _reference_sample(reference, column: str, center, size: int) -> np.ndarray:
    rows = np.sort(np.random.default_rng(0).choice(len(reference), size=min(size, len(reference)), replace=False))
    block = as_float_matrix(list_matrix(reference.select(rows), column), column=column)
    return unit_rows(block, center)


def best_match(
    queries: np.ndarray,
    reference,
    *,
    column: str,
    center: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    desc: str = "Searching neighbours",
    approximate: bool | None = None,
    nprobe: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For every query row, the highest cosine over the ``reference`` Dataset's ``column`` and that row's index.

    Args:
        queries: (n, d) vectors, already centred and unit length (:func:`unit_rows`).
        reference: a ``datasets.Dataset`` with a fixed-length vector ``column``; read ``batch_size`` rows at a time.
        column: the reference's vector column.
        center: subtracted from reference rows before normalising (use the one applied to ``queries``).

        approximate: None (default) searches an IVF index when the reference has ``APPROX_MIN_ROWS`` rows or more
            and exactly below; True / False force it. The approximate index holds the reference as fp16 (2 bytes/dim/
            row) plus its PCA codes (a third of that).
        nprobe: IVF cells searched per query (default ``DEFAULT_NPROBE`` of 2 sqrt(rows) cells).

    Returns:
        ``(scores, rows)``: float32 and int64 arrays of length n; score -inf and row -1 when the reference is empty
        (approximate search: -inf / -1 also when no reference row shares a probed cell).
    """
    from datasets.utils.tqdm import tqdm  # silenced by datasets.disable_progress_bars()

    best = np.full(len(queries), -np.inf, dtype=np.float32)
    rows = np.full(len(queries), -1, dtype=np.int64)
    if len(queries) == 0 or len(reference) == 0:
        return best, rows
    ivf = None
    if _use_ivf(len(reference), approximate):
        sample = _reference_sample(reference, column, center, _ivf_cells(len(reference)) * _TRAIN_PER_CELL)
        ivf = _ivf_index(sample, len(reference), nprobe)
    with tqdm(total=len(reference), desc=desc, unit="row") as bar:
        for start, block in iter_vectors(reference, column, batch_size=batch_size):
            if block.shape[1] != queries.shape[1]:
                raise ValueError(
                    f"Column {column!r} of the reference has {block.shape[1]} dimensions but the queries have "
                    f"{queries.shape[1]}: they were embedded with different models."
                )
            if ivf is not None:  # rows are numbered in the order they are added: their reference positions
                ivf.add(unit_rows(block, center))
            else:
                scores, found = _flat_index(unit_rows(block, center)).search(queries, 1)
                better = scores[:, 0] > best
                best[better] = scores[better, 0]
                rows[better] = found[better, 0] + start
            bar.update(len(block))
    if ivf is not None:
        scores, found = ivf.search(queries, 1)
        hit = found[:, 0] >= 0
        best[hit], rows[hit] = scores[hit, 0], found[hit, 0]
    return best, rows


def first_near_duplicates(
    vectors: np.ndarray,
    *,
    threshold: float,
    candidates: np.ndarray | None = None,
    block_size: int = 4096,
    approximate: bool | None = None,
    nprobe: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep-first near-duplicate detection within one set of unit vectors.

    Row i is a duplicate when its cosine with an earlier *kept* row is ``>= threshold``; it then points at the most
    similar such row. Rows where ``candidates`` is False (already dropped by another check) are neither tested nor
    kept. Exact below ``APPROX_MIN_ROWS`` rows (every pair that matters is compared, in blocks of ``block_size``
    rows; memory O(block_size**2)); above it (or with ``approximate=True``) earlier blocks are searched through an
    IVF index trained on a sample of ``vectors``, within a block it stays exact.

    Returns:
        ``(duplicate_of, score)``: int64 (-1 for kept or skipped rows) and float32 (NaN where -1).

    Example:
        >>> v = unit_rows(np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]]))
        >>> first_near_duplicates(v, threshold=0.95)[0].tolist()
        [-1, 0, -1]
    """
    n = len(vectors)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan, dtype=np.float32)
    active = np.ones(n, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool).copy()
    if n == 0:
        return duplicate_of, score
    if _use_ivf(int(active.sum()), approximate):
        size = min(n, _ivf_cells(int(active.sum())) * _TRAIN_PER_CELL)
        sample = np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
        kept_index = _ivf_index(np.ascontiguousarray(vectors[sample]), int(active.sum()), nprobe)
    else:
        kept_index = _flat_index(np.zeros((0, vectors.shape[1]), np.float32))
    kept_rows = []
    for start in range(0, n, block_size):
        rows = np.flatnonzero(active[start : start + block_size]) + start
        if not len(rows):
            continue
        block = vectors[rows]
        if kept_index.ntotal:
            found_scores, found = kept_index.search(block, 1)
            hit = (found[:, 0] >= 0) & (found_scores[:, 0] >= threshold)
            duplicate_of[rows[hit]] = np.asarray(kept_rows)[found[hit, 0]]
            score[rows[hit]] = found_scores[hit, 0]
        else:
            hit = np.zeros(len(rows), dtype=bool)
        similar = block @ block.T
        kept_here = np.zeros(len(rows), dtype=bool)
        for i in range(len(rows)):
            if hit[i]:
                continue
            earlier = np.flatnonzero(kept_here[:i])
            if len(earlier):
                j = earlier[np.argmax(similar[i, earlier])]
                if similar[i, j] >= threshold:
                    duplicate_of[rows[i]], score[rows[i]] = rows[j], similar[i, j]
                    continue
            kept_here[i] = True
        if kept_here.any():
            kept_index.add(np.ascontiguousarray(block[kept_here]))
            kept_rows.extend(rows[kept_here].tolist())
    return duplicate_of, score


def ensure_embeddings(ds, *, model: str | None, text_template: str, column: str, what: str = "dataset"):
    """``ds`` with a ``column`` of student embeddings of ``text_template``: kept when present, else computed."""
    if column in ds.column_names:
        return ds
    if model is None:
        raise ValueError(
            f"The {what} has no {column!r} column and no model was given to compute it; pass model=<student spec> "
            f"or add the column with add_embeddings(..., column={column!r}). Columns: {ds.column_names}."
        )
    from .embed import add_embeddings

    return add_embeddings(ds, model=model, text_template=text_template, column=column, count_column=f"{column}_tokens")
