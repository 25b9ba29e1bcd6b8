"""Density vs accuracy (paper §4.4, Fig. 7): is the student weaker where its training pool is sparse?

:func:`density_vs_accuracy` is the paper's measure; :func:`density_vs_measure` takes any per-example score (e.g. the
answer loss of :mod:`embedsdg_hf.training.answer_loss`, a continuous measure of weakness where accuracy is on the
floor) and averages it per region the same way.

The pool is embedded with the student, reduced (3-D PCA by default, or a run's own fitted reducer, so density is
measured in the space the sparse regions were found in) and gridded; every non-empty window of the grid is a region
whose *density* is its pool count. Scored examples (e.g. the test set with a ``correct`` column
from ``evaluate_model``) are embedded with the same student and template, projected with the same reducer, and
assigned to regions. Per region: pool count and the student's mean accuracy. Regions with fewer than
``min_examples`` scored examples are excluded and counted, as are scored examples outside the pool's bounds.
Pearson and Spearman correlations (with p-values, scipy) summarise the relation.
"""

from __future__ import annotations

import logging

import numpy as np

from ..common.mapping import vector_matrix
from ..common.validation import require_columns, require_rows

logger = logging.getLogger(__name__)


def density_vs_accuracy(pool, scored, *, correct_column: str = "correct", **kwargs):
    """Per-region pool density and student accuracy (the mean of the boolean ``correct_column``), and their
    correlation: :func:`density_vs_measure` with the paper's measure (the regions' column is ``accuracy``).

    Example:
        >>> regions, stats = density_vs_accuracy(pool, predictions, model="smollm2-135m-instruct")  # doctest: +SKIP
    """
    return density_vs_measure(pool, scored, measure_column=correct_column, name="accuracy", **kwargs)


def density_vs_measure(
    pool,
    scored,
    *,
    model: str,
    measure_column: str,
    name: str | None = None,
    text_template: str = "{question}\n{answer}",
    scored_template: str | None = None,
    n_components: int = 3,
    bins: int = 6,
    min_examples: int = 5,
    seed: int = 0,
    weights: str = "mean",
    max_length: int | None = None,
    reducer=None,
):
    """Per-region pool density and the mean of a per-example measure there, and their correlation.

    Args:
        pool: the training pool (embedded here with ``model`` / ``text_template`` unless it has ``embedding``).
        scored: examples with a numeric or boolean ``measure_column`` (e.g. ``correct`` from ``evaluate_model``'s
            predictions, or ``answer_loss``), embedded with ``scored_template`` (default: ``text_template``).
            Rows whose measure is missing (None / NaN) are left out and counted (``unscored``).
        name: the regions' column of the per-region mean (default: ``mean_<measure_column>``).
        n_components / bins: PCA dimensions and windows per axis of the grid.
        min_examples: scored examples a region needs to be scored.
        weights / max_length: token weights and truncation of the embedding (as the run used).
        reducer: a fitted :class:`~embedsdg_hf.space.reduce.Reducer` (e.g. ``Reducer.load(run_dir / "reducer")``)
            to use instead of fitting a PCA: its fitted rows keep their coordinates, scored examples are placed with
            ``transform``. ``n_components`` is then the reducer's.

    Returns:
        ``(regions, stats)``: a Dataset (region, pool_count, n_scored, ``name``) of the scored regions, and a dict
        with pearson_r, pearson_p, spearman_rho, spearman_p, n_regions, excluded_regions, excluded_examples,
        outside_bounds, unscored, measure (``name``).

    Example:
        >>> regions, stats = density_vs_measure(pool, scored, model="smollm2-135m-instruct",
        ...                                     measure_column="answer_loss")  # doctest: +SKIP
    """
    from datasets import Dataset
    from scipy import stats as sps

    from ..space.embed import add_embeddings
    from ..space.reduce import add_coords, fit_reducer
    from ..space.regions import fit_grid

    require_rows(pool, what="pool", step="density_vs_measure")
    require_rows(scored, what="scored dataset", step="density_vs_measure")
    require_columns(scored, [measure_column], what="scored dataset")
    if min_examples < 1:
        raise ValueError(f"min_examples must be >= 1, got {min_examples}.")
    name = name or f"mean_{measure_column}"
    values = np.array([np.nan if v is None else float(v) for v in scored[measure_column]], dtype=np.float64)
    unscored = int(np.isnan(values).sum())
    if unscored == len(values):
        raise ValueError(f"Column {measure_column!r} of the scored dataset has no value (all None / NaN).")
    if unscored:
        scored = scored.select(np.flatnonzero(~np.isnan(values)))
        values = values[~np.isnan(values)]

    def embedded(ds, template):
        if "embedding" in ds.column_names:
            return ds
        return add_embeddings(ds, model=model, text_template=template, weights=weights, max_length=max_length)

    pool = embedded(pool, text_template)
    scored = embedded(scored, scored_template or text_template)
    if reducer is None:
        reducer = fit_reducer(pool, method="pca", n_components=n_components, seed=seed)
    n_components = reducer.n_components
    pool = add_coords(pool, reducer)
    grid = fit_grid(pool, bins=bins, threshold=2, min_populated_neighbors=0)
    pool_cells = grid.cell_index(vector_matrix(pool, "coords"))
    scored_cells = grid.cell_index(reducer.transform(vector_matrix(scored, "embedding")))

    size = int(np.prod(grid.shape))
    pool_count = np.bincount(pool_cells[pool_cells >= 0], minlength=size)
    inside = scored_cells >= 0
    n_scored = np.bincount(scored_cells[inside], minlength=size)
    total = np.bincount(scored_cells[inside], weights=values[inside], minlength=size)
    populated = (pool_count > 0) & (n_scored > 0)
    kept = populated & (n_scored >= min_examples)
    cells = np.flatnonzero(kept)
    measure = total[cells] / n_scored[cells]
    regions = Dataset.from_dict(
        {
            "region": cells.astype(np.int64),
            "pool_count": pool_count[cells].astype(np.int64),
            "n_scored": n_scored[cells].astype(np.int64),
            name: measure.astype(np.float64),
        }
    )
    result = {
        "n_regions": int(len(cells)),
        "excluded_regions": int((populated & ~kept).sum()),
        "excluded_examples": int(n_scored[populated & ~kept].sum()),
        "outside_bounds": int((~inside).sum()),
        "unscored": unscored,
        "measure": name,
        "min_examples": min_examples,
        "bins": bins,
        "n_components": n_components,
        "reducer": reducer.method,
    }
    if len(cells) >= 3 and np.ptp(measure) > 0 and np.ptp(pool_count[cells]) > 0:
        pearson = sps.pearsonr(pool_count[cells], measure)
        spearman = sps.spearmanr(pool_count[cells], measure)
        result.update(
            pearson_r=float(pearson.statistic),
            pearson_p=float(pearson.pvalue),
            spearman_rho=float(spearman.statistic),
            spearman_p=float(spearman.pvalue),
        )
    else:
        logger.warning(
            "Correlation undefined: %d scored regions (need >= 3 with varying density and %s).", len(cells), name
        )
        result.update(pearson_r=None, pearson_p=None, spearman_rho=None, spearman_p=None)
    return regions, result
