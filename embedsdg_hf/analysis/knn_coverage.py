"""Coverage of k-NN regions (``selector: knn``): did the synthetic rows land in the sparse neighbourhoods they were
made for, and are those neighbourhoods still sparse with them?

The k-NN selector (:mod:`embedsdg_hf.space.knn_regions`) measures a pool point's sparsity as its distance to its
``k``-th nearest neighbour in the *density space* (the pooled embedding of the question alone with ``knn_text:
input``, centred on the pool mean and scaled to unit length, or PCA to ``density_dims``). Coverage works in that same
space, through the selector's own :func:`~embedsdg_hf.space.knn_regions.fit_density_space`:

- a region is the ball around its centre (a pool row) whose *radius* is the centre's distance to its ``k``-th pool
  neighbour, the very distance that made it sparse (``knn_distance`` in the regions dataset; recomputed here and
  checked against it, so a pool embedded another way is an error, not a silent wrong answer);
- a point is *in* a region when its distance to the centre is at most the radius;
- the synthetic rows are embedded like the pool's selection text (same student, weights, template: the question only
  for ``knn_text: input``) and placed with the pool's centring / PCA, never refitted on them.

Per synthetic set (EmbedSDG, and e.g. RandomSDG with the same budget, side by side), per targeted region: pool
points within the radius *before* (the centre and its ``k`` nearest: ``k + 1`` unless distances tie), synthetic
points within it, rows aimed at it and how many of those landed in it; per set, how many points landed in *any*
targeted region (comparable with RandomSDG, whose rows aim nowhere) and how many targeted regions are *no longer
sparse*.

The threshold: the selector has no count threshold; it walks the pool from the largest ``k``-th-neighbour distance
down and stops where the budget is met. So ``tau`` = the smallest radius among the regions it took (the regions
dataset: for a run, the regions that got seed pairs) is the cut-off it actually used: every region it took had a
``k``-th-neighbour distance >= ``tau``. A region is *no longer sparse* when its centre's ``k``-th-neighbour distance,
counting the synthetic points as neighbours, falls below ``tau``: it would then rank after every region the budget
reached. Adding points never raises a distance; other points' distances shrink too, which ``tau`` (fixed by the
selection) does not follow.

Public API: :func:`knn_coverage_report` (datasets + the run's student) and :func:`measure_knn_coverage` (vectors
alone, no model), both returning a :class:`~embedsdg_hf.analysis.coverage.CoverageReport` whose part is a
:class:`KnnCoverage`; run dirs are read by :func:`~embedsdg_hf.run.coverage.coverage_from_run`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..common.mapping import column_array, vector_matrix
from ..common.validation import as_float_matrix, require_columns, require_rows, require_template_columns
from ..space.knn_regions import fit_density_space
from .coverage import (
    CoverageReport,
    aimed_regions,
    choose_targets,
    embed_sets,
    landing_cells,
    resolve_aims,
    share_of,
    synthetic_sets,
)

logger = logging.getLogger(__name__)

__all__ = ["KnnCoverage", "KnnCoverageReport", "knn_coverage_report", "measure_balls", "measure_knn_coverage"]

KNN_COVERAGE_VERSION = "1"
_REGION_COLUMNS = ("region_id", "centre", "knn_distance", "k", "density_dims", "seed")
# The recomputed k-th-neighbour distance must match the selector's (FAISS, float32) to this relative tolerance.
_RADIUS_RTOL = 1e-3


# ----------------------------------------------------------------------------------------------------------------
# The report


@dataclass
class KnnCoverage:
    """The k-NN selector's part of a :class:`~embedsdg_hf.analysis.coverage.CoverageReport`: a region is the ball
    around its centre whose radius is the centre's ``k``-th-neighbour distance; it stops being sparse when that
    distance, counting the synthetic points, falls below ``tau`` (``report.before["threshold"]``).

    Example:
        >>> KnnCoverage().name
        'knn'
    """

    name: ClassVar[str] = "knn"
    version: ClassVar[str] = KNN_COVERAGE_VERSION

    def threshold(self, report: CoverageReport) -> float:
        return report.before["threshold"]

    def summary(self, report: CoverageReport, numbers: dict[str, Any]) -> dict[str, Any]:
        return {
            "regions_gaining": numbers["regions_gaining"],
            "regions_no_longer_sparse": numbers["regions_no_longer_sparse"],
            "k": report.before["k"],
            "threshold": report.before["threshold"],
        }

    def to_dict(self) -> dict[str, Any]:
        return {}

    def intro(self, report: CoverageReport) -> list[str]:
        before, k = report.before, report.before["k"]
        space = (
            f"{before['dims']}-D centred unit vectors"
            if before["density_dims"] is None
            else f"{before['dims']}-D PCA (density_dims={before['density_dims']})"
        )
        embedded = (
            f"`{report.settings['density_template']}` embedded with {report.settings.get('model')}, "
            if "density_template" in report.settings
            else "the vectors given, "
        )
        return [
            "## Coverage of the targeted k-NN regions",
            "",
            f"{len(report.target_regions)} targeted regions (selector knn, k = {k}); pool {before['pool_points']:,} "
            f"points. Density space: {embedded}{space}. A region is the ball around its centre whose radius is "
            f"the centre's distance to its {k}th pool neighbour (its sparsity). tau = {report.threshold:.4f}: "
            f"{before['threshold_rule']}; a region is no longer sparse once its {k}th-neighbour distance, counting "
            "the synthetic points, falls below tau.",
        ]

    def method_rows(self, report: CoverageReport) -> list[tuple[str, Any]]:
        k, n_targets = report.before["k"], len(report.target_regions)
        return [
            ("targeted regions gaining points", lambda m: f"{m['regions_gaining']}/{n_targets}"),
            (
                f"targeted regions no longer sparse ({k}th-NN < tau)",
                lambda m: f"{m['regions_no_longer_sparse']}/{n_targets}",
            ),
        ]

    def notes(self, report: CoverageReport) -> list[str]:
        return []

    def region_columns(self, report: CoverageReport, names: list[str]) -> list[tuple[str, Any]]:
        k = report.before["k"]
        columns = [
            ("centre row", lambda r: str(r["centre"])),
            ("radius", lambda r: f"{r['radius']:.4f}"),
            ("pool within radius", lambda r: str(r["before"])),
        ]
        columns += [
            (f"{n}: within after (+added)", lambda r, n=n: f"{r['after'][n]} (+{r['added'][n]})") for n in names
        ]
        columns += [
            (
                f"{n}: {k}th-NN after",
                lambda r, n=n: (
                    f"{r['knn_distance_after'][n]:.4f}" + (" (no longer sparse)" if r["no_longer_sparse"][n] else "")
                ),
            )
            for n in names
        ]
        return columns

    def plot(self, report: CoverageReport, path: Path, *, title: str | None = None) -> Path:
        """The map before / after, each targeted centre marked (:func:`~embedsdg_hf.plots.plot_knn_coverage`)."""
        from ..plots import plot_knn_coverage

        coords = report.pool_coords
        centres = coords[[r["centre"] for r in report.regions]] if report.regions else coords[:0]
        return plot_knn_coverage(
            coords,
            report.synthetic_coords,
            path,
            centres=centres,
            before=[r["before"] for r in report.regions],
            after={n: [r["after"][n] for r in report.regions] for n in report.methods},
            no_longer_sparse={n: [r["no_longer_sparse"][n] for r in report.regions] for n in report.methods},
            landed=report.in_targeted,
            k=report.before["k"],
            axis_labels=report.settings.get("axis_labels"),
            title=title or self.plot_title,
        )

    words: ClassVar[str] = "k-NN"  # what the run summary calls the regions
    plot_title: ClassVar[str | None] = None  # the figure's (None: plot_knn_coverage's own)

    def after(self, numbers: dict[str, Any]) -> str:
        targeted, k = numbers["targeted_regions"], numbers["k"]
        return (
            f"{numbers['regions_gaining']}/{targeted} targeted {self.words} regions gained rows, "
            f"{numbers['regions_no_longer_sparse']}/{targeted} are no longer sparse ({k}th-neighbour distance "
            f"now below tau = {numbers['threshold']:.4f}, the selection's cut-off)."
        )

    def card(self, summary: dict[str, dict[str, Any]]) -> list[str]:
        first = next(iter(summary.values()))
        lines = ["## Coverage of the sparse regions", "", self.card_text(first["k"], first["threshold"]), ""]
        lines += [
            "| method | kept rows | in their target region | in a targeted region | regions gaining rows | "
            "regions no longer sparse |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for method, n in summary.items():
            lines.append(
                f"{landing_cells(method, n)}{n['regions_gaining']}/{n['targeted_regions']} | "
                f"{n['regions_no_longer_sparse']}/{n['targeted_regions']} |"
            )
        return [*lines, ""]

    @staticmethod
    def card_text(k: int, tau: float) -> str:
        """The dataset card's paragraph: how the regions were found and when one stops being sparse."""
        return (
            f"Seeds were chosen by k-NN density (k = {k}). Each targeted region is the ball around its centre (a pool "
            f"row) whose radius is the centre's distance to its {k}th pool neighbour, in the space the selector "
            "measured (the student's embedding of the text it read, centred on the pool mean); the kept rows are "
            f"embedded the same way. A region is no longer sparse when its {k}th-neighbour distance, counting the "
            f"kept rows, falls below tau = {tau:.4f}, the smallest radius among the regions the selector took. "
            "`coverage.md` has the per-region numbers."
        )


