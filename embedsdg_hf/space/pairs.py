"""Seed pairs from opposite faces of sparse regions (paper §3.4, METHOD.md §3).

For each region (a rectangle in 2-D, a box in 3-D), an axis is chosen and one seed is taken near each of the two
faces perpendicular to it: the lower face at ``lower[axis]`` and the upper face at ``upper[axis]``.

- *Inside* candidates for the lower face are the region's members below the box middle on that axis; those for the
  upper face are the members at or above the middle. ``side_choice="random"`` (the default, the paper's "we randomly
  select points from opposing sides") takes them in a seeded random order; ``"nearest"`` ranks them by their exact
  distance to the face rectangle (the most extreme points of the region).
- When a side has too few inside candidates, it is topped up from the whole pool: FAISS (``IndexFlatL2``) returns the
  nearest points to the face centre, of which non-members on the face's outer side are kept and ranked by exact
  distance to the face rectangle. ``k`` grows (64, x4, ...) until enough qualify *and* the ranking is provably exact
  (the needed candidate is closer to the rectangle than any point FAISS did not return can be). When the outer side
  holds only a few thousand points they are ranked directly, without FAISS.

A seed that comes from the pool is always the nearest one still unused beyond the face (the paper: "a data point
close to the side"), whatever ``side_choice``.

Public API: :func:`make_seed_pairs` (pairs from a regions dataset) and :func:`make_budget_pairs` (regions and pairs
for a budget: raises the threshold step by step until ``n_pairs`` pairs are made).
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from dataclasses import dataclass, field

import datasets
import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..common.mapping import fixed_size_list, list_matrix, vector_matrix
from ..common.options import SIDE_CHOICES as _SIDE_CHOICES
from ..common.splits import whole_dataset
from ..common.validation import require_columns, require_rows
from .regions import REGION_COLUMNS

logger = logging.getLogger(__name__)

__all__ = ["make_seed_pairs", "make_budget_pairs", "pair_features"]

SIDE_CHOICES = _SIDE_CHOICES
PAIRS_PER_ROUND = 4  # make_budget_pairs: pairs a region gives before the walk moves on to less sparse windows

_FIRST_K = 64
_K_GROWTH = 4
_DIRECT_RANK_MAX = 4096  # rank an outer side directly (no FAISS) when it holds at most this many points


@dataclass
class _Regions:
    """The columns of a regions dataset that pairing needs, as numpy arrays (members in CSR form)."""

    region_id: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray
    offsets: np.ndarray
    members: np.ndarray
    level: np.ndarray

    def members_of(self, rank: int) -> np.ndarray:
        return self.members[self.offsets[rank] : self.offsets[rank + 1]]


@dataclass
class _Face:
    """One face of one region that needs ``need`` candidates from the pool."""

    members: np.ndarray
    axis: int
    upper_side: bool
    value: float
    lo: np.ndarray
    hi: np.ndarray
    need: int
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    dists: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def centre(self) -> np.ndarray:
        centre = (self.lo + self.hi) / 2
        centre[self.axis] = self.value
        return centre

    @property
    def radius(self) -> float:
        """Half-diagonal of the face rectangle: no point of the face is farther than this from its centre."""
        half = (self.hi - self.lo) / 2
        half[self.axis] = 0.0
        return float(np.sqrt(np.sum(half**2)))

    def rank(self, coords: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Of ``rows``, the non-members on the outer side, sorted by distance to the face rectangle (then row)."""
        points = coords[rows].astype(np.float64)
        outer = points[:, self.axis] >= self.value if self.upper_side else points[:, self.axis] <= self.value
        keep = outer & ~np.isin(rows, self.members)
        return _sort_by_distance(rows[keep], _face_distance(points[keep], self.lo, self.hi, self.axis, self.value))


def _face_distance(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, axis: int, value: float) -> np.ndarray:
    """Exact Euclidean distance of each point to the face ``{x: x[axis] == value, lo <= x <= hi elsewhere}``."""
    gap = np.maximum(np.maximum(lo - points, points - hi), 0.0)
    gap[:, axis] = np.abs(points[:, axis] - value)
    return np.sqrt(np.sum(gap**2, axis=1))


