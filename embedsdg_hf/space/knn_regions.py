"""Sparse regions by k-NN density in more dimensions than the map (the ``knn`` selector; README "Choosing seeds").

The paper's grid (``space/regions.py``) counts points in windows of the 2-D / 3-D map. On a pool with planted rare
problem families it picks seeds from the rare families only ~2x as often as uniform sampling in 2-D and no better
than uniform in 3-D (README "Targeting testbed"): two or three dimensions keep too little of the structure that
makes a family rare. This selector measures sparsity where the structure is, and keeps the map for the figures:

1. *Density space.* The pooled embeddings, PCA-reduced to ``density_dims`` dimensions (``None``: all of them,
   centred and scaled to unit length, i.e. cosine geometry).
2. *Sparsity.* Each point's distance to its ``k``-th nearest neighbour there (FAISS ``IndexFlatL2``, exact); the
   sparsest points first, ties broken with ``seed``.
3. *Regions.* Walking that order, a point becomes a region *centre* unless it is among the ``suppress`` nearest
   neighbours of an earlier centre, or an earlier centre is among its own ``suppress`` nearest (non-maximum
   suppression; ``0`` turns it off). The region is the centre and its ``hood_k`` nearest neighbours; ``lower`` /
   ``upper`` are their bounding box in the map coordinates (``coords``), so interpolation's in-region test and the
   figures work unchanged.
4. *Pairs* (:func:`make_knn_pairs`, METHOD.md §3 "opposite sides"): the region's local principal axis (of its
   members in density space); seed ``a`` and ``b`` are on opposite sides of the centre along it: the nearest member
   on each side (``pairing="near"``) or the two extreme members (``pairing="extreme"``). A side with no member falls
   back to the centre itself. The pairs dataset has the columns of :func:`~embedsdg_hf.make_seed_pairs`, with
   ``axis`` the map axis along which the two seeds differ most (``coords_a[axis] < coords_b[axis]``) and
   ``dist_a`` / ``dist_b`` their distance to the centre in density space.

Nothing here knows about problem families or any label: only the embedding and map columns are read.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa

from ..common.mapping import fixed_size_list, vector_matrix
from ..common.options import KNN_PAIRINGS
from ..common.validation import is_int, require_columns, require_rows, template_fields
from .neighbors import unit_rows
from .pairs import pair_features
from .regions import regions_dataset

logger = logging.getLogger(__name__)

__all__ = [
    "PAIRINGS",
    "DensitySpace",
    "check_knn_settings",
    "find_knn_regions",
    "fit_density_space",
    "knn_neighbours",
    "knn_seed_pairs",
    "make_knn_pairs",
    "select_knn_pairs",
    "selection_template",
]

PAIRINGS = KNN_PAIRINGS
#: The k-NN selector's own region columns (after the common ones of ``space.regions.region_features``).
KNN_REGION_FEATURES = {
    "centre": datasets.Value("int64"),
    "knn_distance": datasets.Value("float64"),
    "k": datasets.Value("int64"),
    "density_dims": datasets.Value("int64"),
    "seed": datasets.Value("int64"),
}


def _check_int(value: object, name: str, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class DensitySpace:
    """The selector's density space, fitted on the pool: :meth:`transform` places any vectors there.

    ``components`` is ``None`` for the full space (rows minus the pool mean ``center``, scaled to unit length: cosine
    geometry), else the PCA fitted on the pool (``center`` its mean). New points are centred on the *pool's* mean and
    projected with the *pool's* PCA, so coverage (``analysis/knn_coverage.py``) measures synthetic rows in exactly the
    space the regions were found in. Refitting on the same pool gives the same space (PCA with ``seed``).

    Example:
        >>> pool_vectors = np.random.default_rng(0).normal(size=(100, 16)).astype("float32")
        >>> space = fit_density_space(pool_vectors, None)
        >>> space.transform(pool_vectors[:12] + 0.1).shape
        (12, 16)
        >>> fit_density_space(pool_vectors, 4).transform(pool_vectors[:12]).shape  # in the pool's 4 PCA dims
        (12, 4)
    """

    center: np.ndarray
    components: np.ndarray | None = None

    @property
    def dims(self) -> int:
        """Dimensions of the density space."""
        return len(self.center) if self.components is None else len(self.components)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` (n, d) in the density space: float32, C-contiguous (as FAISS wants)."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.center):
            raise ValueError(
                f"The density space was fitted on {len(self.center)}-D vectors; got shape {x.shape}: not the same "
                "embedding (student, weights) as the pool's."
            )
        if self.components is None:
            return unit_rows(x, self.center)
        return np.ascontiguousarray((x - self.center) @ self.components.T, dtype=np.float32)


def fit_density_space(vectors: np.ndarray, density_dims: int | None, *, seed: int = 0) -> DensitySpace:
    """Fit the space sparsity is measured in on the pool's ``vectors``: PCA to ``density_dims`` dims, or (``None``)
    the pool mean, for centred unit vectors."""
    x = np.asarray(vectors, dtype=np.float32)
    if density_dims is None:
        return DensitySpace(center=x.mean(axis=0))
    from sklearn.decomposition import PCA

    dims = min(int(density_dims), x.shape[1], x.shape[0] - 1)
    pca = PCA(n_components=dims, random_state=seed).fit(x)
    return DensitySpace(center=pca.mean_.astype(np.float32), components=pca.components_.astype(np.float32))


def density_space(vectors: np.ndarray, density_dims: int | None, *, seed: int = 0) -> np.ndarray:
    """The pool's own points in its density space (:func:`fit_density_space` then :meth:`DensitySpace.transform`)."""
    return fit_density_space(vectors, density_dims, seed=seed).transform(vectors)


