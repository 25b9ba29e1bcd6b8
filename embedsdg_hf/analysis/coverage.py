"""Coverage: did the synthetic rows fill the sparse regions they were made for?

The accepted synthetic rows are embedded with the same student and embedding settings as the pool
(:func:`~embedsdg_hf.space.embed.add_embeddings`), projected with the run's fitted reducer and placed on the run's
grid. Then, per synthetic set (EmbedSDG, and e.g. RandomSDG with the same budget, side by side):

- per targeted region: its pool count *before* and its count *after* adding the synthetic points;
- how many rows aimed at a region (``region_id >= 0``) landed inside *their own* region, and how many synthetic
  points landed inside *any* targeted region (the number that is comparable with RandomSDG, whose rows aim nowhere);
- how many points fall inside the grid's bounds (points outside are counted, never an error);
- how many targeted regions reach the sparse threshold ``T`` after;
- the grid's occupancy entropy before and after: the Shannon entropy (bits) of the distribution of points over the
  grid's elementary cells, also divided by ``log2(number of cells)`` (1.0: perfectly even).

Membership uses the grid's own cells (:meth:`GridSpec.cell_index`), so a region's *before* count is exactly the
``count`` that :func:`~embedsdg_hf.space.regions.find_sparse_regions` found (checked).

Public API:

- :func:`coverage_report`: pool + grid + regions + reducer + synthetic dataset(s) -> :class:`CoverageReport`;
- :func:`~embedsdg_hf.run.coverage.coverage_from_run` (its own module): the same from an ``embedsdg run``
  output dir (and other runs to compare), writing ``coverage.json``, ``coverage.md`` and ``coverage.png``;
- :func:`measure_coverage`: the numbers from coordinates alone (no model);
- :func:`occupancy_entropy`: entropy of points over a grid's cells.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..common.mapping import column_array, list_matrix, vector_matrix
from ..common.validation import as_float_matrix, require_columns, require_rows, require_template_columns
from ..space.regions import GridSpec, count_windows

logger = logging.getLogger(__name__)

__all__ = ["CoverageReport", "GridCoverage", "coverage_report", "measure_coverage", "occupancy_entropy"]

COVERAGE_VERSION = "1"
# Settings of a run that define its embedding space: a compared run must share them.
EMBEDDING_KEYS = ("student", "text_template", "weights", "max_length")
_MAX_MARKDOWN_REGIONS = 40


# ----------------------------------------------------------------------------------------------------------------
# The report


#: The numbers of every coverage report's summary, whatever the selector (then the selector part's own).
LANDING_KEYS = (
    "synthetic_points",
    "aimed_rows",
    "landed_in_target",
    "landed_in_target_share",
    "landed_in_targeted_regions",
    "landed_in_targeted_regions_share",
)


@dataclass
class CoverageReport:
    """What a selector's coverage measured (:func:`coverage_report` for the grid,
    :func:`~embedsdg_hf.analysis.knn_coverage.knn_coverage_report` for k-NN); ``to_dict()`` is plain JSON,
    ``to_markdown()`` a compact table. What is the same for every selector (where the rows landed, the tables, the
    run summary's lines) is here; what a region is and when it stops being sparse is the selector's ``part``
    (:class:`GridCoverage`, :class:`~embedsdg_hf.analysis.knn_coverage.KnnCoverage`).

    Attributes:
        part: the selector's part (its name, threshold, own numbers, markdown rows, figure).
        target_regions: ids of the targeted regions, in the regions dataset's order (sparsest first).
        before: the pool's numbers before the synthetic rows (pool points, the part's own: grid entropy, the k-NN
            density space and threshold).
        methods: per synthetic set (e.g. ``"embedsdg"``, ``"random"``): every measured number (see :meth:`summary`).
        regions: one dict per targeted region: ``region_id``, ``before`` (pool points in it), and per method
            ``after``, ``added``, ``aimed`` (rows with this ``region_id``) and ``landed`` (of those, inside it),
            plus the part's own (``lower`` / ``upper``; ``centre``, ``radius``, ``no_longer_sparse``).
        settings: how the synthetic rows were embedded and projected (model, template, weights, reducer and its
            ``axis_labels`` ...).
        pool_coords, synthetic_coords, in_targeted: the points behind the numbers (for :meth:`plot`; not in
            ``to_dict``).

    Example:
        >>> report = coverage_report(pool, grid, regions, reducer, {"embedsdg": rows}, model=student,
        ...                          text_template="{question}\\n{answer}")  # doctest: +SKIP
        >>> report.summary["embedsdg"]["landed_in_target_share"]  # doctest: +SKIP
        0.75
    """

    part: Any
    target_regions: list[int]
    before: dict[str, Any]
    methods: dict[str, dict[str, Any]]
    regions: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    pool_coords: np.ndarray | None = field(default=None, repr=False, compare=False)
    synthetic_coords: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    in_targeted: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def threshold(self):
        """When a region stops being sparse: ``T`` (grid counts) or ``tau`` (a k-th-neighbour distance)."""
        return self.part.threshold(self)

    @property
    def grid(self) -> GridSpec | None:
        """The grid (grid selector), else None."""
        return getattr(self.part, "grid", None)

    @property
    def summary(self) -> dict[str, dict[str, Any]]:
        """Per method, the few numbers a run summary or dataset card needs.

        Keys: ``targeted_regions``, ``synthetic_points``, ``aimed_rows``, ``landed_in_target`` (and ``_share`` of the
        aimed rows; None when no row aims at a region), ``landed_in_targeted_regions`` (and ``_share`` of all
        synthetic points), then the part's: ``regions_reaching_threshold`` and the occupancy entropies (grid);
        ``regions_gaining``, ``regions_no_longer_sparse``, ``k``, ``threshold`` (k-NN).
        """
        return {
            name: {
                "targeted_regions": len(self.target_regions),
                **{key: numbers[key] for key in LANDING_KEYS},
                **self.part.summary(self, numbers),
            }
            for name, numbers in self.methods.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: version, selector, settings, the part's own (``grid``), target_regions, before, methods,
        summary, regions."""
        return {
            "version": self.part.version,
            "selector": self.part.name,
            "settings": self.settings,
            **self.part.to_dict(),
            "target_regions": list(self.target_regions),
            "before": self.before,
            "methods": self.methods,
            "summary": self.summary,
            "regions": self.regions,
        }

    def to_markdown(self, *, max_regions: int = _MAX_MARKDOWN_REGIONS) -> str:
        """The methods side by side (one column each), then the per-region numbers before / after.

        Example:
            >>> print(report.to_markdown())  # doctest: +SKIP
        """
        names = list(self.methods)
        lines = [*self.part.intro(self), ""]
        if not names:
            return "\n".join([*lines, "No synthetic set given."])
        lines += method_table(self.methods, [*landing_rows(), *self.part.method_rows(self)])
        lines += self.part.notes(self)
        if not self.regions:
            return "\n".join(lines)
        lines += ["", "### Per targeted region (sparsest first)", ""]
        aimed_at = [n for n in names if self.methods[n]["aimed_rows"]]
        columns = [*self.part.region_columns(self, names)]
        columns += [(f"{n}: landed / aimed", lambda r, n=n: f"{r['landed'][n]} / {r['aimed'][n]}") for n in aimed_at]
        header = ["region"] + [label for label, _ in columns]
        lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        for region in self.regions[:max_regions]:
            lines.append("| " + " | ".join([str(region["region_id"])] + [cell(region) for _, cell in columns]) + " |")
        if len(self.regions) > max_regions:
            lines.append(f"\n{len(self.regions) - max_regions} more targeted regions in coverage.json.")
        return "\n".join(lines)

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """The map before / after, the targeted regions marked as the selector's part draws them."""
        if self.pool_coords is None:
            raise ValueError(f"This {type(self).__name__} has no map coordinates: no plot.")
        return self.part.plot(self, Path(path), title=title)

    def text(self) -> dict[str, list[str]]:
        """``{"summary": one line per method (the run summary), "card": the dataset card's section}``: plain text,
        so the run summary and the card need not know the selector (pipeline.py keeps it in the manifest)."""
        lines = []
        for method, numbers in self.summary.items():
            landed = (
                ""
                if numbers["landed_in_target_share"] is None
                else f"{numbers['landed_in_target']}/{numbers['aimed_rows']} in their target region, "
            )
            lines.append(
                f"coverage ({method}): {numbers['synthetic_points']} kept rows re-embedded; {landed}"
                f"{numbers['landed_in_targeted_regions']} in a targeted region; {self.part.after(numbers)}"
            )
        return {"summary": lines, "card": self.part.card(self.summary)}