def _sort_by_distance(rows: np.ndarray, dists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((rows, dists))
    return rows[order], dists[order]


def _read_regions(regions: datasets.Dataset, k: int, n_rows: int) -> _Regions:
    table = regions.with_format("arrow")[:]
    lower = list_matrix(regions, "lower", what="regions dataset").astype(np.float64)
    upper = list_matrix(regions, "upper", what="regions dataset").astype(np.float64)
    if lower.shape[1] != k or upper.shape[1] != k:
        raise ValueError(
            f"The regions dataset has {lower.shape[1]}-D boxes but the coords are {k}-D; the regions were computed "
            "on other coords."
        )
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(upper > lower)):
        raise ValueError("The regions dataset has non-finite or empty boxes (need lower < upper on every axis).")
    members = table.column("members").combine_chunks()
    if members.null_count:
        raise ValueError("The regions dataset has regions with missing (None) members.")
    lengths = pc.list_value_length(members).to_numpy(zero_copy_only=False).astype(np.int64)
    values = members.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    if len(values) and (values.min() < 0 or values.max() >= n_rows):
        raise ValueError(
            f"Region members reference row positions {int(values.min())}..{int(values.max())}, but the dataset has "
            f"{n_rows} rows: the regions were computed on another dataset."
        )
    if "level" in table.column_names:
        level = np.asarray(table.column("level").to_numpy(), dtype=np.int64)
        if np.any(np.diff(level) < 0):
            raise ValueError("The regions dataset is not ordered by level (find_sparse_regions orders it).")
    else:  # a regions dataset made elsewhere: every region is at level 0
        level = np.zeros(len(table), dtype=np.int64)
    return _Regions(
        region_id=np.asarray(table.column("region_id").to_numpy(), dtype=np.int64),
        lower=lower,
        upper=upper,
        count=np.asarray(table.column("count").to_numpy(), dtype=np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        members=values,
        level=level,
    )


class _Pool:
    """The whole seed pool, answering "nearest non-members beyond this face" queries for many faces at once."""

    def __init__(self, coords: np.ndarray) -> None:
        self.coords = coords
        self._index: faiss.IndexFlatL2 | None = None
        self._shift = np.zeros(coords.shape[1])
        self._max_norm2 = 0.0
        self._sorted: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _axis_order(self, axis: int) -> tuple[np.ndarray, np.ndarray]:
        if axis not in self._sorted:
            order = np.argsort(self.coords[:, axis])  # ties order freely: only the value cut-off matters
            self._sorted[axis] = (order, self.coords[order, axis].astype(np.float64))
        return self._sorted[axis]

    def _outer_rows(self, face: _Face) -> np.ndarray:
        """Rows on the face's outer side (a prefix / suffix of the points sorted on the face's axis)."""
        order, values = self._axis_order(face.axis)
        if face.upper_side:
            return order[np.searchsorted(values, face.value, side="left") :]
        return order[: np.searchsorted(values, face.value, side="right")]

    def top_up(self, faces: list[_Face]) -> None:
        """Give each face ``face.need`` or more ranked pool candidates (``face.rows``, ``face.dists``) if there are."""
        searched = []
        for face in faces:
            outer = self._outer_rows(face)
            member_values = self.coords[face.members, face.axis].astype(np.float64)
            outer_members = member_values >= face.value if face.upper_side else member_values <= face.value
            if len(outer) <= _DIRECT_RANK_MAX or len(outer) - np.count_nonzero(outer_members) < face.need:
                face.rows, face.dists = face.rank(self.coords, outer)  # few points out there: rank them all
            else:
                searched.append(face)
        self._search(searched)

    def _build_index(self) -> None:
        """Index the centred coords (smaller norms, smaller float32 error in FAISS's distances)."""
        self._shift = self.coords.astype(np.float64).mean(axis=0)
        centred = np.ascontiguousarray(self.coords - self._shift, dtype=np.float32)
        self._max_norm2 = float(np.max(np.sum(centred.astype(np.float64) ** 2, axis=1)))
        self._index = faiss.IndexFlatL2(self.coords.shape[1])
        self._index.add(centred)

    def _search(self, faces: list[_Face]) -> None:
        n = len(self.coords)
        k = _FIRST_K
        while faces:
            if self._index is None:
                self._build_index()
            k_eff = min(k, n)
            queries = np.stack([face.centre for face in faces]) - self._shift
            dist2, ids = self._index.search(queries.astype(np.float32), k_eff)  # one call for all pending faces
            # FAISS computes |q|^2 + |x|^2 - 2 q.x in float32; bound its error so the exactness test stays sound.
            slack = 4 * np.finfo(np.float32).eps * (np.sum(queries**2, axis=1) + self._max_norm2)
            pending = []
            for face, row_ids, d2, err in zip(faces, ids, dist2, slack, strict=True):
                rows, dists = face.rank(self.coords, row_ids[row_ids >= 0].astype(np.int64))
                reach = math.sqrt(max(float(d2[-1]) - err, 0.0)) - face.radius  # unseen points are at least this far
                if k_eff >= n or (len(rows) >= face.need and dists[face.need - 1] <= reach):
                    face.rows, face.dists = rows, dists
                else:
                    pending.append(face)
            logger.debug("FAISS round k=%d: %d faces, %d need more neighbours.", k_eff, len(faces), len(pending))
            faces = pending
            k *= _K_GROWTH


@dataclass
class _Side:
    """Ranked candidates for one face of one (region, pass): inside members first, then pool top-up."""

    face: _Face
    rows: np.ndarray
    dists: np.ndarray

    def pick(self, q: int) -> tuple[int, float, str] | None:
        """The ``q``-th candidate as ``(row, distance, source)``, or ``None`` when there is none."""
        if q < len(self.rows):
            return int(self.rows[q]), float(self.dists[q]), "region"
        j = q - len(self.rows)
        if j < len(self.face.rows):
            return int(self.face.rows[j]), float(self.face.dists[j]), "pool"
        return None


def _sides(
    regions: _Regions, rank: int, axis: int, q: int, coords: np.ndarray, order_seed: list[int] | None
) -> tuple[_Side, _Side]:
    """The lower- and upper-face candidates of region ``rank`` on ``axis``, needing the ``q``-th of each.

    Inside candidates are ranked by distance to the face, or (``order_seed`` given: ``side_choice="random"``) in a
    random order drawn from ``order_seed + [axis, side]``, the same for every pass of that region and axis.
    """
    lo, hi = regions.lower[rank], regions.upper[rank]
    members = regions.members_of(rank)
    points = coords[members].astype(np.float64)
    middle = (lo[axis] + hi[axis]) / 2
    sides = []
    for upper_side in (False, True):
        value = float(hi[axis] if upper_side else lo[axis])
        on_side = points[:, axis] >= middle if upper_side else points[:, axis] < middle
        rows, dists = _sort_by_distance(members[on_side], _face_distance(points[on_side], lo, hi, axis, value))
        if order_seed is not None:
            shuffle = np.random.default_rng([*order_seed, axis, int(upper_side)]).permutation(len(rows))
            rows, dists = rows[shuffle], dists[shuffle]
        face = _Face(members, axis, upper_side, value, lo, hi, need=max(0, q + 1 - len(rows)))
        sides.append(_Side(face, rows, dists))
    return sides[0], sides[1]


def pair_features(k: int) -> datasets.Features:
    """The seed-pairs schema every selector returns (``make_seed_pairs``' columns), for K-D map coords."""
    float_box = datasets.List(datasets.Value("float64"), length=k)
    point = datasets.List(datasets.Value("float32"), length=k)
    return datasets.Features(
        {
            "pair_id": datasets.Value("int64"),
            "region_id": datasets.Value("int64"),
            "region_lower": float_box,
            "region_upper": float_box,
            "region_count": datasets.Value("int64"),
            "region_level": datasets.Value("int64"),
            "axis": datasets.Value("int64"),
            "seed_a": datasets.Value("int64"),
            "seed_b": datasets.Value("int64"),
            "dist_a": datasets.Value("float64"),
            "dist_b": datasets.Value("float64"),
            "source_a": datasets.Value("string"),
            "source_b": datasets.Value("string"),
            "coords_a": point,
            "coords_b": point,
        }
    )


def _check_positive_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")


def _check_side_choice(side_choice: object) -> None:
    if side_choice not in SIDE_CHOICES:
        raise ValueError(f"side_choice must be one of {list(SIDE_CHOICES)}; got {side_choice!r}.")


@whole_dataset("it picks seeds from all rows of the regions it was given")
def make_seed_pairs(
    ds: datasets.Dataset,
    regions: datasets.Dataset,
    *,
    n_pairs: int,
    seed: int = 0,
    column: str = "coords",
    max_pairs_per_region: int = 4,
    side_choice: str = "random",
) -> datasets.Dataset:
    """Make up to ``n_pairs`` seed pairs from opposite faces of the sparse ``regions`` of ``ds``, sparsest first.

    Regions are walked level by level (the ``level`` column of :func:`find_sparse_regions`; all level 0 when it is
    missing), and within a level in the order of ``regions`` (sparsest first), pass by pass: pass ``p`` of a region
    uses axis ``perm[p % K]`` of a per-region random permutation (from ``seed`` and the region id) and the
    ``p // K``-th candidate on each face, so a region yields at most ``max_pairs_per_region`` distinct pairs, and
    every region of a level gets its ``p``-th pair before any gets its ``p + 1``-th. Seed ``a`` is on the lower
    face, seed ``b`` on the upper face: ``coords_a[axis] < coords_b[axis]``. Only as many regions and passes as
    needed are processed; a (region, pass) that gives no new pair (no candidate on a side, or a pair already made)
    is skipped and the walk goes on.

    Args:
        side_choice: ``"random"`` (default; the paper) takes a random member of the region on each side,
            ``"nearest"`` the member nearest to the face. Random is the default because it is what the paper does
            and it spreads the seeds over the region; nearest always pairs the region's most extreme points, which
            sit next to the denser neighbouring windows. When a side has no member left, both take the nearest pool
            point beyond the face.

    The result has at most ``n_pairs`` rows: when fewer pairs can be made (too few regions x
    ``max_pairs_per_region``, or repeated pairs), a ``UserWarning`` says so and the pairs there are are returned;
    :func:`make_budget_pairs` raises the threshold instead.

    Columns: ``pair_id``, ``region_id``, ``region_lower``, ``region_upper``, ``region_count``, ``region_level``,
    ``axis``, ``seed_a``, ``seed_b`` (row positions in ``ds``), ``dist_a``, ``dist_b`` (distance to the face
    rectangle), ``source_a``, ``source_b`` (``"region"`` for a member of the region, ``"pool"`` for a FAISS top-up),
    ``coords_a``, ``coords_b``.

    Example:
        >>> from embedsdg_hf.space.regions import find_sparse_regions, fit_grid
        >>> ds = datasets.Dataset.from_dict({"coords": np.random.default_rng(0).normal(size=(2000, 2)).tolist()})
        >>> regions = find_sparse_regions(ds, fit_grid(ds, bins=20))
        >>> pairs = make_seed_pairs(ds, regions, n_pairs=50, seed=0)
        >>> len(pairs), pairs[0]["seed_a"], pairs[0]["seed_b"]
        (50, 1630, 724)
    """
    pairs, _ = _make_pairs(ds, regions, n_pairs, seed, column, max_pairs_per_region, side_choice)
    if len(pairs) < n_pairs:
        warnings.warn(
            _shortfall(n_pairs, len(pairs), len(regions), max_pairs_per_region)
            + " Or use make_budget_pairs, which raises the threshold.",
            UserWarning,
            stacklevel=2,
        )
    return pairs


def _shortfall(n_pairs: int, made: int, n_regions: int, cap: int | None) -> str:
    limit = f"at most max_pairs_per_region={cap} distinct pairs each" if cap else "no region gave another new pair"
    return (
        f"Asked for n_pairs={n_pairs} seed pairs but only {made} could be made from {n_regions} regions "
        f"({limit}). Raise max_pairs_per_region, or get more regions with a smaller window."
    )


def _make_pairs(
    ds: datasets.Dataset,
    regions: datasets.Dataset,
    n_pairs: int,
    seed: int,
    column: str,
    per_round: int,
    side_choice: str,
    *,
    rounds: int | None = 1,
    max_pairs_per_region: int | None = None,
) -> tuple[datasets.Dataset, int]:
    """The pairs, and how many regions were walked through.

    Round ``r`` walks every level, sparsest first, giving each region its passes ``r * per_round`` to
    ``(r + 1) * per_round - 1`` (never more than ``max_pairs_per_region`` in all); ``rounds=None`` repeats rounds
    until ``n_pairs`` are made or a round makes none.
    """
    _check_positive_int(n_pairs, "n_pairs", 1)
    _check_positive_int(per_round, "max_pairs_per_region", 1)
    _check_positive_int(seed, "seed", 0)
    _check_side_choice(side_choice)
    require_columns(regions, REGION_COLUMNS, what="regions dataset")
    if len(regions) == 0:
        raise ValueError(
            "The regions dataset is empty: no sparse regions to take seeds from. Fit the grid with a higher "
            "threshold or a smaller window."
        )
    require_columns(ds, [column])
    require_rows(ds, step="make_seed_pairs")
    coords = vector_matrix(ds, column)
    k = coords.shape[1]
    table = _read_regions(regions, k, len(ds))
    pool = _Pool(coords)
    n_regions = len(table.region_id)
    level_starts = np.flatnonzero(np.r_[True, np.diff(table.level) != 0, True])

    perms: dict[int, np.ndarray] = {}
    chosen: list[tuple[int, int, tuple[int, float, str], tuple[int, float, str]]] = []
    seen: set[tuple[int, int]] = set()
    r = 0
    while len(chosen) < n_pairs and (rounds is None or r < rounds):
        passes = range(r * per_round, (r + 1) * per_round)
        if max_pairs_per_region is not None:
            passes = range(passes.start, min(passes.stop, max_pairs_per_region))
        made_before = len(chosen)
        _walk(table, level_starts, passes, n_pairs, seed, side_choice, coords, pool, perms, chosen, seen)
        if len(chosen) == made_before:
            break
        r += 1
    logger.info("Made %d seed pairs from %d regions.", len(chosen), n_regions)
    return _pairs_dataset(chosen, table, coords), n_regions


def _walk(
    table: _Regions,
    level_starts: np.ndarray,
    passes: range,
    n_pairs: int,
    seed: int,
    side_choice: str,
    coords: np.ndarray,
    pool: _Pool,
    perms: dict[int, np.ndarray],
    chosen: list,
    seen: set[tuple[int, int]],
) -> None:
    """One round: every level in turn, pass by pass, region by region, adding new pairs to ``chosen``."""
    k = coords.shape[1]
    for first, stop in zip(level_starts[:-1], level_starts[1:], strict=True):
        for p in passes:
            start = int(first)
            while start < stop and len(chosen) < n_pairs:
                ranks = range(start, min(int(stop), start + n_pairs - len(chosen)))
                start = ranks.stop
                proposals = []
                for rank in ranks:
                    region_id = int(table.region_id[rank])
                    if rank not in perms:
                        perms[rank] = np.random.default_rng([seed, region_id]).permutation(k)
                    axis = int(perms[rank][p % k])
                    order_seed = [seed, region_id, 1] if side_choice == "random" else None
                    proposals.append((rank, axis, _sides(table, rank, axis, p // k, coords, order_seed)))
                pool.top_up([side.face for _, _, sides in proposals for side in sides if side.face.need > 0])
                for rank, axis, (low, high) in proposals:
                    a, b = low.pick(p // k), high.pick(p // k)
                    if a is None or b is None or a[0] == b[0] or (min(a[0], b[0]), max(a[0], b[0])) in seen:
                        continue
                    seen.add((min(a[0], b[0]), max(a[0], b[0])))
                    chosen.append((rank, axis, a, b))
            if len(chosen) >= n_pairs:
                break
        if len(chosen) >= n_pairs:
            break


@whole_dataset("it walks the sparse windows of all rows at once")
def make_budget_pairs(
    ds: datasets.Dataset,
    grid,
    *,
    n_pairs: int,
    seed: int = 0,
    column: str | None = None,
    max_pairs_per_region: int | None = None,
    side_choice: str = "random",
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Regions and exactly ``n_pairs`` seed pairs whenever the pool allows: the paper's budgets (§4.3).

    1. The sparse regions of ``grid`` (``1 <= count < T``) come first, each giving up to 4 pairs
       (``PAIRS_PER_ROUND``; fewer if ``max_pairs_per_region`` is lower), sparsest first.
    2. When they cannot give ``n_pairs``, the threshold is raised one count at a time and the next-sparsest
       windows give pairs too (``find_sparse_regions(..., min_regions=...)``; their ``level`` says how far the
       threshold was raised), until the budget is met or every non-empty window that passes the neighbour rule is
       in.
    3. If every such window has given its 4 pairs and the budget is still not met (a coarse grid and a large
       budget), further rounds go over all of them again, sparsest first, 4 more pairs each (taking the next
       candidates on each side), until the budget is met, a region reaches ``max_pairs_per_region`` (default: no
       limit), or a round makes no new pair. A ``UserWarning`` reports a budget that cannot be met.

    Returns ``(regions, pairs)``: every region that was walked (the ones at the end of the last level may have
    given no pair) and the pairs, as :func:`make_seed_pairs` makes them (``region_level`` says how far T was raised
    for each pair's region).

    Example:
        >>> from embedsdg_hf.space.regions import fit_grid
        >>> ds = datasets.Dataset.from_dict({"coords": np.random.default_rng(0).normal(size=(2000, 2)).tolist()})
        >>> regions, pairs = make_budget_pairs(ds, fit_grid(ds, bins=20), n_pairs=300, seed=0)
        >>> len(pairs), max(pairs["region_level"])  # 77 regions below T were not enough: T was raised once
        (300, 1)
    """
    from .regions import find_sparse_regions

    _check_positive_int(n_pairs, "n_pairs", 1)
    if max_pairs_per_region is not None:
        _check_positive_int(max_pairs_per_region, "max_pairs_per_region", 1)
    _check_side_choice(side_choice)
    column = column or grid.column
    per_round = min(PAIRS_PER_ROUND, max_pairs_per_region or PAIRS_PER_ROUND)
    min_regions = 0
    while True:
        regions = find_sparse_regions(ds, grid, column=column, seed=seed, min_regions=min_regions)
        if len(regions) == 0 and min_regions == 0:
            min_regions = math.ceil(n_pairs / per_round)
            continue
        if len(regions) == 0:
            raise ValueError(
                "No window of the grid holds a point and passes the neighbour rule: no region to take seeds from. "
                "Lower min_populated_neighbors or use a smaller window."
            )
        pairs, _ = _make_pairs(ds, regions, n_pairs, seed, column, per_round, side_choice)
        exhausted = len(regions) < min_regions
        if len(pairs) >= n_pairs or exhausted:
            break
        min_regions = len(regions) + math.ceil((n_pairs - len(pairs)) / per_round)
    if len(pairs) < n_pairs and (max_pairs_per_region is None or max_pairs_per_region > per_round):
        pairs, _ = _make_pairs(
            ds,
            regions,
            n_pairs,
            seed,
            column,
            per_round,
            side_choice,
            rounds=None,
            max_pairs_per_region=max_pairs_per_region,
        )
        logger.info(
            "Every window gave %d pairs; further rounds over all of them made %d pairs.", per_round, len(pairs)
        )
    if len(pairs) < n_pairs:
        warnings.warn(
            _shortfall(n_pairs, len(pairs), len(regions), max_pairs_per_region) + " Every non-empty window that "
            "passes the neighbour rule was used.",
            UserWarning,
            stacklevel=2,
        )
    levels = regions["level"]
    logger.info(
        "Budget %d: %d pairs from %d regions (threshold raised by %d level(s)).",
        n_pairs,
        len(pairs),
        len(regions),
        max(levels) if levels else 0,
    )
    return regions, pairs


def _pairs_dataset(chosen: list, table: _Regions, coords: np.ndarray) -> datasets.Dataset:
    k = coords.shape[1]
    ranks = np.asarray([c[0] for c in chosen], dtype=np.int64)
    seed_a = np.asarray([c[2][0] for c in chosen], dtype=np.int64)
    seed_b = np.asarray([c[3][0] for c in chosen], dtype=np.int64)

    columns = {
        "pair_id": pa.array(np.arange(len(chosen), dtype=np.int64)),
        "region_id": pa.array(table.region_id[ranks]),
        "region_lower": fixed_size_list(table.lower[ranks]),
        "region_upper": fixed_size_list(table.upper[ranks]),
        "region_count": pa.array(table.count[ranks]),
        "region_level": pa.array(table.level[ranks]),
        "axis": pa.array(np.asarray([c[1] for c in chosen], dtype=np.int64)),
        "seed_a": pa.array(seed_a),
        "seed_b": pa.array(seed_b),
        "dist_a": pa.array(np.asarray([c[2][1] for c in chosen], dtype=np.float64)),
        "dist_b": pa.array(np.asarray([c[3][1] for c in chosen], dtype=np.float64)),
        "source_a": pa.array([c[2][2] for c in chosen], pa.string()),
        "source_b": pa.array([c[3][2] for c in chosen], pa.string()),
        "coords_a": fixed_size_list(coords[seed_a]),
        "coords_b": fixed_size_list(coords[seed_b]),
    }
    return datasets.Dataset.from_dict(columns, features=pair_features(k))


_pair_features = pair_features  # the name other modules used before it was public
