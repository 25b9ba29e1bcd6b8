"""``fit_reducer`` / ``add_coords``: reduce pooled embeddings to K coordinates (METHOD.md §1, eq. 3).

A fitted :class:`Reducer` is kept with the run: it projects new vectors (interpolations, synthetic examples) into
the same space. PCA and TruncatedSVD are stored as plain arrays (``reducer.json`` + ``reducer.npz``); t-SNE uses
openTSNE and UMAP umap-learn (the optional extra ``embedsdg-hf[umap]``), both of which can place new points, and are
stored as a pickle (load only files you trust).

For t-SNE and UMAP, ``transform`` of a point the reducer was fitted on is *not* its fitted position (it is placed
again against the fitted map: on GSM8K, 16% of t-SNE points move by more than a grid window). So the reducer keeps
the fitted embedding with a key per fitted row, and :func:`add_coords` (:meth:`Reducer.project`) gives those rows
their fitted coordinates; only other vectors (interpolations, synthetic rows) go through ``transform``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..common.mapping import vector_matrix
from ..common.options import REDUCERS
from ..common.splits import map_batched, splitwise, whole_dataset
from ..common.validation import as_float_matrix, require_columns, require_rows

logger = logging.getLogger(__name__)

METHODS = REDUCERS
_NONLINEAR = ("tsne", "umap")
UMAP_INSTALL = 'pip install "embedsdg-hf[umap]"'


def row_keys(x: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of a float32 matrix (its bytes, hashed): how fitted rows are recognised again."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") for row in x),
        dtype=np.uint64,
        count=len(x),
    )


_FORMAT_VERSION = 1


@dataclass
class Reducer:
    """A fitted projection from the embedding space (N dims) to ``n_components`` coordinates.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"embedding": np.random.default_rng(0).normal(size=(40, 8)).tolist()})
        >>> reducer = fit_reducer(ds, method="pca", n_components=2, seed=0)
        >>> reducer.transform(ds["embedding"][:3]).shape
        (3, 2)
    """

    method: str
    n_components: int
    seed: int
    input_dim: int
    column: str = "embedding"
    n_fit: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    tsne: object | None = field(default=None, repr=False)
    umap: object | None = field(default=None, repr=False)

    @property
    def is_linear(self) -> bool:
        """True for PCA / SVD: then the projection of a midpoint is the midpoint of the projections."""
        return self.method in ("pca", "svd")

    def transform(self, vectors) -> np.ndarray:
        """Place vectors of shape (n, input_dim) at (n, n_components) float32 coordinates, as new points.

        For t-SNE / UMAP use :meth:`project` for rows the reducer may have been fitted on.
        """
        x = as_float_matrix(vectors, column=self.column, expected_dim=self.input_dim)
        if self.method == "pca":
            out = (x - self.arrays["mean"]) @ self.arrays["components"].T
        elif self.method == "svd":
            out = x @ self.arrays["components"].T
        elif self.method == "tsne":
            out = np.asarray(self.tsne.transform(x.astype(np.float64)))
        else:
            out = np.asarray(self.umap.transform(x))
        return out.astype(np.float32)

    def project(self, vectors) -> np.ndarray:
        """Coordinates of ``vectors``: the fitted position for a row the reducer was fitted on, else ``transform``.

        PCA / SVD: the same as :meth:`transform`. t-SNE / UMAP: rows found among the fitted rows (same float32
        vector) keep their fitted coordinates, so the map that is gridded is the map that was fitted.

        Example:
            >>> from datasets import Dataset
            >>> ds = Dataset.from_dict({"embedding": np.random.default_rng(0).normal(size=(40, 8)).tolist()})
            >>> reducer = fit_reducer(ds, method="svd", n_components=2)
            >>> np.allclose(reducer.project(ds["embedding"]), reducer.transform(ds["embedding"]))  # linear: the same
            True
        """
        x = as_float_matrix(vectors, column=self.column, expected_dim=self.input_dim)
        if self.is_linear or "fit_keys" not in self.arrays or len(x) == 0:
            return self.transform(x)
        keys, first = self.arrays["fit_keys"], self.arrays["fit_first"]
        wanted = row_keys(x)
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        known = keys[at] == wanted
        out = np.empty((len(x), self.n_components), dtype=np.float32)
        out[known] = self.arrays["fit_coords"][first[at[known]]]
        if not known.all():
            out[~known] = self.transform(x[~known])
        return out

    def axis_labels(self) -> list[str]:
        """Names of the output axes for figures: the reducer, and for PCA / SVD the variance each axis explains.

        Example:
            >>> from datasets import Dataset
            >>> ds = Dataset.from_dict({"embedding": np.random.default_rng(0).normal(size=(40, 8)).tolist()})
            >>> fit_reducer(ds, method="pca").axis_labels()
            ['PCA 1 (...% of variance)', 'PCA 2 (...% of variance)']
        """
        name = {"tsne": "t-SNE", "umap": "UMAP"}.get(self.method, self.method.upper())
        shares = self.arrays.get("explained_variance_ratio")
        if shares is None:
            return [f"{name} {i + 1}" for i in range(self.n_components)]
        return [f"{name} {i + 1} ({100 * float(share):.1f}% of variance)" for i, share in enumerate(shares)]

    @property
    def fitted_coords(self) -> np.ndarray | None:
        """The fitted embedding of the rows the reducer was fitted on (t-SNE / UMAP), in fit order."""
        return self.arrays.get("fit_coords")

    def _remember_fit(self, x: np.ndarray, coords: np.ndarray) -> None:
        keys = row_keys(x)
        unique, first = np.unique(keys, return_index=True)  # duplicate vectors: the first fitted row's position
        self.arrays = {"fit_keys": unique, "fit_first": first.astype(np.int64)}
        self.arrays["fit_coords"] = coords.astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        """Write ``reducer.json`` (+ ``reducer.npz`` or ``reducer_tsne.pkl``) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {k: getattr(self, k) for k in ("method", "n_components", "seed", "input_dim", "column", "n_fit")}
        (directory / "reducer.json").write_text(json.dumps({"format_version": _FORMAT_VERSION, **meta}, indent=2))
        estimator = self.tsne if self.method == "tsne" else self.umap
        if estimator is not None:
            with open(directory / f"reducer_{self.method}.pkl", "wb") as handle:
                pickle.dump(estimator, handle)
        np.savez(directory / "reducer.npz", **self.arrays)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Reducer:
        """Load a reducer written by :meth:`save`."""
        directory = Path(directory)
        meta_file = directory / "reducer.json"
        if not meta_file.exists():
            raise FileNotFoundError(
                f"No reducer.json in {str(directory)!r}: expected a folder written by Reducer.save."
            )
        meta = json.loads(meta_file.read_text())
        if meta.pop("format_version", None) != _FORMAT_VERSION:
            raise ValueError(f"{meta_file} has an unsupported format_version; expected {_FORMAT_VERSION}.")
        reducer = cls(**meta)
        if reducer.method in _NONLINEAR:
            if reducer.method == "umap":
                _import_umap()
            with open(directory / f"reducer_{reducer.method}.pkl", "rb") as handle:
                setattr(reducer, reducer.method, pickle.load(handle))
        if (directory / "reducer.npz").exists() or reducer.is_linear:  # older t-SNE dirs have no npz
            with np.load(directory / "reducer.npz") as data:
                reducer.arrays = {k: data[k] for k in data.files}
        return reducer