def selection_template(text_template: str, knn_text: str) -> str:
    """The text the selector embeds for ``knn_text``: ``"input"``, the template's first column alone (the question);
    ``"full"``, the template itself (the training text).

    Example:
        >>> selection_template("{question}\\n{answer}", "input")
        '{question}'
    """
    if knn_text == "full":
        return text_template
    if knn_text != "input":
        raise ValueError(f"knn_text={knn_text!r} is not supported; choose 'input' or 'full'.")
    fields = template_fields(text_template)
    if not fields:
        raise ValueError(f"text_template {text_template!r} names no column, so knn_text='input' has no question.")
    return f"{{{fields[0]}}}"


def _knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row among the others (distances, row positions), nearest first."""
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    sq, idx = index.search(x, k + 1)
    own = idx == np.arange(len(x))[:, None]
    # drop the row itself (or, for exact duplicates where it is not listed, the farthest of the k + 1)
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(x)), drop] = False
    dist = np.sqrt(np.maximum(sq[keep].reshape(len(x), k), 0.0))
    return dist.astype(np.float64), idx[keep].reshape(len(x), k).astype(np.int64)


def find_knn_regions(
    ds: datasets.Dataset,
    *,
    n_regions: int | None = None,
    k: int = 20,
    density_dims: int | None = None,
    suppress: int = 0,
    hood_k: int = 5,
    seed: int = 0,
    column: str = "embedding",
    coords_column: str = "coords",
) -> datasets.Dataset:
    """Sparse regions of ``ds`` by k-NN distance in a ``density_dims``-D PCA space, sparsest first (see module doc).

    Args:
        n_regions: the most regions to return (``None``: every centre the walk accepts).
        k: the neighbour whose distance measures sparsity.
        density_dims: PCA dimensions of the density space; ``None`` for the full space in cosine geometry.
        suppress: non-maximum suppression radius in neighbours (0: none).
        hood_k: neighbours of the centre that form the region (and its seed candidates).
        seed: breaks ties in the sparsity order.
        column / coords_column: the pooled embeddings and the map coordinates (for the boxes).

    Columns: ``region_id`` (rank), ``lower`` / ``upper`` (box of the members in map coords), ``count`` (members),
    ``members`` (centre first, then its neighbours nearest first), ``centre`` (its pool row), ``knn_distance`` (the
    centre's distance to its ``k``-th nearest neighbour: its sparsity, and the region's radius for coverage), and the
    density space that distance was measured in: ``k``, ``density_dims`` (null: the full space) and ``seed``.

    Example:
        >>> from datasets import Dataset
        >>> x = np.random.default_rng(0).normal(size=(200, 16)).astype("float32")
        >>> pool = Dataset.from_dict({"embedding": x.tolist(), "coords": x[:, :2].tolist()})
        >>> regions = find_knn_regions(pool, n_regions=10, k=5)
        >>> pairs = make_knn_pairs(pool, regions, n_pairs=10)
        >>> len(regions), len(pairs), regions[0]["knn_distance"] >= regions[-1]["knn_distance"]
        (10, 10, True)
    """
    if n_regions is not None:
        n_regions = _check_int(n_regions, "n_regions", 1)
    x, coords, args = _prepare(ds, k, density_dims, suppress, hood_k, seed, column, coords_column)
    return _find_regions(x, coords, n_regions=n_regions, **args)


def _prepare(ds, k, density_dims, suppress, hood_k, seed, column, coords_column):
    """Checked arguments, the density space and the map coordinates of ``ds``."""
    require_columns(ds, [column, coords_column])
    require_rows(ds, step="the knn selector")
    args = check_knn_settings(len(ds), k=k, density_dims=density_dims, suppress=suppress, hood_k=hood_k, seed=seed)
    coords = vector_matrix(ds, coords_column)
    x = density_space(vector_matrix(ds, column), args["density_dims"], seed=args["seed"])
    return x, coords, args


def check_knn_settings(
    n_rows: int, *, k: int, density_dims: int | None, suppress: int, hood_k: int, seed: int
) -> dict[str, int | None]:
    """The selector's settings checked (one line naming the bad one) for a pool of ``n_rows``.

    Example:
        >>> check_knn_settings(100, k=20, density_dims=None, suppress=0, hood_k=5, seed=0)["k"]
        20
    """
    args = {
        "k": _check_int(k, "k", 1),
        "suppress": _check_int(suppress, "suppress", 0),
        "hood_k": _check_int(hood_k, "hood_k", 1),
        "seed": _check_int(seed, "seed", 0),
    }
    args["density_dims"] = None if density_dims is None else _check_int(density_dims, "density_dims", 1)
    reach = max(args["k"], args["suppress"], args["hood_k"])
    if n_rows <= reach:
        raise ValueError(f"The knn selector needs more rows than max(k, suppress, hood_k)={reach}; ds has {n_rows}.")
    return args


def _find_regions(
    x: np.ndarray,
    coords: np.ndarray,
    *,
    n_regions: int | None,
    k: int,
    suppress: int,
    hood_k: int,
    seed: int,
    density_dims: int | None,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> datasets.Dataset:
    n = len(x)
    dist, idx = _knn(x, max(k, suppress, hood_k)) if neighbours is None else neighbours
    score = dist[:, k - 1]
    order = np.lexsort((np.random.default_rng(seed).random(n), -score))
    if suppress == 0:  # every point is a centre in turn
        centres = order[:n_regions]
    else:
        blocked = np.zeros(n, dtype=bool)
        is_centre = np.zeros(n, dtype=bool)
        centres = []
        for c in order:
            if n_regions is not None and len(centres) >= n_regions:
                break
            if blocked[c] or is_centre[idx[c, :suppress]].any():
                continue
            centres.append(c)
            is_centre[c] = True
            blocked[idx[c, :suppress]] = True
    centres = np.asarray(centres, dtype=np.int64)
    members = np.concatenate([centres[:, None], idx[centres, :hood_k]], axis=1)
    boxes = coords[members]
    columns = {
        "region_id": pa.array(np.arange(len(centres), dtype=np.int64)),
        "lower": fixed_size_list(boxes.min(axis=1).astype(np.float64)),
        "upper": fixed_size_list(boxes.max(axis=1).astype(np.float64)),
        "count": pa.array(np.full(len(centres), hood_k + 1, dtype=np.int64)),
        "members": pa.array(members.tolist(), pa.list_(pa.int64())),
        "centre": pa.array(centres),
        "knn_distance": pa.array(score[centres]),
        "k": pa.array(np.full(len(centres), k, dtype=np.int64)),
        "density_dims": pa.array([density_dims] * len(centres), pa.int64()),
        "seed": pa.array(np.full(len(centres), seed, dtype=np.int64)),
    }
    logger.info("k-NN regions: %d centres (k=%d, %d-D density space).", len(centres), k, x.shape[1])
    return regions_dataset(columns, k=coords.shape[1], extra=KNN_REGION_FEATURES)


def make_knn_pairs(
    ds: datasets.Dataset,
    regions: datasets.Dataset,
    *,
    n_pairs: int,
    pairing: str = "near",
    density_dims: int | None = None,
    seed: int = 0,
    column: str = "embedding",
    coords_column: str = "coords",
) -> datasets.Dataset:
    """One seed pair per k-NN region (sparsest first) until ``n_pairs``; same columns as ``make_seed_pairs``.

    ``density_dims`` and ``seed`` must be those :func:`find_knn_regions` used (the local axis is taken in the same
    space). A region whose pair repeats an earlier one is skipped; fewer than ``n_pairs`` pairs warn.

    Example:
        >>> from datasets import Dataset
        >>> x = np.random.default_rng(0).normal(size=(200, 16)).astype("float32")
        >>> pool = Dataset.from_dict({"embedding": x.tolist(), "coords": x[:, :2].tolist()})
        >>> pairs = make_knn_pairs(pool, find_knn_regions(pool, n_regions=6, k=5), n_pairs=6)
        >>> len(pairs), all(a != b for a, b in zip(pairs["seed_a"], pairs["seed_b"]))
        (6, True)
    """
    n_pairs = _check_int(n_pairs, "n_pairs", 1)
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing={pairing!r} is not supported; choose one of {list(PAIRINGS)}.")
    require_columns(regions, ["region_id", "lower", "upper", "count", "members", "centre"], what="regions dataset")
    require_columns(ds, [column, coords_column])
    require_rows(ds, step="make_knn_pairs")
    if len(regions) == 0:
        raise ValueError("The regions dataset is empty: no k-NN regions to take seeds from.")
    coords = vector_matrix(ds, coords_column)
    x = density_space(vector_matrix(ds, column), density_dims, seed=seed)
    return _make_pairs(x, coords, regions, n_pairs=n_pairs, pairing=pairing)


def _make_pairs(
    x: np.ndarray, coords: np.ndarray, regions: datasets.Dataset, *, n_pairs: int, pairing: str
) -> datasets.Dataset:
    table = regions.select_columns(["region_id", "lower", "upper", "count", "members", "centre"]).to_dict()
    chosen, seen = [], set()
    for rank, (members, centre) in enumerate(zip(table["members"], table["centre"])):
        if len(chosen) >= n_pairs:
            break
        members = np.asarray(members, dtype=np.int64)
        a, b = _opposite_sides(x, members, int(centre), pairing)
        key = (min(a, b), max(a, b))
        if a == b or key in seen:
            continue
        seen.add(key)
        axis = int(np.argmax(np.abs(coords[b] - coords[a])))
        if coords[a, axis] > coords[b, axis]:
            a, b = b, a
        dist_a, dist_b = (float(np.linalg.norm(x[row] - x[centre])) for row in (a, b))
        chosen.append((rank, axis, a, b, dist_a, dist_b))
    if len(chosen) < n_pairs:
        warnings.warn(
            f"Asked for n_pairs={n_pairs} seed pairs but only {len(chosen)} could be made from {len(regions)} k-NN "
            "regions; ask find_knn_regions for more regions (n_regions) or lower suppress.",
            UserWarning,
            stacklevel=2,
        )
    ranks = np.asarray([c[0] for c in chosen], dtype=np.int64)
    seed_a = np.asarray([c[2] for c in chosen], dtype=np.int64)
    seed_b = np.asarray([c[3] for c in chosen], dtype=np.int64)
    dims = coords.shape[1]
    columns = {
        "pair_id": pa.array(np.arange(len(chosen), dtype=np.int64)),
        "region_id": pa.array(np.asarray(table["region_id"], dtype=np.int64)[ranks]),
        "region_lower": fixed_size_list(np.asarray(table["lower"], dtype=np.float64).reshape(-1, dims)[ranks]),
        "region_upper": fixed_size_list(np.asarray(table["upper"], dtype=np.float64).reshape(-1, dims)[ranks]),
        "region_count": pa.array(np.asarray(table["count"], dtype=np.int64)[ranks]),
        "region_level": pa.array(np.zeros(len(chosen), dtype=np.int64)),  # no threshold to raise: all level 0
        "axis": pa.array(np.asarray([c[1] for c in chosen], dtype=np.int64)),
        "seed_a": pa.array(seed_a),
        "seed_b": pa.array(seed_b),
        "dist_a": pa.array(np.asarray([c[4] for c in chosen], dtype=np.float64)),
        "dist_b": pa.array(np.asarray([c[5] for c in chosen], dtype=np.float64)),
        "source_a": pa.array(["region"] * len(chosen), pa.string()),
        "source_b": pa.array(["region"] * len(chosen), pa.string()),
        "coords_a": fixed_size_list(coords[seed_a].reshape(-1, dims)),
        "coords_b": fixed_size_list(coords[seed_b].reshape(-1, dims)),
    }
    logger.info("Made %d k-NN seed pairs (%s).", len(chosen), pairing)
    return datasets.Dataset.from_dict(columns, features=pair_features(dims))


def _opposite_sides(x: np.ndarray, members: np.ndarray, centre: int, pairing: str) -> tuple[int, int]:
    """Two members on opposite sides of ``centre`` along the members' principal axis (density space); when every
    member sits where the centre is (a tight kind whose texts are identical in the view), the centre and its nearest
    other member: a region of one point has no sides, and is still a region."""
    points = x[members].astype(np.float64)
    centred = points - points.mean(axis=0)
    _, vecs = np.linalg.eigh(centred @ centred.T)  # the top eigenvector of the small Gram matrix gives the axis
    axis = centred.T @ vecs[:, -1]
    axis /= np.linalg.norm(axis) + 1e-12
    proj = (points - x[centre]) @ axis
    if pairing == "extreme":
        return int(members[np.argmin(proj)]), int(members[np.argmax(proj)])
    low, high = np.flatnonzero(proj < 0), np.flatnonzero(proj > 0)
    if not len(low) and not len(high):  # every member where the centre is (texts identical in this view)
        others = members[members != centre]  # nearest first: any two rows are two sides of a point
        return int(centre), int(others[0]) if len(others) else int(centre)
    a = members[low[np.argmax(proj[low])]] if len(low) else centre
    b = members[high[np.argmin(proj[high])]] if len(high) else centre
    return int(a), int(b)


def knn_seed_pairs(
    ds: datasets.Dataset,
    *,
    n_pairs: int,
    k: int = 20,
    density_dims: int | None = None,
    suppress: int = 0,
    hood_k: int = 5,
    pairing: str = "near",
    seed: int = 0,
    column: str = "embedding",
    coords_column: str = "coords",
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The ``knn`` selector end to end: ``(regions, pairs)``, the regions being those the pairs came from.

    Same as :func:`find_knn_regions` then :func:`make_knn_pairs`, with the density space computed once and as many
    regions walked as ``n_pairs`` needs.

    Example:
        >>> from datasets import Dataset
        >>> x = np.random.default_rng(0).normal(size=(200, 16)).astype("float32")
        >>> pool = Dataset.from_dict({"embedding": x.tolist(), "coords": x[:, :2].tolist()})
        >>> regions, pairs = knn_seed_pairs(pool, n_pairs=8, k=5)
        >>> len(pairs), set(pairs["region_id"]) <= set(regions["region_id"])
        (8, True)
    """
    n_pairs = _check_int(n_pairs, "n_pairs", 1)
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing={pairing!r} is not supported; choose one of {list(PAIRINGS)}.")
    x, coords, args = _prepare(ds, k, density_dims, suppress, hood_k, seed, column, coords_column)
    return select_knn_pairs(x, coords, n_pairs=n_pairs, pairing=pairing, **args)