@dataclass
class GridCoverage:
    """The grid's part of a :class:`CoverageReport`: regions are the grid's windows; a region stops being sparse
    when its count reaches ``T``; the grid's occupancy entropy before / after."""

    grid: GridSpec
    name: ClassVar[str] = "grid"
    version: ClassVar[str] = COVERAGE_VERSION

    @property
    def n_cells(self) -> int:
        return math.prod(self.grid.shape)

    def threshold(self, report: CoverageReport) -> int:
        return self.grid.threshold

    def summary(self, report: CoverageReport, numbers: dict[str, Any]) -> dict[str, Any]:
        return {
            "regions_reaching_threshold": numbers["regions_reaching_threshold"],
            "entropy_before_bits": report.before["entropy_bits"],
            "entropy_after_bits": numbers["entropy_after_bits"],
            "entropy_before_normalised": report.before["entropy_normalised"],
            "entropy_after_normalised": numbers["entropy_after_normalised"],
        }

    def to_dict(self) -> dict[str, Any]:
        return {"grid": {**self.grid.to_dict(), "n_cells": self.n_cells}}

    def intro(self, report: CoverageReport) -> list[str]:
        before, shape = report.before, "x".join(map(str, self.grid.shape))
        return [
            "## Coverage of the targeted sparse regions",
            "",
            f"{len(report.target_regions)} targeted regions, threshold T = {self.grid.threshold}; grid {shape} = "
            f"{self.n_cells:,} cells; pool {before['pool_points']:,} points ({before['pool_outside_grid']} outside "
            f"the grid). Synthetic rows embedded with {report.settings.get('model', '?')!s} and projected with the "
            f"run's {report.settings.get('reducer', '?')}.",
        ]

    def method_rows(self, report: CoverageReport) -> list[tuple[str, Callable]]:
        before, n_targets = report.before, len(report.target_regions)
        entropy = f"{before['entropy_bits']:.3f} bits ({_fmt(before['entropy_normalised'])})"
        return [
            ("inside the grid's bounds", lambda m: _ratio(m["inside_grid"], m["synthetic_points"])),
            ("targeted regions gaining points", lambda m: f"{m['regions_gaining']}/{n_targets}"),
            (
                f"targeted regions at >= T after (before: {before['regions_at_threshold']})",
                lambda m: f"{m['regions_reaching_threshold']}/{n_targets}",
            ),
            ("occupancy entropy before", lambda m: entropy),
            (
                "occupancy entropy after",
                lambda m: f"{m['entropy_after_bits']:.3f} bits ({_fmt(m['entropy_after_normalised'])})",
            ),
        ]

    def notes(self, report: CoverageReport) -> list[str]:
        return ["", "Entropy in bits over the grid's cells; in brackets, divided by log2(cells)."]

    def region_columns(self, report: CoverageReport, names: list[str]) -> list[tuple[str, Callable]]:
        return [("before", lambda r: str(r["before"]))] + [
            (f"{n}: after (+added)", lambda r, n=n: f"{r['after'][n]} (+{r['added'][n]})") for n in names
        ]

    def plot(self, report: CoverageReport, path: Path, *, title: str | None = None) -> Path:
        """The map before / after with the targeted regions boxed (:func:`~embedsdg_hf.plots.plot_coverage`)."""
        from ..plots import plot_coverage

        return plot_coverage(
            report.pool_coords,
            report.synthetic_coords,
            path,
            boxes=[(r["lower"], r["upper"]) for r in report.regions],
            landed=report.in_targeted,
            reached={n: [r["after"][n] >= self.grid.threshold for r in report.regions] for n in report.methods},
            threshold=self.grid.threshold,
            bounds=(self.grid.lower, self.grid.upper),
            axis_labels=report.settings.get("axis_labels"),
            title=title,
        )

    @staticmethod
    def after(numbers: dict[str, Any]) -> str:
        return (
            f"{numbers['regions_reaching_threshold']}/{numbers['targeted_regions']} targeted regions now reach T; "
            f"normalised occupancy entropy {numbers['entropy_before_normalised']:.3f} -> "
            f"{numbers['entropy_after_normalised']:.3f}."
        )

    @staticmethod
    def card(summary: dict[str, dict[str, Any]]) -> list[str]:
        lines = [
            "## Coverage of the sparse regions",
            "",
            "| method | kept rows | in their target region | in a targeted region | regions reaching T | "
            "occupancy entropy (normalised) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for method, n in summary.items():
            lines.append(
                f"{landing_cells(method, n)}{n['regions_reaching_threshold']}/{n['targeted_regions']} | "
                f"{n['entropy_before_normalised']:.3f} -> {n['entropy_after_normalised']:.3f} |"
            )
        return [*lines, ""]


def landing_cells(method: str, numbers: Mapping[str, Any]) -> str:
    """The first cells of a coverage card row, the same for every selector: method, kept rows, rows in their target
    region (n/a when no row aimed at one), rows in any targeted region (ends with ``| ``)."""
    n = numbers
    target = "n/a" if n.get("landed_in_target_share") is None else f"{n['landed_in_target']}/{n['aimed_rows']}"
    return f"| {method} | {n['synthetic_points']} | {target} | {n['landed_in_targeted_regions']} | "


def method_table(methods: Mapping[str, Mapping[str, Any]], rows: Sequence[tuple[str, Callable]]) -> list[str]:
    """Markdown lines of a table with one column per method and one row per ``(label, cell(numbers))``."""
    names = list(methods)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(methods[n]) for n in names) + " |")
    return lines