@whole_dataset("it fits one reduction on all rows at once")
def fit_reducer(
    ds,
    *,
    method: str = "pca",
    n_components: int = 2,
    seed: int = 0,
    column: str = "embedding",
    max_samples: int | None = None,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
) -> Reducer:
    """Fit a dimensionality reducer on the ``column`` vectors of ``ds``.

    Args:
        method: ``"pca"`` (default), ``"svd"`` (TruncatedSVD, no centring), ``"tsne"`` (openTSNE) or ``"umap"``
            (umap-learn, ``pip install "embedsdg-hf[umap]"``). t-SNE and UMAP keep the fitted coordinates of the rows
            they were fitted on (see :meth:`Reducer.project`).
        n_components: output dimensions (the grid step needs 2 or 3).
        seed: the only source of randomness (sampling, SVD solvers, t-SNE).
        max_samples: fit on a seeded random sample of at most this many rows (then project all with add_coords).
        perplexity: t-SNE perplexity (lowered automatically for tiny datasets).
        n_neighbors: UMAP neighbours (lowered automatically for tiny datasets).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; choose one of {list(METHODS)}.")
    require_rows(ds, step="fit_reducer")
    require_columns(ds, [column])
    x = vector_matrix(ds, column)
    n, dim = x.shape
    if not isinstance(n_components, int) or not 1 <= n_components < dim:
        raise ValueError(f"n_components must be an int in [1, {dim - 1}] for {dim}-dim vectors, got {n_components!r}.")
    if max_samples is not None and n > max_samples:
        x = x[np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))]
        n = max_samples
    if n <= n_components:
        raise ValueError(f"fit_reducer needs more rows than n_components={n_components}; the dataset has {n}.")
    if np.ptp(x, axis=0).max() == 0:
        raise ValueError(f"All {n} vectors in column {column!r} are identical: there is no variance to reduce.")

    reducer = Reducer(method, n_components, seed, dim, column, n_fit=n)
    if method == "pca":
        from sklearn.decomposition import PCA

        fitted = PCA(n_components=n_components, random_state=seed).fit(x)
        reducer.arrays = {"mean": fitted.mean_.astype(np.float32), "components": fitted.components_.astype(np.float32)}
        reducer.arrays["explained_variance_ratio"] = fitted.explained_variance_ratio_.astype(np.float64)
    elif method == "svd":
        from sklearn.decomposition import TruncatedSVD

        fitted = TruncatedSVD(n_components=n_components, random_state=seed).fit(x)
        reducer.arrays = {"components": fitted.components_.astype(np.float32)}
        reducer.arrays["explained_variance_ratio"] = fitted.explained_variance_ratio_.astype(np.float64)
    elif method == "tsne":
        reducer.tsne = _fit_tsne(x, n_components, seed, perplexity)
        reducer._remember_fit(x, np.asarray(reducer.tsne))
    else:
        reducer.umap = _fit_umap(x, n_components, seed, n_neighbors)
        reducer._remember_fit(x, np.asarray(reducer.umap.embedding_))
    return reducer


def _import_umap():
    try:
        import umap
    except ImportError as err:
        raise ImportError(f"The UMAP reducer needs umap-learn, which is not installed: {UMAP_INSTALL}") from err
    return umap


def _fit_umap(x: np.ndarray, n_components: int, seed: int, n_neighbors: int):
    umap = _import_umap()
    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    # random_state makes UMAP deterministic (and single-threaded); transform_seed seeds placing new points
    return umap.UMAP(
        n_components=n_components, n_neighbors=n_neighbors, random_state=seed, transform_seed=seed, n_jobs=1
    ).fit(x)


def _fit_tsne(x: np.ndarray, n_components: int, seed: int, perplexity: float):
    from openTSNE import TSNE

    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    method = "fft" if n_components <= 2 else "bh"  # openTSNE's FFT gradients support at most 2 dimensions
    tsne = TSNE(
        n_components=n_components, perplexity=perplexity, random_state=seed, negative_gradient_method=method, n_jobs=1
    )
    embedding = tsne.fit(x.astype(np.float64))
    # openTSNE's transform() first centres the fitted embedding on its bounding box, in place, and places new points
    # in that frame; do it now so the fitted coordinates we keep and every later placement share one frame.
    embedding -= (np.max(embedding, axis=0) + np.min(embedding, axis=0)) / 2
    return embedding


class _Project:
    """The ``Dataset.map`` function of :func:`add_coords` (state: the fitted reducer and column names)."""

    def __init__(self, reducer: Reducer, column: str, output_column: str):
        self.reducer, self.column, self.output_column = reducer, column, output_column

    def __call__(self, batch: dict[str, list]) -> dict[str, np.ndarray]:
        return {self.output_column: self.reducer.project(batch[self.column])}


@splitwise()
def add_coords(ds, reducer: Reducer, *, column: str | None = None, output_column: str = "coords", **map_kwargs):
    """Add the reduced coordinates of every row as a float32 ``coords`` column of length ``n_components``.

    Rows a t-SNE / UMAP reducer was fitted on get their fitted coordinates; other rows are placed with ``transform``.
    ``ds`` may be a ``Dataset``, an ``IterableDataset`` (projected as rows are read) or a dict of them (every split).

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"embedding": np.random.default_rng(0).normal(size=(40, 8)).tolist()})
        >>> ds = add_coords(ds, fit_reducer(ds, method="pca", n_components=2))
        >>> ds.features["coords"]
        List(Value('float32'), length=2)
    """
    from datasets import List, Value

    column = column or reducer.column
    require_rows(ds, step="add_coords")
    require_columns(ds, [column])
    map_kwargs.setdefault("batch_size", 10_000)
    return map_batched(
        ds,
        _Project(reducer, column, output_column),
        new_features={output_column: List(Value("float32"), length=reducer.n_components)},
        step="add_coords",
        numpy_columns=[column],
        desc=f"Projecting with {reducer.method.upper()} to {reducer.n_components}-D",
        **map_kwargs,
    )