#: The k-NN coverage report is the one :class:`~embedsdg_hf.analysis.coverage.CoverageReport` type (its ``part`` a
#: :class:`KnnCoverage`); the name stays for code written before the two were one.
KnnCoverageReport = CoverageReport


# ----------------------------------------------------------------------------------------------------------------
# Numbers from vectors


def _distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(m, r) Euclidean distances, summed in float64, one centre at a time: the same point and centre always give
    the same distance, whichever matrix they sit in (membership at the radius is then exact)."""
    out = np.empty((len(points), len(centres)), dtype=np.float64)
    for j, centre in enumerate(centres):
        out[:, j] = np.sqrt(np.square(points - centre).sum(axis=1, dtype=np.float64))
    return out


def _kth(distances: np.ndarray, k: int) -> np.ndarray:
    """Per column, the ``k``-th smallest distance (1-based)."""
    return np.partition(distances, k - 1, axis=0)[k - 1]


def _region_table(regions, n_pool: int) -> dict[str, Any]:
    """The regions dataset's ids, centres and k-th-neighbour distances, and the one density space they share."""
    missing = [c for c in _REGION_COLUMNS if c not in regions.column_names]
    if missing:
        raise ValueError(
            f"The regions dataset has no column(s) {missing} (columns: {regions.column_names}). k-NN coverage needs "
            "the regions of the knn selector (space/knn_regions.py) with the density space they were measured in "
            "(k, density_dims, seed); regions saved by an older version lack these: delete the run dir's regions/ "
            "and pairs/ and rerun the same command to find them again."
        )
    if len(regions) == 0:
        raise ValueError("The regions dataset is empty: no k-NN region to measure coverage of.")
    table = {
        "region_id": column_array(regions, "region_id").astype(np.int64),
        "centre": column_array(regions, "centre").astype(np.int64),
        "knn_distance": column_array(regions, "knn_distance").astype(np.float64),
    }
    space = {}
    for name in ("k", "density_dims", "seed"):
        values = set(regions[name])
        if len(values) != 1:
            raise ValueError(f"The regions dataset mixes {name} values {sorted(values, key=str)}: one selection only.")
        space[name] = values.pop()
    ids, counts = np.unique(table["region_id"], return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"The regions dataset repeats region_id(s) {ids[counts > 1][:5].tolist()}.")
    bad = np.flatnonzero((table["centre"] < 0) | (table["centre"] >= n_pool))
    if len(bad):
        raise ValueError(
            f"Region(s) {table['region_id'][bad][:5].tolist()} have centre rows {table['centre'][bad][:5].tolist()} "
            f"outside the pool's {n_pool} rows: the regions were found on another pool."
        )
    if space["k"] >= n_pool:
        raise ValueError(f"The regions were found with k={space['k']} but the pool has {n_pool} rows: another pool.")
    return {**table, **space}