def landing_rows() -> list[tuple[str, Callable]]:
    """The :func:`method_table` rows every coverage report shows: points, aimed rows, where they landed."""
    return [
        ("synthetic points", lambda m: f"{m['synthetic_points']:,}"),
        ("rows aimed at a region", lambda m: f"{m['aimed_rows']:,}"),
        ("landed in their own target region", lambda m: _ratio(m["landed_in_target"], m["aimed_rows"])),
        ("landed in any targeted region", lambda m: _ratio(m["landed_in_targeted_regions"], m["synthetic_points"])),
    ]


def _ratio(count: int, total: int) -> str:
    return "-" if total == 0 else f"{count:,}/{total:,} ({100 * count / total:.0f}%)"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def share_of(count: int, total: int) -> float | None:
    return None if total == 0 else count / total


# ----------------------------------------------------------------------------------------------------------------
# Numbers from coordinates


def _entropy(cell_counts: np.ndarray, n_cells: int) -> tuple[float, float | None]:
    total = cell_counts.sum()
    if total == 0:
        return 0.0, 0.0 if n_cells > 1 else None
    p = cell_counts[cell_counts > 0] / total
    bits = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no "-0.0" for a single occupied cell
    return bits, (bits / math.log2(n_cells) if n_cells > 1 else None)