def knn_neighbours(x: np.ndarray, *, k: int, suppress: int = 0, hood_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Every row's nearest neighbours in the density space ``x`` (distances, rows; as many as the selector reads):
    column ``k - 1`` of the distances is each point's sparsity score.

    Example:
        >>> import numpy as np
        >>> dist, idx = knn_neighbours(np.eye(4, dtype=np.float32), k=2)
        >>> dist.shape, idx.shape
        ((4, 5), (4, 5))
    """
    return _knn(x, max(k, suppress, hood_k))


def select_knn_pairs(
    x: np.ndarray,
    coords: np.ndarray,
    *,
    n_pairs: int,
    pairing: str = "near",
    k: int = 20,
    density_dims: int | None = None,
    suppress: int = 0,
    hood_k: int = 5,
    seed: int = 0,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """:func:`knn_seed_pairs` on the pool's points already in the density space (``x``) and on the map
    (``coords``); ``neighbours`` (:func:`knn_neighbours`) when they are known. ``density_dims`` / ``seed`` are
    recorded in the regions dataset."""
    regions = _find_regions(
        x,
        coords,
        n_regions=None,
        k=k,
        suppress=suppress,
        hood_k=hood_k,
        seed=seed,
        density_dims=density_dims,
        neighbours=neighbours,
    )
    pairs = _make_pairs(x, coords, regions, n_pairs=n_pairs, pairing=pairing)
    used = np.unique(np.asarray(pairs["region_id"], dtype=np.int64))
    return regions.select(used.tolist()), pairs