def measure_knn_coverage(
    pool_vectors: np.ndarray,
    regions,
    synthetic_vectors: Mapping[str, np.ndarray],
    *,
    synthetic_region_ids: Mapping[str, Sequence[int]] | None = None,
    target_regions: Sequence[int] | None = None,
    threshold: float | None = None,
    pool_coords: np.ndarray | None = None,
    synthetic_coords: Mapping[str, np.ndarray] | None = None,
    settings: dict[str, Any] | None = None,
) -> CoverageReport:
    """The k-NN coverage numbers from embedding vectors alone (no model): the core of :func:`knn_coverage_report`.

    Args:
        pool_vectors: (n, D) the pool's vectors the selector read (e.g. its ``selection_embedding``), row i = pool
            row i of ``regions``' ``centre``.
        regions: the :func:`~embedsdg_hf.space.knn_regions.knn_seed_pairs` / ``find_knn_regions`` dataset; its
            ``k``, ``density_dims`` and ``seed`` fix the density space (fitted here on ``pool_vectors`` with the
            selector's own :func:`~embedsdg_hf.space.knn_regions.fit_density_space`).
        synthetic_vectors: per method name, the (m, D) vectors of its synthetic rows, embedded like the pool's.
        synthetic_region_ids: per method name, the region each row was made for (-1: none, e.g. RandomSDG).
        target_regions: region ids to report on. Default: every region some row aims at, or all regions.
        threshold: ``tau``. Default: the smallest radius in ``regions`` (module doc).
        pool_coords / synthetic_coords: the map (2-D / 3-D) positions, for the figure only.
        settings: recorded as is in the report.

    Example:
        >>> report = measure_knn_coverage(pool_vectors, regions, {"embedsdg": vectors},
        ...                               synthetic_region_ids={"embedsdg": region_ids})  # doctest: +SKIP
    """
    pool_vectors = as_float_matrix(pool_vectors, column="pool vectors")
    table = _region_table(regions, len(pool_vectors))
    k = int(table["k"])
    space = fit_density_space(pool_vectors, table["density_dims"], seed=int(table["seed"]))
    pool_x = space.transform(pool_vectors)
    points = {
        name: space.transform(as_float_matrix(v, column=f"vectors of {name!r}"))
        if len(v)
        else np.zeros((0, space.dims), np.float32)
        for name, v in synthetic_vectors.items()
    }
    aims = resolve_aims({name: len(p) for name, p in points.items()}, synthetic_region_ids, table["region_id"])
    chosen = choose_targets(table["region_id"], aims, target_regions)

    # Every region's radius, recomputed in this space and checked against the selector's (FAISS) value.
    pool_dist = _distances(pool_x, pool_x[table["centre"]])  # (n, all regions)
    own = np.zeros_like(pool_dist, dtype=bool)
    own[table["centre"], np.arange(len(table["centre"]))] = True
    others = np.where(own, np.inf, pool_dist)  # the centre is not its own neighbour
    radius = _kth(others, k)
    scale = float(np.median(np.linalg.norm(pool_x, axis=1))) or 1.0
    off = np.flatnonzero(~np.isclose(radius, table["knn_distance"], rtol=_RADIUS_RTOL, atol=1e-4 * scale))
    if len(off):
        first = off[:5]
        raise ValueError(
            f"Region(s) {table['region_id'][first].tolist()}: the {k}th-neighbour distance of the centre is "
            f"{np.round(radius[first], 5).tolist()} in the space built here from the pool vectors given, but the "
            f"regions dataset says {np.round(table['knn_distance'][first], 5).tolist()}. The pool vectors are not "
            "those the selector read (same student, weights, max_length and selection text: knn_text), or the pool "
            "changed since."
        )
    before = {"density_dims": table["density_dims"], "dims": space.dims}
    return measure_balls(
        KnnCoverage(), table, k=k, pool_dist=pool_dist, others=others, radius=radius,
        point_dist={name: _distances(x, pool_x[table["centre"]]) for name, x in points.items()}, aims=aims,
        chosen=chosen, threshold=threshold, before=before, pool_coords=pool_coords,
        synthetic_coords=synthetic_coords, settings=settings,
    )  # fmt: skip