def occupancy_entropy(coords: np.ndarray, grid: GridSpec) -> tuple[float, float | None]:
    """Shannon entropy (bits) of the points' distribution over the grid's elementary cells, and that entropy divided
    by ``log2(number of cells)`` (None for a one-cell grid). Points outside the grid are left out.

    Example:
        >>> occupancy_entropy(np.array([[0.1, 0.1], [0.9, 0.9]]), grid_of_2x2_cells)  # doctest: +SKIP
        (1.0, 0.5)
    """
    cells = grid.cell_index(as_float_matrix(coords, column="coords", expected_dim=grid.n_components))
    n_cells = math.prod(grid.shape)
    return _entropy(np.bincount(cells[cells >= 0], minlength=n_cells), n_cells)


def _region_table(regions, grid: GridSpec) -> dict[str, np.ndarray]:
    """The regions dataset's id, window start (cells), box and count as arrays; checked against the grid."""
    require_columns(regions, ["region_id", "window_index", "lower", "upper", "count"], what="regions dataset")
    k = grid.n_components
    if len(regions) == 0:
        return {
            "region_id": np.zeros(0, np.int64),
            "window_index": np.zeros((0, k), np.int64),
            "lower": np.zeros((0, k)),
            "upper": np.zeros((0, k)),
            "count": np.zeros(0, np.int64),
        }
    table = {
        "region_id": column_array(regions, "region_id").astype(np.int64),
        "window_index": list_matrix(regions, "window_index", what="regions dataset").astype(np.int64),
        "lower": list_matrix(regions, "lower", what="regions dataset").astype(np.float64),
        "upper": list_matrix(regions, "upper", what="regions dataset").astype(np.float64),
        "count": column_array(regions, "count").astype(np.int64),
    }
    if table["window_index"].shape[1] != k:
        raise ValueError(
            f"The regions dataset's 'window_index' has {table['window_index'].shape[1]} axes, but the grid is {k}-D: "
            "the regions were found on another grid."
        )
    bad = np.flatnonzero(np.any((table["window_index"] < 0) | (table["window_index"] >= grid.window_shape), axis=1))
    if len(bad):
        raise ValueError(
            f"Region(s) {table['region_id'][bad][:5].tolist()} have a window_index outside the grid's window "
            f"positions {list(grid.window_shape)}: the regions were found on another grid."
        )
    ids, counts = np.unique(table["region_id"], return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"The regions dataset repeats region_id(s) {ids[counts > 1][:5].tolist()}.")
    return table


