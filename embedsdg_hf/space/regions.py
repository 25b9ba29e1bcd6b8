"""Sparse regions of the reduced embedding space (paper §3.3, METHOD.md §2).

A window slides over the bounding box E' of the ``coords`` column with a stride; every window whose point count is
at least 1 and below a threshold ``T``, and that has enough populated windows around it, is a *candidate sparse
region*. Regions are ranked sparsest first, ties broken by a permutation drawn from the run's seed (never by position
on the map). When a budget needs more regions than there are below ``T``, the threshold is raised one count at a time
(``min_regions``): the next-sparsest windows join as *level* 1, 2, ... (paper §4.3). Counting uses K-dimensional
prefix sums, so it costs O(n + windows) whatever the window size:

1. points are binned into *elementary cells* of size ``stride`` (``np.bincount`` on flat cell indices);
2. a zero-padded K-D cumulative sum of the cell counts is taken;
3. every window's count (one window per cell step) follows by inclusion-exclusion over its 2**K corners.

Public API:

- :class:`GridSpec`, the frozen, JSON-serialisable result of :func:`fit_grid`;
- :func:`fit_grid` fixes the bounds, window, stride and threshold from a dataset;
- :func:`add_grid_cells` adds each row's elementary cell (a pure, cacheable ``Dataset.map``);
- :func:`find_sparse_regions` returns the regions as a new ``Dataset``, sparsest first;
- :func:`count_windows` returns the window-count array (for the density histogram, Fig. 2).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from ..common.mapping import fixed_size_list, vector_matrix
from ..common.splits import map_batched, splitwise, whole_dataset
from ..common.validation import as_float_matrix, require_columns, require_rows

logger = logging.getLogger(__name__)

__all__ = [
    "GridSpec",
    "fit_grid",
    "add_grid_cells",
    "find_sparse_regions",
    "count_windows",
    "summarize_windows",
    "typical_window_count",
    "region_features",
    "regions_dataset",
]

GRID_VERSION = "1"
MAX_CELLS = 2**26
_RATIO_TOL = 1e-6


@dataclass(frozen=True)
class GridSpec:
    """Where the sliding window lives and what counts as sparse; returned by :func:`fit_grid`.

    Attributes:
        lower, upper: per-axis min / max of the fitted coords (the box E').
        stride: size of an elementary cell per axis; windows start at every cell.
        window_cells: window size in cells per axis (window = ``window_cells * stride``).
        shape: number of elementary cells per axis (``ceil(span / stride)``, at least ``window_cells``).
        threshold: ``T``; a window is sparse when ``1 <= count < T``.
        threshold_rule: how ``T`` was chosen: ``"typical*0.25 (typical=84)"`` (``threshold="auto"``),
            ``"quantile=0.25"`` or ``"fixed"``.
        min_populated_neighbors: fraction of the ``3**K - 1`` neighbouring windows that must be non-empty.
        column: the coords column the grid was fitted on.

    Example:
        >>> ds = datasets.Dataset.from_dict({"coords": np.random.default_rng(0).normal(size=(2000, 2)).tolist()})
        >>> grid = fit_grid(ds, bins=20)
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "grid.json")
        >>> grid.save(path); GridSpec.load(path) == grid
        True
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    stride: tuple[float, ...]
    window_cells: tuple[int, ...]
    shape: tuple[int, ...]
    threshold: int
    threshold_rule: str = "fixed"
    min_populated_neighbors: float = 0.5
    column: str = "coords"
    version: str = GRID_VERSION

    def __post_init__(self) -> None:
        for name in ("lower", "upper", "stride"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        for name in ("window_cells", "shape"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "threshold", int(self.threshold))
        object.__setattr__(self, "min_populated_neighbors", float(self.min_populated_neighbors))
        k = len(self.lower)
        if k not in (2, 3) or any(len(getattr(self, n)) != k for n in ("upper", "stride", "window_cells", "shape")):
            raise ValueError(
                f"GridSpec needs lower, upper, stride, window_cells and shape of one length K in {{2, 3}}; got "
                f"{self.lower}, {self.upper}, {self.stride}, {self.window_cells}, {self.shape}."
            )
        if self.version != GRID_VERSION:
            raise ValueError(
                f"GridSpec version {self.version!r} is not supported (this library writes {GRID_VERSION!r})."
            )

    @property
    def n_components(self) -> int:
        """K, the number of coordinates per point."""
        return len(self.lower)

    @property
    def window(self) -> tuple[float, ...]:
        """Window size per axis in coordinate units."""
        return tuple(c * s for c, s in zip(self.window_cells, self.stride, strict=True))

    @property
    def window_shape(self) -> tuple[int, ...]:
        """Number of window start positions per axis (shape of :func:`count_windows`' result)."""
        return tuple(s - w + 1 for s, w in zip(self.shape, self.window_cells, strict=True))

    def cell_index(self, coords: np.ndarray) -> np.ndarray:
        """Flat C-order elementary-cell index of each point (int64), -1 for points outside ``[lower, upper]``.

        Points exactly on ``upper`` go in the last cell.

        Example:
            >>> grid = GridSpec(lower=(0, 0), upper=(1, 1), stride=(0.5, 0.5), window_cells=(1, 1), shape=(2, 2),
            ...                 threshold=2)
            >>> grid.cell_index(np.array([[0.0, 0.0], [0.9, 0.1], [2.0, 2.0]]))  # row-major cells; -1: outside
            array([ 0,  2, -1])
        """
        points = np.asarray(coords, dtype=np.float64).reshape(-1, self.n_components)
        lower = np.asarray(self.lower)
        upper = np.asarray(self.upper)
        shape = np.asarray(self.shape)
        with np.errstate(invalid="ignore"):
            cells = np.floor((points - lower) / np.asarray(self.stride))
            inside = np.all((points >= lower) & (points <= upper), axis=1)
        cells = np.clip(np.nan_to_num(cells, nan=0.0), 0, shape - 1).astype(np.int64)
        flat = np.ravel_multi_index(tuple(cells.T), self.shape)
        flat[~inside] = -1
        return flat

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        unknown, missing = sorted(set(data) - known), sorted(required - set(data))
        if unknown or missing:
            raise ValueError(
                f"Not a GridSpec: unknown field(s) {unknown}, missing field(s) {missing}; fields are {sorted(known)}."
            )
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write the spec as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> GridSpec:
        """Read a spec written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ----------------------------------------------------------------------------------------------------------------
# Reading coords


def _per_axis(value: Any, k: int, *, name: str) -> np.ndarray:
    """A scalar or a length-K sequence as a float64 array of length K."""
    if isinstance(value, (str, bytes, bool)) or not isinstance(value, (numbers.Real, Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a number or a sequence of {k} numbers; got {value!r}.")
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or len(arr) not in (1, k):
        raise ValueError(f"{name} must be a number or a sequence of {k} numbers (one per axis); got {value!r}.")
    return np.broadcast_to(arr, (k,)).astype(np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Counting


def _cell_counts(cells: np.ndarray, grid: GridSpec) -> np.ndarray:
    """Points per elementary cell, shape ``grid.shape``, from flat cell indices (-1, outside the grid, ignored)."""
    return np.bincount(cells[cells >= 0], minlength=math.prod(grid.shape)).reshape(grid.shape)


def _window_counts(cell_counts: np.ndarray, window_cells: Sequence[int]) -> np.ndarray:
    """Counts of every window (one per start cell) by K-D prefix sums and inclusion-exclusion, O(cells)."""
    k = cell_counts.ndim
    prefix = np.zeros(tuple(s + 1 for s in cell_counts.shape), dtype=np.int64)
    inner = cell_counts.astype(np.int64)
    for axis in range(k):
        inner = np.cumsum(inner, axis=axis)
    prefix[(slice(1, None),) * k] = inner
    out_shape = tuple(s - w + 1 for s, w in zip(cell_counts.shape, window_cells, strict=True))
    counts = np.zeros(out_shape, dtype=np.int64)
    for corner in itertools.product((0, 1), repeat=k):
        # corner[axis] == 1: the window's upper edge (prefix index start + w), 0: its lower edge (start).
        index = tuple(
            slice(w, w + m) if c else slice(0, m) for c, w, m in zip(corner, window_cells, out_shape, strict=True)
        )
        sign = -1 if (k - sum(corner)) % 2 else 1
        counts += sign * prefix[index]
    return counts


def count_windows(ds_or_coords: datasets.Dataset | np.ndarray, grid: GridSpec) -> np.ndarray:
    """Point count of every window position (shape ``grid.window_shape``); the data behind the density histogram.

    Example:
        >>> ds = datasets.Dataset.from_dict({"coords": np.random.default_rng(0).normal(size=(2000, 2)).tolist()})
        >>> grid = fit_grid(ds, bins=20)
        >>> counts = count_windows(ds, grid)
        >>> counts.shape, int(counts.sum())  # a plain grid (stride = window): every point in exactly one window
        ((20, 20), 2000)
        >>> hist, edges = np.histogram(counts[counts > 0], bins=30)  # Fig. 2, with ``grid.threshold`` marked
    """
    if isinstance(ds_or_coords, datasets.Dataset):
        coords = vector_matrix(ds_or_coords, grid.column, expected_dim=grid.n_components)
    else:
        coords = as_float_matrix(ds_or_coords, column="coords", expected_dim=grid.n_components)
    return _window_counts(_cell_counts(grid.cell_index(coords), grid), grid.window_cells)


# ----------------------------------------------------------------------------------------------------------------
# Fitting


def _resolve_window(window: Any, bins: Any, span: np.ndarray) -> np.ndarray:
    """Window size per axis from ``window`` (coordinate units) or ``bins`` (windows per axis)."""
    k = len(span)
    if window is not None and bins is not None:
        raise ValueError(f"Give at most one of window={window!r} and bins={bins!r}, not both.")
    if window is None:
        bins = 20 if bins is None else bins
        counts = _per_axis(bins, k, name="bins")
        if np.any(counts < 1) or np.any(counts != np.round(counts)):
            raise ValueError(f"bins must be a positive integer or one per axis; got {bins!r}.")
        return span / counts
    sizes = _per_axis(window, k, name="window")
    if not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"window must be positive and finite on every axis; got {window!r}.")
    return sizes


THRESHOLD_RULES = ("auto", "quantile")
AUTO_MIN_THRESHOLD = 3  # threshold="auto" never gives T = 2, where every region would be a single point


def _check_fraction(value: Any, name: str, *, low_open: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    ok = ok and (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}.")


def _check_threshold(threshold: Any, quantile: Any, fraction: Any = 0.25) -> None:
    if isinstance(threshold, str):
        if threshold not in THRESHOLD_RULES:
            raise ValueError(f"threshold must be an integer >= 2, 'auto' or 'quantile'; got {threshold!r}.")
        _check_fraction(quantile, "quantile", low_open=False)
        _check_fraction(fraction, "fraction", low_open=True)
        return
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Integral) or threshold <= 1:
        raise ValueError(
            f"threshold must be an integer >= 2, 'auto' or 'quantile'; got {threshold!r}. A sparse region has "
            "1 <= count < T, so T <= 1 would select nothing (empty windows are never regions)."
        )


def typical_window_count(window_counts: np.ndarray) -> int:
    """The count of the window the median point sits in: the point-weighted median of the window counts.

    This is the "typical window" of the paper's Fig. 2 (most windows hold 30-50 points there). Unlike the plain
    median or mode of the non-empty windows, it is not dragged down to 1 by the many near-empty windows a long
    fringe adds (on GSM8K with PCA most non-empty windows hold 1-3 points while most *points* sit in windows of
    80 or more).

    Example:
        >>> typical_window_count(np.array([1, 1, 1, 40, 40, 50]))
        40
    """
    counts = np.sort(np.asarray(window_counts, dtype=np.int64).ravel())
    counts = counts[counts > 0]
    if len(counts) == 0:
        return 0
    cumulative = np.cumsum(counts)
    return int(counts[np.searchsorted(cumulative, cumulative[-1] / 2)])


@whole_dataset("it fits one grid to the range of all rows")
def fit_grid(
    ds: datasets.Dataset,
    *,
    window: float | Sequence[float] | None = None,
    bins: int | Sequence[int] | None = None,
    stride: float | Sequence[float] | None = None,
    threshold: int | str = "auto",
    quantile: float = 0.25,
    fraction: float = 0.25,
    min_populated_neighbors: float = 0.5,
    column: str = "coords",
) -> GridSpec:
    """Fit the sliding-window grid over the bounds of ``ds[column]`` and choose the threshold ``T``.

    Args:
        ds: dataset with a column of K-dimensional coords, K in {2, 3}.
        window: window size in coordinate units (one number or one per axis).
        bins: windows per axis (window = span / bins). Give at most one of ``window`` / ``bins``; default ``bins=20``.
        stride: step between window starts (default: the window, i.e. a plain grid). ``window / stride`` must be an
            integer.
        threshold: ``T`` (int >= 2; sparse means ``1 <= count < T``), or a rule:

            - ``"auto"`` (default): ``T = max(3, ceil(fraction * typical))``, where *typical* is the count of the
              window the median point sits in (:func:`typical_window_count`). This is how the paper reads its
              Fig. 2 (typical windows hold 30-50 points, T = 10): regions are windows holding well under a typical
              window's points, inside the data as well as on its fringe, and they hold several points.
            - ``"quantile"``: ``max(2, ceil(quantile of the counts of non-empty windows))``. Beware: when the map
              has a long fringe of near-empty windows this collapses to T = 2 (every region a single point).
        quantile: the quantile used by ``threshold="quantile"``.
        fraction: the share of the typical window's count used by ``threshold="auto"`` (paper: 10 / ~40).
        min_populated_neighbors: fraction of the ``3**K - 1`` neighbouring windows that must be non-empty for a
            candidate to count (0 disables the rule).
        column: the coords column.

    Example:
        >>> ds = datasets.Dataset.from_dict({"coords": np.random.default_rng(0).normal(size=(2000, 2)).tolist()})
        >>> grid = fit_grid(ds, bins=20, threshold="auto", fraction=0.25)
        >>> grid.threshold, grid.threshold_rule, [round(w, 3) for w in grid.window]
        (5, 'typical*0.25 (typical=19)', [0.337, 0.351])
    """
    _check_threshold(threshold, quantile, fraction)
    if threshold != "quantile" and quantile != 0.25:
        logger.warning(
            "quantile=%r is ignored because threshold=%r (it is used by threshold='quantile').", quantile, threshold
        )
    if threshold != "auto" and fraction != 0.25:
        logger.warning(
            "fraction=%r is ignored because threshold=%r (it is used by threshold='auto').", fraction, threshold
        )
    if (
        isinstance(min_populated_neighbors, bool)
        or not isinstance(min_populated_neighbors, numbers.Real)
        or not (0.0 <= min_populated_neighbors <= 1.0)
    ):
        raise ValueError(f"min_populated_neighbors must be a fraction in [0, 1]; got {min_populated_neighbors!r}.")
    require_columns(ds, [column])
    require_rows(ds, step="fit_grid")
    coords = vector_matrix(ds, column)
    k = coords.shape[1]
    if k not in (2, 3):
        raise ValueError(
            f"Column {column!r} holds {k}-dimensional coords; fit_grid needs K = 2 or 3 (reduce the embeddings to 2 "
            "or 3 components first)."
        )
    lower = coords.min(axis=0).astype(np.float64)
    upper = coords.max(axis=0).astype(np.float64)
    span = upper - lower
    flat_axes = np.flatnonzero(span <= 0).tolist()
    if flat_axes:
        raise ValueError(
            f"All points have the same value on axis {flat_axes} of column {column!r} (span 0): nothing to grid. "
            "Check the reduction step (e.g. too few distinct rows)."
        )

    sizes = _resolve_window(window, bins, span)
    for axis in range(k):
        if sizes[axis] > span[axis] * (1 + 1e-9):
            raise ValueError(
                f"window {sizes[axis]:g} on axis {axis} is larger than the span {span[axis]:g} of the coords on that "
                f"axis (min {lower[axis]:g}, max {upper[axis]:g}); use a smaller window or bins >= 1."
            )
    sizes = np.minimum(sizes, span)
    steps = sizes if stride is None else _per_axis(stride, k, name="stride")
    if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        raise ValueError(f"stride must be positive and finite on every axis; got {stride!r}.")
    ratio = sizes / steps
    window_cells = np.round(ratio).astype(np.int64)
    if np.any(window_cells < 1) or np.any(np.abs(ratio - window_cells) > _RATIO_TOL * ratio):
        raise ValueError(
            f"window / stride must be a whole number of cells on every axis; got window {sizes.tolist()} and stride "
            f"{steps.tolist()} (ratio {ratio.tolist()}). Use e.g. stride = window / 2."
        )
    steps = sizes / window_cells  # exact multiple
    shape = np.maximum(np.ceil(span / steps - _RATIO_TOL), window_cells).astype(np.int64)
    n_cells = math.prod(shape.tolist())
    if n_cells > MAX_CELLS:
        raise ValueError(
            f"The grid would have {n_cells:,} elementary cells (shape {shape.tolist()}), more than {MAX_CELLS:,}; "
            "use a larger stride (or a larger window / fewer bins)."
        )

    grid = GridSpec(
        lower=tuple(lower),
        upper=tuple(upper),
        stride=tuple(steps),
        window_cells=tuple(window_cells),
        shape=tuple(shape),
        threshold=2,
        threshold_rule="fixed",
        min_populated_neighbors=min_populated_neighbors,
        column=column,
    )
    if threshold == "quantile":
        counts = count_windows(coords, grid)
        chosen = max(2, math.ceil(float(np.quantile(counts[counts > 0], quantile))))
        grid = GridSpec(**{**asdict(grid), "threshold": chosen, "threshold_rule": f"quantile={quantile:g}"})
    elif threshold == "auto":
        typical = typical_window_count(count_windows(coords, grid))
        chosen = max(AUTO_MIN_THRESHOLD, math.ceil(fraction * typical - 1e-9))
        rule = f"typical*{fraction:g} (typical={typical})"
        grid = GridSpec(**{**asdict(grid), "threshold": chosen, "threshold_rule": rule})
    else:
        grid = GridSpec(**{**asdict(grid), "threshold": int(threshold)})
    logger.info(
        "Fitted a %s grid of %s cells, window %s, threshold %d (%s).",
        "x".join(map(str, grid.shape)),
        n_cells,
        [round(w, 6) for w in grid.window],
        grid.threshold,
        grid.threshold_rule,
    )
    return grid


# ----------------------------------------------------------------------------------------------------------------
# Applying


class _CellAssigner:
    """``Dataset.map`` callable whose state is only the grid spec and column names: stable fingerprints."""

    def __init__(self, grid: GridSpec, column: str, output_column: str) -> None:
        self.grid = grid
        self.column = column
        self.output_column = output_column

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        matrix = as_float_matrix(batch[self.column], column=self.column, expected_dim=self.grid.n_components)
        return {self.output_column: self.grid.cell_index(matrix)}


def _check_dim(ds: datasets.Dataset, column: str, grid: GridSpec) -> None:
    """Fail before mapping when the column's declared vector length differs from the grid's K."""
    length = getattr(ds.features[column], "length", -1)
    if length not in (-1, None) and length != grid.n_components:
        raise ValueError(
            f"Column {column!r} holds vectors of length {length}, but the grid was fitted on {grid.n_components}-D "
            "coords."
        )


@splitwise()
def add_grid_cells(
    ds: datasets.Dataset,
    grid: GridSpec,
    *,
    column: str | None = None,
    output_column: str = "grid_cell",
    **map_kwargs: Any,
) -> datasets.Dataset:
    """Add an int64 column with each row's elementary grid cell (flat C-order index; -1 outside the grid).

    An empty dataset comes back empty, with the new column. ``ds`` may be a ``Dataset``, an ``IterableDataset``
    (cells assigned as rows are read) or a dict of them (every split).

    Example:
        >>> ds = datasets.Dataset.from_dict({"coords": np.random.default_rng(0).normal(size=(2000, 2)).tolist()})
        >>> ds = add_grid_cells(ds, fit_grid(ds, bins=10))
        >>> ds["grid_cell"][:3]
        [55, 65, 45]
    """
    column = column or grid.column
    require_columns(ds, [column])
    _check_dim(ds, column, grid)
    map_kwargs.setdefault("desc", "Assigning grid cells")
    return map_batched(
        ds,
        _CellAssigner(grid, column, output_column),
        new_features={output_column: datasets.Value("int64")},
        step="add_grid_cells",
        numpy_columns=[column],
        **map_kwargs,
    )


#: The columns every selector's regions dataset has, whatever a region is (``regions_dataset``).
REGION_COLUMNS = ("region_id", "lower", "upper", "count", "members")
#: The grid's own columns (``find_sparse_regions``).
GRID_REGION_FEATURES = {
    "n_populated_neighbors": datasets.Value("int64"),
    "n_neighbors": datasets.Value("int64"),
    "level": datasets.Value("int64"),
    "threshold": datasets.Value("int64"),
}


def region_features(k: int, extra: dict[str, Any] | None = None) -> datasets.Features:
    """The regions schema of every selector: ``region_id`` (rank, sparsest first), ``lower`` / ``upper`` (the region's
    box on the K-D map: a grid window, or the bounding box of a k-NN neighbourhood), ``count`` (pool points in it),
    ``members`` (their pool rows), then the selector's own columns ``extra`` (name -> ``datasets`` feature).

    Example:
        >>> list(region_features(2, {"centre": datasets.Value("int64")}))
        ['region_id', 'lower', 'upper', 'count', 'members', 'centre']
    """
    common = {
        "region_id": datasets.Value("int64"),
        "lower": datasets.List(datasets.Value("float64"), length=k),
        "upper": datasets.List(datasets.Value("float64"), length=k),
        "count": datasets.Value("int64"),
        "members": datasets.List(datasets.Value("int64")),
    }
    clash = sorted(set(common) & set(extra or {}))
    if clash:
        raise ValueError(f"Selector columns {clash} would replace the common region columns {list(common)}.")
    return datasets.Features({**common, **(extra or {})})


def regions_dataset(columns: dict[str, Any], *, k: int, extra: dict[str, Any] | None = None) -> datasets.Dataset:
    """The regions ``Dataset`` of any selector (one row a region, schema :func:`region_features`) from ``columns``
    (the common ones and those of ``extra``: lists, numpy or pyarrow arrays).

    Example:
        >>> regions = regions_dataset({"region_id": [0], "lower": [[0.0, 0.0]], "upper": [[1.0, 1.0]], "count": [2],
        ...                            "members": [[3, 7]]}, k=2)
        >>> regions[0]["members"]
        [3, 7]
    """
    features = region_features(k, extra)
    missing = sorted(set(features) - set(columns))
    unknown = sorted(set(columns) - set(features))
    if missing or unknown:
        raise ValueError(
            f"A regions dataset needs the columns {list(features)}; missing {missing}, unknown {unknown} (declare a "
            "selector's own columns in extra)."
        )
    return datasets.Dataset.from_dict({name: columns[name] for name in features}, features=features)


def _grid_extra(k: int) -> dict[str, Any]:
    """The grid's own region columns: ``window_index`` (start cell per axis), then :data:`GRID_REGION_FEATURES`."""
    return {"window_index": datasets.List(datasets.Value("int64"), length=k), **GRID_REGION_FEATURES}


def _region_features(k: int) -> datasets.Features:
    return region_features(k, _grid_extra(k))


def _populated_neighbors(populated: np.ndarray, window_cells: Sequence[int]) -> np.ndarray:
    """For every window, how many of the 3**K - 1 windows offset by -w, 0, +w cells per axis are non-empty."""
    k = populated.ndim
    padded = np.pad(populated.astype(np.int64), [(w, w) for w in window_cells])
    total = np.zeros(populated.shape, dtype=np.int64)
    for offset in itertools.product((-1, 0, 1), repeat=k):
        if any(offset):
            index = tuple(
                slice(w + o * w, w + o * w + s) for o, w, s in zip(offset, window_cells, populated.shape, strict=True)
            )
            total += padded[index]
    return total


def _gather_members(cells: np.ndarray, grid: GridSpec, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row positions of the points inside each window starting at cell ``starts[r]`` (flat), as CSR.

    Points are sorted by cell once; each window's members are the concatenated slices of its cells.
    Returns ``(offsets, values)`` with ``values[offsets[r]:offsets[r + 1]]`` the members of window ``r``.
    """
    n_cells = math.prod(grid.shape)
    inside = np.flatnonzero(cells >= 0)
    order = inside[np.argsort(cells[inside], kind="stable")]
    per_cell = np.bincount(cells[inside], minlength=n_cells)
    cell_start = np.concatenate([[0], np.cumsum(per_cell)])
    # Flat offsets of the cells of one window relative to its start cell.
    rel = np.stack(np.meshgrid(*[np.arange(w) for w in grid.window_cells], indexing="ij"), axis=-1).reshape(
        -1, grid.n_components
    )
    rel_flat = rel @ np.asarray([math.prod(grid.shape[a + 1 :]) for a in range(grid.n_components)], dtype=np.int64)
    window_cells_flat = (starts[:, None] + rel_flat[None, :]).ravel()
    seg_len = per_cell[window_cells_flat]
    seg_start = cell_start[window_cells_flat]
    total = int(seg_len.sum())
    # positions = seg_start repeated over each segment + position within the segment
    seg_offsets = np.concatenate([[0], np.cumsum(seg_len)[:-1]])
    positions = np.repeat(seg_start - seg_offsets, seg_len) + np.arange(total)
    members = order[positions]
    region_of = np.repeat(np.arange(len(starts)), seg_len.reshape(len(starts), -1).sum(axis=1))
    members = members[np.lexsort((members, region_of))]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(region_of, minlength=len(starts)))])
    return offsets, members


def _tie_keys(n_windows: int, seed: int) -> np.ndarray:
    """A seeded random rank per flat window index: how windows of equal count are ordered."""
    return np.random.default_rng([seed, 0x5EED]).permutation(n_windows)


def _window_state(coords: np.ndarray, grid: GridSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(cells, counts, neighbors, eligible)``: each point's cell, the window counts, each window's populated
    neighbours, and which windows pass the neighbour rule and are non-empty."""
    cells = grid.cell_index(coords)
    counts = _window_counts(_cell_counts(cells, grid), grid.window_cells)
    neighbors = _populated_neighbors(counts > 0, grid.window_cells)
    required = math.ceil(grid.min_populated_neighbors * (3**grid.n_components - 1) - 1e-9)
    return cells, counts, neighbors, (counts >= 1) & (neighbors >= required)


def summarize_windows(ds_or_coords: datasets.Dataset | np.ndarray, grid: GridSpec) -> dict[str, int]:
    """How the windows split under ``grid``: empty, non-empty, candidates (``1 <= count < T``), candidates the
    neighbour rule removed, regions, and the typical window's count (for the density histogram and the manifest).

    Example:
        >>> ds = datasets.Dataset.from_dict({"coords": np.random.default_rng(0).normal(size=(2000, 2)).tolist()})
        >>> summary = summarize_windows(ds, fit_grid(ds, bins=20))
        >>> summary["candidates"], summary["removed_by_neighbor_rule"], summary["regions"]
        (101, 24, 77)
    """
    if isinstance(ds_or_coords, datasets.Dataset):
        coords = vector_matrix(ds_or_coords, grid.column, expected_dim=grid.n_components)
    else:
        coords = as_float_matrix(ds_or_coords, column="coords", expected_dim=grid.n_components)
    _, counts, _, eligible = _window_state(coords, grid)
    candidates = (counts >= 1) & (counts < grid.threshold)
    return {
        "windows": int(counts.size),
        "empty": int((counts == 0).sum()),
        "non_empty": int((counts > 0).sum()),
        "candidates": int(candidates.sum()),
        "removed_by_neighbor_rule": int((candidates & ~eligible).sum()),
        "regions": int((candidates & eligible).sum()),
        "typical_count": typical_window_count(counts),
        "threshold": grid.threshold,
    }


@whole_dataset("it counts all rows in every window at once")
def find_sparse_regions(
    ds: datasets.Dataset,
    grid: GridSpec,
    *,
    column: str | None = None,
    seed: int = 0,
    min_regions: int = 0,
) -> datasets.Dataset:
    """Candidate sparse regions of ``ds`` under ``grid``, sparsest first, as a new ``Dataset`` (one row a region).

    A window is a region when ``1 <= count < grid.threshold`` and at least
    ``ceil(grid.min_populated_neighbors * (3**K - 1))`` of its neighbours (windows offset by -window, 0, +window on
    each axis; outside the map counts as empty) are non-empty. Rows are ordered by count; windows of equal count are
    ordered by a permutation drawn from ``seed`` (not by their place on the map, which would send a small budget to
    one side of it).

    When fewer than ``min_regions`` windows qualify, the threshold is raised one count at a time: windows holding
    exactly ``T``, then ``T + 1``, ... points (that pass the neighbour rule) are appended, a whole level at a time,
    until there are at least ``min_regions`` rows or no window is left. This is how a large budget moves on to less
    sparse regions (paper §4.3); see :func:`~embedsdg_hf.space.pairs.make_budget_pairs`.

    Columns: ``region_id`` (rank), ``window_index`` (start cell per axis), ``lower`` / ``upper`` (the window's box),
    ``count``, ``members`` (sorted row positions in ``ds``), ``n_populated_neighbors``, ``n_neighbors`` (3**K - 1),
    ``level`` (0 below ``T``; L for a window reached by raising the threshold to ``T + L``) and ``threshold`` (the
    threshold it is sparse under: ``T`` at level 0, ``T + L`` at level L).

    Example:
        >>> ds = datasets.Dataset.from_dict({"coords": np.random.default_rng(0).normal(size=(2000, 2)).tolist()})
        >>> regions = find_sparse_regions(ds, fit_grid(ds, bins=20), seed=0)
        >>> len(regions), regions[0]["count"], regions[0]["members"]
        (77, 1, [1630])
    """
    column = column or grid.column
    require_columns(ds, [column])
    require_rows(ds, step="find_sparse_regions")
    _check_dim(ds, column, grid)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}.")
    if isinstance(min_regions, bool) or not isinstance(min_regions, numbers.Integral) or min_regions < 0:
        raise ValueError(f"min_regions must be an integer >= 0; got {min_regions!r}.")
    coords = vector_matrix(ds, column, expected_dim=grid.n_components)
    k = grid.n_components
    cells, counts, neighbors, eligible = _window_state(coords, grid)
    if np.any(cells < 0):
        logger.warning(
            "%d of %d points lie outside the grid's bounds (it was fitted on other data); they are ignored.",
            int(np.sum(cells < 0)),
            len(cells),
        )
    n_neighbors = 3**k - 1
    flat_counts = counts.ravel()
    pool = np.flatnonzero(eligible.ravel())
    pool = pool[np.lexsort((_tie_keys(counts.size, int(seed))[pool], flat_counts[pool]))]
    n_sparse = int(np.count_nonzero(flat_counts[pool] < grid.threshold))
    n_take = n_sparse
    if min_regions > n_sparse and n_sparse < len(pool):
        # whole levels: every window whose count is at most the count of the min_regions-th sparsest window
        last = flat_counts[pool[min(min_regions, len(pool)) - 1]]
        n_take = int(np.searchsorted(flat_counts[pool], last, side="right"))
        logger.info(
            "Raised the threshold from %d to %d to reach %d regions (%d below T).",
            grid.threshold,
            last + 1,
            n_take,
            n_sparse,
        )
    selected = pool[:n_take]
    features = _region_features(k)
    if len(selected) == 0:
        logger.warning(
            "No sparse regions found (threshold %d, window %s, min_populated_neighbors %g): try a higher threshold "
            "or a smaller window.",
            grid.threshold,
            [round(w, 6) for w in grid.window],
            grid.min_populated_neighbors,
        )
        return regions_dataset({name: [] for name in features}, k=k, extra=_grid_extra(k))

    window_index = np.stack(np.unravel_index(selected, counts.shape), axis=1).astype(np.int64)
    start_cells = np.ravel_multi_index(tuple(window_index.T), grid.shape)
    offsets, members = _gather_members(cells, grid, start_cells)
    box_lower = np.asarray(grid.lower) + window_index * np.asarray(grid.stride)
    box_upper = box_lower + np.asarray(grid.window)

    n = len(selected)
    level = np.maximum(flat_counts[selected] - grid.threshold + 1, 0).astype(np.int64)
    columns = {
        "region_id": pa.array(np.arange(n, dtype=np.int64)),
        "window_index": fixed_size_list(window_index),
        "lower": fixed_size_list(box_lower),
        "upper": fixed_size_list(box_upper),
        "count": pa.array(flat_counts[selected]),
        "members": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(members, pa.int64())),
        "n_populated_neighbors": pa.array(neighbors.ravel()[selected]),
        "n_neighbors": pa.array(np.full(n, n_neighbors, dtype=np.int64)),
        "level": pa.array(level),
        "threshold": pa.array(level + grid.threshold),
    }
    logger.info("Found %d sparse regions (threshold %d).", n, grid.threshold)
    return regions_dataset(columns, k=k, extra=_grid_extra(k))
