"""Coverage of the ``rarity`` selector's regions: did the kept rows land in the rare neighbourhoods they were made
for, and are those neighbourhoods still rare with them?

Measured in the space the selection used (:mod:`embedsdg_hf.space.rarity`): the *first view* of the selector's
fitted spec (``rarity.json``; by default the question's words, each once, numbers masked), cosine distance, never
refitted on the synthetic rows. A region is the ball around its centre whose radius is the centre's distance to its
``k``-th nearest row of the selector's reference sample (``knn_distance`` in the regions dataset; recomputed here and
checked against it). The rest is the k-NN selector's measure
(:func:`~embedsdg_hf.analysis.knn_coverage.measure_balls`): a point is in a region when within its radius; a region is
no longer sparse when its ``k``-th-neighbour distance, counting the synthetic rows among the reference rows, falls
below ``tau``, the smallest radius the selection took.

Example:
    >>> report = measure_rarity_coverage(spec, pool_texts, regions, {"embedsdg": texts},
    ...                                  synthetic_region_ids={"embedsdg": region_ids})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..space.rarity import reference_sample, scoring_settings, view_matrices
from .coverage import CoverageReport, choose_targets, resolve_aims
from .knn_coverage import KnnCoverage, _kth, _region_table, measure_balls

__all__ = ["RarityCoverage", "measure_rarity_coverage"]

_RADIUS_ATOL = 1e-3  # the selector's distances are float32 products; cosine distances lie in [0, 2]


class RarityCoverage(KnnCoverage):
    """The ``rarity`` selector's part of a :class:`~embedsdg_hf.analysis.coverage.CoverageReport`: balls in the
    selector's first view (cosine distance), radius = the centre's k-th-neighbour distance among the reference rows.

    Example:
        >>> RarityCoverage().name
        'rarity'
    """

    name: ClassVar[str] = "rarity"
    version: ClassVar[str] = "1"
    words: ClassVar[str] = "rarity"
    plot_title: ClassVar[str] = (
        "Coverage of the targeted rarity regions (balls in the selector's view; centres drawn on the map)"
    )

    def intro(self, report: CoverageReport) -> list[str]:
        before, k = report.before, report.before["k"]
        return [
            "## Coverage of the targeted rarity regions",
            "",
            f"{len(report.target_regions)} targeted regions (selector rarity, {before['view']} view of "
            f"`{before['text_column']}`, k = {k} of a {before['reference_rows']:,}-row reference sample); pool "
            f"{before['pool_points']:,} points. A region is the ball (cosine distance) around its centre whose radius "
            f"is the centre's distance to its {k}th reference neighbour (its rarity). tau = {report.threshold:.4f}: "
            f"{before['threshold_rule']}; a region is no longer sparse once its {k}th-neighbour distance, counting "
            "the synthetic points, falls below tau." + _drop_caveat(before),
        ]

    @staticmethod
    def card_text(k: int, tau: float) -> str:
        return (
            f"Seeds were chosen by the rarity selector (k = {k} of its reference sample). Each targeted region is the "
            f"ball around its centre (a pool row) whose radius is the centre's cosine distance to its {k}th "
            "reference neighbour, in the view the selector measured (by default the question's words, each once, "
            "numbers masked); the kept rows' questions are placed in the same view. A region is no longer sparse when "
            f"its {k}th-neighbour distance, counting the kept rows, falls below tau = {tau:.4f}, the smallest radius "
            "among the regions the selector took. `coverage.md` has the per-region numbers."
        )


def _drop_caveat(before: dict) -> str:
    """Under a small-group rule (``score="drop"``, or ``"groups"``, the default on a pool of mostly unique rows) the
    radius did not rank the regions, or not all of them."""
    if before.get("score") == "groups":
        return (
            " This pool's rows are mostly unique, so the selection took the rows sparsest at their best scale, or a "
            "small group's rows (near their neighbours at a small k and far at the next) where they ranked higher: "
            "the radius ranked only the first, and for a small group's regions 'no longer sparse' means as dense as "
            "the tightest region taken."
        )
    if before.get("score") != "drop":
        return ""
    return (
        " This pool's rows are mostly unique, so the selection scored small groups (rows near their neighbours at a "
        "small k and far at the next), not this radius: here the radius and tau are a common yardstick, and 'no "
        "longer sparse' means a region is now as dense as the tightest group the selector took."
    )


def _cosine_distances(x, centres: np.ndarray) -> np.ndarray:
    """(rows of ``x``, centres) cosine distances of unit rows (``x`` sparse or dense), float64."""
    return 1.0 - np.asarray(x @ centres.T, dtype=np.float64)


def measure_rarity_coverage(
    spec: dict,
    pool_texts: Sequence[str],
    regions,
    synthetic_texts: Mapping[str, Sequence[str]],
    *,
    synthetic_region_ids: Mapping[str, Sequence[int]] | None = None,
    target_regions: Sequence[int] | None = None,
    threshold: float | None = None,
    text_column: str = "question",
    pool_coords: np.ndarray | None = None,
    synthetic_coords: Mapping[str, np.ndarray] | None = None,
    settings: dict[str, Any] | None = None,
) -> CoverageReport:
    """Coverage of the rarity selector's regions by synthetic texts, in the selector's own first view.

    Args:
        spec: the selector's fitted spec (``fit_rarity``; a run's ``rarity.json``).
        pool_texts: the pool's selection text (row i = pool row i), e.g. its questions.
        regions: the regions dataset the selector returned (``centre``, ``knn_distance``, ``k``, ``seed``).
        synthetic_texts: per method name, its rows' texts (the same column).
        synthetic_region_ids / target_regions / threshold / pool_coords / synthetic_coords / settings: as for
            :func:`~embedsdg_hf.analysis.knn_coverage.measure_knn_coverage`.
    """
    pool_texts = [str(t) for t in pool_texts]
    table = _region_table(regions, len(pool_texts))
    k, seed = int(table["k"]), int(table["seed"])
    s = spec["settings"]
    reference, ks = reference_sample(len(pool_texts), s, seed=seed)
    if k not in ks:
        raise ValueError(
            f"The regions were found with k={k}, but this rarity spec on a {len(pool_texts)}-row pool gives k in "
            f"{ks}: the regions come from another pool or spec."
        )
    view = s["views"][0]
    pool_x = view_matrices(spec, pool_texts, views=[view])[view]
    centre_x = pool_x[table["centre"]]
    centre_x = centre_x.toarray() if hasattr(centre_x, "toarray") else np.asarray(centre_x)
    pool_dist = _cosine_distances(pool_x, centre_x)  # (pool rows, regions)
    others = pool_dist[reference].copy()
    self_rows = np.searchsorted(reference, table["centre"])
    is_ref = (self_rows < len(reference)) & (reference[np.minimum(self_rows, len(reference) - 1)] == table["centre"])
    others[self_rows[is_ref], np.flatnonzero(is_ref)] = np.inf  # a centre is not its own neighbour
    radius = _kth(others, k)
    off = np.flatnonzero(np.abs(radius - table["knn_distance"]) > _RADIUS_ATOL)
    if len(off):
        first = off[:5]
        raise ValueError(
            f"Region(s) {table['region_id'][first].tolist()}: the {k}th-neighbour distance of the centre is "
            f"{np.round(radius[first], 4).tolist()} in the rarity view built here, but the regions dataset says "
            f"{np.round(table['knn_distance'][first], 4).tolist()}: the pool texts or the spec are not those the "
            "selector used."
        )
    point_x = {
        name: view_matrices(spec, [str(t) for t in texts], views=[view])[view] if len(texts) else None
        for name, texts in synthetic_texts.items()
    }
    point_dist = {
        name: np.zeros((0, len(table["centre"]))) if x is None else _cosine_distances(x, centre_x)
        for name, x in point_x.items()
    }
    aims = resolve_aims({name: len(d) for name, d in point_dist.items()}, synthetic_region_ids, table["region_id"])
    chosen = choose_targets(table["region_id"], aims, target_regions)
    before = {
        "view": view,
        "text_column": text_column,
        "reference_rows": len(reference),
        "score": scoring_settings(spec)["score"],
    }
    return measure_balls(
        RarityCoverage(), table, k=k, pool_dist=pool_dist, others=others, radius=radius, point_dist=point_dist,
        aims=aims, chosen=chosen, threshold=threshold, before=before, pool_coords=pool_coords,
        synthetic_coords=synthetic_coords, settings=settings,
    )  # fmt: skip