def _in_window(cells: np.ndarray, starts: np.ndarray, grid: GridSpec) -> np.ndarray:
    """Whether each point (flat cell, -1 outside) lies in the window starting at ``starts[i]`` (cells per axis)."""
    multi = np.stack(np.unravel_index(np.maximum(cells, 0), grid.shape), axis=1).reshape(-1, grid.n_components)
    inside = (multi >= starts) & (multi < starts + np.asarray(grid.window_cells))
    return (cells >= 0) & np.all(inside, axis=1)


def measure_coverage(
    pool_coords: np.ndarray,
    grid: GridSpec,
    regions,
    synthetic_coords: Mapping[str, np.ndarray],
    *,
    synthetic_region_ids: Mapping[str, np.ndarray] | None = None,
    target_regions: Sequence[int] | None = None,
    settings: dict[str, Any] | None = None,
) -> CoverageReport:
    """The coverage numbers from coordinates alone (no embedding, no model): the core of :func:`coverage_report`.

    Args:
        pool_coords: (n, K) pool coordinates, the ones ``regions`` were found on.
        grid: the run's grid (:func:`~embedsdg_hf.space.regions.fit_grid`).
        regions: the :func:`~embedsdg_hf.space.regions.find_sparse_regions` dataset.
        synthetic_coords: per method name, the (m, K) coordinates of its synthetic points.
        synthetic_region_ids: per method name, the region each point was made for (-1: none, e.g. RandomSDG);
            missing methods count as all -1.
        target_regions: region ids to report on. Default: every region some synthetic row aims at, or all regions
            when no row aims at one.
        settings: recorded as is in the report.

    Example:
        >>> report = measure_coverage(coords, grid, regions, {"embedsdg": new_coords},
        ...                           synthetic_region_ids={"embedsdg": region_ids})  # doctest: +SKIP
    """
    k = grid.n_components
    pool_coords = as_float_matrix(pool_coords, column="coords", expected_dim=k)
    table = _region_table(regions, grid)
    position = {int(r): i for i, r in enumerate(table["region_id"])}
    coords = {
        name: as_float_matrix(np.reshape(c, (-1, k)), column=f"coords of {name!r}", expected_dim=k)
        for name, c in synthetic_coords.items()
    }
    aims = resolve_aims(
        {name: len(points) for name, points in coords.items()}, synthetic_region_ids, table["region_id"]
    )
    chosen = choose_targets(table["region_id"], aims, target_regions)
    rows = np.asarray([position[r] for r in chosen], dtype=np.int64)
    starts = table["window_index"][rows]
    index = tuple(starts.T)

    before = count_windows(pool_coords, grid)[index] if len(rows) else np.zeros(0, np.int64)
    mismatch = np.flatnonzero(before != table["count"][rows])
    if len(mismatch):
        first = mismatch[:5]
        raise ValueError(
            f"Pool counts of region(s) {[chosen[i] for i in first]} are {before[first].tolist()}, but the regions "
            f"dataset says {table['count'][rows][first].tolist()}: the pool, grid and regions are not from the same "
            "run (or the pool's coords changed)."
        )
    covered = np.zeros(grid.shape, dtype=bool)
    for start in starts:
        covered[tuple(slice(s, s + w) for s, w in zip(start, grid.window_cells))] = True
    covered = covered.ravel()

    n_cells = math.prod(grid.shape)
    pool_cells = grid.cell_index(pool_coords)
    pool_counts = np.bincount(pool_cells[pool_cells >= 0], minlength=n_cells)
    bits_before, norm_before = _entropy(pool_counts, n_cells)
    summary_before = {
        "pool_points": len(pool_coords),
        "pool_outside_grid": int((pool_cells < 0).sum()),
        "entropy_bits": bits_before,
        "entropy_normalised": norm_before,
        "regions_at_threshold": int((before >= grid.threshold).sum()),
    }
    per_region = [
        {
            "region_id": r,
            "lower": table["lower"][i].tolist(),
            "upper": table["upper"][i].tolist(),
            "before": int(b),
            "after": {},
            "added": {},
            "aimed": {},
            "landed": {},
        }
        for r, i, b in zip(chosen, rows, before)
    ]
    methods: dict[str, dict[str, Any]] = {}
    in_targeted: dict[str, np.ndarray] = {}
    for name, points in coords.items():
        cells = grid.cell_index(points)
        inside = cells >= 0
        ids = aims[name]
        aimed_rows = np.flatnonzero(ids >= 0)
        own_starts = table["window_index"][[position[int(r)] for r in ids[aimed_rows]]].reshape(-1, k)
        landed_own = _in_window(cells[aimed_rows], own_starts, grid)
        in_any = inside & covered[np.maximum(cells, 0)]
        added = count_windows(points, grid)[index] if len(rows) else np.zeros(0, np.int64)
        after = before + added
        bits_after, norm_after = _entropy(pool_counts + np.bincount(cells[inside], minlength=n_cells), n_cells)
        methods[name] = {
            "synthetic_points": len(points),
            "aimed_rows": len(aimed_rows),
            "landed_in_target": int(landed_own.sum()),
            "landed_in_target_share": share_of(int(landed_own.sum()), len(aimed_rows)),
            "landed_in_targeted_regions": int(in_any.sum()),
            "landed_in_targeted_regions_share": share_of(int(in_any.sum()), len(points)),
            "inside_grid": int(inside.sum()),
            "inside_grid_share": share_of(int(inside.sum()), len(points)),
            "outside_grid": int((~inside).sum()),
            "regions_gaining": int((added > 0).sum()),
            "regions_reaching_threshold": int((after >= grid.threshold).sum()),
            "entropy_after_bits": bits_after,
            "entropy_after_normalised": norm_after,
            "entropy_change_bits": bits_after - bits_before,
        }
        in_targeted[name] = in_any
        aimed_ids = ids[aimed_rows]
        for entry, a, n in zip(per_region, after, added):
            mine = aimed_ids == entry["region_id"]
            entry["after"][name] = int(a)
            entry["added"][name] = int(n)
            entry["aimed"][name] = int(mine.sum())
            entry["landed"][name] = int(landed_own[mine].sum())
    return CoverageReport(
        part=GridCoverage(grid),
        target_regions=chosen,
        before=summary_before,
        methods=methods,
        regions=per_region,
        settings=dict(settings or {}),
        pool_coords=pool_coords,
        synthetic_coords=coords,
        in_targeted=in_targeted,
    )