def measure_balls(
    part,
    table: dict[str, Any],
    *,
    k: int,
    pool_dist: np.ndarray,
    others: np.ndarray,
    radius: np.ndarray,
    point_dist: Mapping[str, np.ndarray],
    aims: Mapping[str, np.ndarray],
    chosen: Sequence[int],
    threshold: float | None,
    before: dict[str, Any],
    pool_coords: np.ndarray | None,
    synthetic_coords: Mapping[str, np.ndarray] | None,
    settings: dict[str, Any] | None,
) -> CoverageReport:
    """The coverage of regions that are balls (a centre and the radius that made it sparse), whatever the space.

    ``pool_dist``: (pool rows, regions) distances to every region's centre; ``others``: (neighbour candidates,
    regions) the distances the selector's k-th neighbour was taken over (the centre itself at inf); ``radius``: each
    region's k-th-neighbour distance; ``point_dist``: per method, (its rows, regions) distances. A point is in a
    region when within the radius; a region is no longer sparse when its k-th-neighbour distance, the method's rows
    counted as neighbours, falls below ``threshold`` (default: the smallest radius, the cut-off the budget reached).
    """
    position = {int(r): i for i, r in enumerate(table["region_id"])}
    tau = float(radius.min()) if threshold is None else float(threshold)
    rule = (
        "the smallest radius among the regions the selector took (the cut-off its budget reached)"
        if threshold is None
        else "given"
    )
    rows = np.asarray([position[r] for r in chosen], dtype=np.int64)
    target_radius = radius[rows]
    counts = (pool_dist[:, rows] <= target_radius).sum(axis=0)
    before_summary = {
        "pool_points": len(pool_dist),
        "k": k,
        **before,
        "seed": int(table["seed"]),
        "threshold": tau,
        "threshold_rule": rule,
        "regions_not_sparse": int((target_radius < tau).sum()),
    }
    per_region = [
        {
            "region_id": r,
            "centre": int(table["centre"][i]),
            "radius": float(radius[i]),
            "before": int(b),
            **{key: {} for key in ("after", "added", "knn_distance_after", "no_longer_sparse", "aimed", "landed")},
        }
        for r, i, b in zip(chosen, rows, counts)
    ]
    methods: dict[str, dict[str, Any]] = {}
    in_targeted: dict[str, np.ndarray] = {}
    for name, dist in point_dist.items():
        within = dist <= radius
        ids = aims[name]
        aimed_rows = np.flatnonzero(ids >= 0)
        landed_own = within[aimed_rows, [position[int(r)] for r in ids[aimed_rows]]]
        in_any = within[:, rows].any(axis=1)
        added = within[:, rows].sum(axis=0)
        knn_after = _kth(np.concatenate([others[:, rows], dist[:, rows]]), k)
        cleared = knn_after < tau
        methods[name] = {
            "synthetic_points": len(dist),
            "aimed_rows": len(aimed_rows),
            "landed_in_target": int(landed_own.sum()),
            "landed_in_target_share": share_of(int(landed_own.sum()), len(aimed_rows)),
            "landed_in_targeted_regions": int(in_any.sum()),
            "landed_in_targeted_regions_share": share_of(int(in_any.sum()), len(dist)),
            "regions_gaining": int((added > 0).sum()),
            "regions_no_longer_sparse": int(cleared.sum()),
        }
        in_targeted[name] = in_any
        aimed_ids = ids[aimed_rows]
        for entry, n_added, after_k, done in zip(per_region, added, knn_after, cleared):
            mine = aimed_ids == entry["region_id"]
            entry["after"][name] = entry["before"] + int(n_added)
            entry["added"][name] = int(n_added)
            entry["knn_distance_after"][name] = float(after_k)
            entry["no_longer_sparse"][name] = bool(done)
            entry["aimed"][name] = int(mine.sum())
            entry["landed"][name] = int(landed_own[mine].sum())
    coords = None if pool_coords is None else as_float_matrix(pool_coords, column="pool coords")
    if coords is not None and len(coords) != len(pool_dist):
        raise ValueError(
            f"pool_coords has {len(coords)} rows but the pool vectors {len(pool_dist)}: give one per row."
        )
    return CoverageReport(
        part=part,
        target_regions=list(chosen),
        before=before_summary,
        methods=methods,
        regions=per_region,
        settings=dict(settings or {}),
        pool_coords=coords,
        synthetic_coords=dict(synthetic_coords or {}),
        in_targeted=in_targeted,
    )