def resolve_aims(
    n_points: Mapping[str, int], region_ids: Mapping[str, Sequence[int]] | None, known: np.ndarray
) -> dict[str, np.ndarray]:
    """Per set, the region each of its ``n_points[name]`` points was made for (-1: none; a set missing from
    ``region_ids`` aims nowhere), checked against the ``known`` region ids of the regions dataset."""
    aims: dict[str, np.ndarray] = {}
    for name, n in n_points.items():
        ids = (region_ids or {}).get(name)
        ids = np.full(n, -1, np.int64) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != n:
            raise ValueError(f"{name!r} has {n} points but {len(ids)} region ids; give one per point.")
        unknown = sorted(set(ids[ids >= 0].tolist()) - set(known.tolist()))
        if unknown:
            raise ValueError(
                f"Rows of {name!r} aim at region id(s) {unknown[:5]} that the regions dataset does not have (ids "
                f"there: {_id_range(known)}): the synthetic rows come from another run."
            )
        aims[name] = ids
    return aims


def choose_targets(
    known: np.ndarray, aims: Mapping[str, np.ndarray], target_regions: Sequence[int] | None
) -> list[int]:
    """The region ids to report on: ``target_regions`` (checked), else every region some row aims at (in the
    regions dataset's order), else every region."""
    if target_regions is None:
        aimed = set().union(*(set(ids[ids >= 0].tolist()) for ids in aims.values())) if aims else set()
        return [int(r) for r in known if int(r) in aimed] if aimed else [int(r) for r in known]
    chosen = [int(r) for r in target_regions]
    unknown = sorted(set(chosen) - set(known.tolist()))
    if unknown:
        raise ValueError(
            f"target_regions {unknown[:5]} are not in the regions dataset (ids there: {_id_range(known)})."
        )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"target_regions repeats region ids: {chosen}.")
    return chosen


def _id_range(ids: np.ndarray) -> str:
    if len(ids) == 0:
        return "none, the regions dataset is empty"
    return f"{len(ids)} ids from {int(ids.min())} to {int(ids.max())}"


# ----------------------------------------------------------------------------------------------------------------
# From datasets: embed, project, measure


def coverage_report(
    pool,
    grid: GridSpec,
    regions,
    reducer,
    synthetic,
    *,
    model: str,
    text_template: str,
    weights: str = "mean",
    max_length: int | None = None,
    target_regions: Sequence[int] | None = None,
    region_column: str = "region_id",
) -> CoverageReport:
    """Embed the synthetic rows like the pool, project them with the run's reducer, and measure the coverage.

    Args:
        pool: the embedded pool with its ``coords`` (``grid.column``) column, as the run saved it (``pool/``). A pool
            without coords but with the reducer's input column (``embedding``) is projected here.
        grid / regions / reducer: the run's grid, sparse regions dataset and fitted :class:`~embedsdg_hf.Reducer`.
        synthetic: a ``Dataset`` of synthetic rows, or ``{method name: Dataset}`` to compare sets side by side, e.g.
            ``{"embedsdg": ..., "random": ...}``. Empty sets are reported as zero points. A lone ``Dataset`` is
            named after its ``method`` column when it holds one value, else ``"synthetic"``.
        model / text_template / weights / max_length: the pool's embedding settings (the run's ``student``,
            ``text_template``, ``weights`` and ``max_length``); the synthetic rows are embedded with exactly these.
        target_regions: region ids to report on. Default: the regions the rows aim at (``region_column >= 0``), or
            every region when no row aims at one.
        region_column: the column holding the region a row was made for (-1: none). A set without it counts as
            aiming nowhere (with a warning).

    Returns:
        A :class:`CoverageReport`.

    Example:
        >>> sets = {"embedsdg": ours, "random": baseline}  # doctest: +SKIP
        >>> report = coverage_report(pool, grid, regions, reducer, sets, model="smollm2-135m-instruct",
        ...                          text_template="{question}\\n{answer}")  # doctest: +SKIP
        >>> print(report.to_markdown())  # doctest: +SKIP
    """
    require_rows(pool, what="pool", step="coverage_report")
    if reducer.n_components != grid.n_components:
        raise ValueError(
            f"The reducer projects to {reducer.n_components}-D but the grid is {grid.n_components}-D: they are not "
            "from the same run."
        )
    if grid.column in pool.column_names:
        pool_coords = vector_matrix(pool, grid.column, expected_dim=grid.n_components)
    elif reducer.column in pool.column_names:
        pool_coords = reducer.project(vector_matrix(pool, reducer.column))  # fitted rows keep fitted coords
    else:
        raise ValueError(
            f"The pool has neither a {grid.column!r} column (coords) nor a {reducer.column!r} column to project. "
            f"Columns present: {pool.column_names}. Pass the pool the run saved (its pool/ folder)."
        )
    sets = synthetic_sets(synthetic)
    region_ids = aimed_regions(sets, region_column)
    embed = {"model": model, "weights": weights, "max_length": max_length}
    coords = {
        name: np.zeros((0, grid.n_components), np.float32) if vectors is None else reducer.transform(vectors)
        for name, vectors in embed_sets(sets, text_template=text_template, **embed).items()
    }
    settings = {
        "model": model,
        "text_template": text_template,
        "weights": weights,
        "max_length": max_length,
        "reducer": f"{reducer.method} ({reducer.n_components}-D)",
        "axis_labels": reducer.axis_labels(),
    }
    return measure_coverage(
        pool_coords,
        grid,
        regions,
        coords,
        synthetic_region_ids=region_ids,
        target_regions=target_regions,
        settings=settings,
    )