# ----------------------------------------------------------------------------------------------------------------
# From datasets: embed like the selector, measure


def knn_coverage_report(
    pool,
    regions,
    reducer,
    synthetic,
    *,
    model: str,
    text_template: str,
    density_template: str | None = None,
    weights: str = "mean",
    max_length: int | None = None,
    target_regions: Sequence[int] | None = None,
    threshold: float | None = None,
    region_column: str = "region_id",
) -> CoverageReport:
    """Embed the synthetic rows as the k-NN selector embedded the pool, and measure how they fill its regions.

    Args:
        pool: the run's pool (``pool/``: ``embedding`` of ``text_template`` and ``coords``). Its density vectors are
            its ``embedding`` when ``density_template`` is ``text_template`` (``knn_text: full``), else its
            ``selection_embedding``, which the pool is given here with ``density_template`` when it lacks it (what
            the selector did; about a second per thousand rows).
        regions / reducer: the run's k-NN regions dataset and fitted :class:`~embedsdg_hf.Reducer` (for the map).
        synthetic: a ``Dataset`` of synthetic rows, or ``{method name: Dataset}`` (e.g. ``{"embedsdg": ...,
            "random": ...}``).
        model / weights / max_length: the run's student and embedding settings.
        text_template: the pool's training text (the map); density_template: the text the selector embedded
            (:func:`~embedsdg_hf.space.knn_regions.selection_template`; default ``text_template``).
        target_regions / threshold: see :func:`measure_knn_coverage`.
        region_column: the column holding the region a row was made for (-1: none).

    Example:
        >>> report = knn_coverage_report(pool, regions, reducer, {"embedsdg": ours, "random": baseline},
        ...                              model="smollm2-135m-instruct", text_template="{question}\\n{answer}",
        ...                              density_template="{question}")  # doctest: +SKIP
        >>> print(report.to_markdown())  # doctest: +SKIP
    """
    from ..space.embed import add_embeddings

    require_rows(pool, what="pool", step="knn_coverage_report")
    require_columns(pool, ["coords"], what="pool")
    density_template = text_template if density_template is None else density_template
    embed = {"model": model, "weights": weights, "max_length": max_length}
    # the column the pipeline's selector read (pipeline._knn_selection); embedded here when the pool lacks it
    column = "embedding" if density_template == text_template else "selection_embedding"
    if column not in pool.column_names:
        fields = require_template_columns(pool, density_template)
        pool = pool.select_columns([*fields, "coords"])
        pool = add_embeddings(pool, text_template=density_template, column=column, **embed)
    pool_vectors = vector_matrix(pool, column)
    sets = synthetic_sets(synthetic)
    density = embed_sets(sets, text_template=density_template, **embed)
    mapped = density if density_template == text_template else embed_sets(sets, text_template=text_template, **embed)
    dims = reducer.n_components
    return measure_knn_coverage(
        pool_vectors,
        regions,
        {name: np.zeros((0, pool_vectors.shape[1])) if v is None else v for name, v in density.items()},
        synthetic_region_ids=aimed_regions(sets, region_column),
        target_regions=target_regions,
        threshold=threshold,
        pool_coords=vector_matrix(pool, "coords", expected_dim=dims),
        synthetic_coords={n: np.zeros((0, dims)) if v is None else reducer.transform(v) for n, v in mapped.items()},
        settings={
            "model": model,
            "text_template": text_template,
            "density_template": density_template,
            "weights": weights,
            "max_length": max_length,
            "reducer": f"{reducer.method} ({dims}-D), for the map only",
            "axis_labels": reducer.axis_labels(),
        },
    )