def synthetic_sets(synthetic) -> dict[str, Any]:
    """``synthetic`` as ``{method name: Dataset}``: a lone ``Dataset`` is named after its ``method`` column when that
    holds one value, else ``"synthetic"``; anything else is a clear error."""
    from datasets import Dataset

    if isinstance(synthetic, Dataset):
        synthetic = {_set_name(synthetic): synthetic}
    if not isinstance(synthetic, Mapping) or not synthetic:
        raise ValueError(
            "synthetic must be a Dataset or a non-empty dict {method name: Dataset}; got "
            f"{type(synthetic).__name__}."
        )
    for name, rows in synthetic.items():
        if not isinstance(rows, Dataset):
            raise ValueError(f"synthetic[{name!r}] must be a datasets.Dataset; got {type(rows).__name__}.")
        if len(rows) == 0:
            logger.warning("The synthetic set %r is empty: it is reported as zero points.", name)
    return dict(synthetic)


def aimed_regions(sets: Mapping[str, Any], region_column: str) -> dict[str, np.ndarray]:
    """Per set, its rows' ``region_column`` (the region each was made for; -1: none). A set without the column
    aims nowhere (with a warning)."""
    region_ids = {}
    for name, rows in sets.items():
        if len(rows) and region_column not in rows.column_names:
            logger.warning(
                "The synthetic set %r has no %r column: its rows count as aiming at no region.", name, region_column
            )
        if len(rows) and region_column in rows.column_names:
            region_ids[name] = column_array(rows, region_column).astype(np.int64)
        else:
            region_ids[name] = np.full(len(rows), -1, np.int64)
    return region_ids


def embed_sets(
    sets: Mapping[str, Any], *, model: str, text_template: str, weights: str, max_length: int | None
) -> dict[str, np.ndarray | None]:
    """Per set, its rows' ``text_template`` embedded as the pool was (:func:`~embedsdg_hf.space.embed.add_embeddings`
    with the run's student and settings): an (m, D) matrix, or None for an empty set."""
    from ..space.embed import add_embeddings

    vectors: dict[str, np.ndarray | None] = {}
    for name, rows in sets.items():
        if len(rows) == 0:
            vectors[name] = None
            continue
        fields = require_template_columns(rows, text_template)
        embedded = add_embeddings(
            rows.select_columns(fields),
            model=model,
            text_template=text_template,
            weights=weights,
            max_length=max_length,
        )
        vectors[name] = vector_matrix(embedded, "embedding")
    return vectors


def _set_name(ds) -> str:
    if "method" in ds.column_names and len(ds):
        values = set(column_array(ds, "method").tolist())
        if len(values) == 1:
            return str(values.pop())
    return "synthetic"
