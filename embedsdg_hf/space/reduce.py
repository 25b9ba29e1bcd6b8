"""``fit_reducer`` / ``add_coords``: reduce pooled embeddings to K coordinates (METHOD.md §1, eq. 3).

A fitted :class:`Reducer` is kept with the run: it projects new vectors (interpolations, synthetic examples) into
the same space. PCA and TruncatedSVD are stored as plain arrays (``reducer.json`` + ``reducer.npz``); t-SNE uses
openTSNE, whose embedding can place new points, and is stored as a pickle (load only files you trust).
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..common.mapping import vector_matrix
from ..common.splits import map_batched, splitwise, whole_dataset
from ..common.validation import as_float_matrix, require_columns, require_rows

logger = logging.getLogger(__name__)

METHODS = ("pca", "svd", "tsne")
_FORMAT_VERSION = 1


@dataclass
class Reducer:
    """A fitted projection from the embedding space (N dims) to ``n_components`` coordinates.

    Example:
        >>> reducer = fit_reducer(ds, method="pca", n_components=2, seed=0)  # doctest: +SKIP
        >>> reducer.transform(ds["embedding"][:3]).shape  # doctest: +SKIP
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

    @property
    def is_linear(self) -> bool:
        """True for PCA / SVD: then the projection of a midpoint is the midpoint of the projections."""
        return self.method in ("pca", "svd")

    def transform(self, vectors) -> np.ndarray:
        """Project vectors of shape (n, input_dim) to (n, n_components) float32 coordinates."""
        x = as_float_matrix(vectors, column=self.column, expected_dim=self.input_dim)
        if self.method == "pca":
            out = (x - self.arrays["mean"]) @ self.arrays["components"].T
        elif self.method == "svd":
            out = x @ self.arrays["components"].T
        else:
            out = np.asarray(self.tsne.transform(x.astype(np.float64)))
        return out.astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        """Write ``reducer.json`` (+ ``reducer.npz`` or ``reducer_tsne.pkl``) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {k: getattr(self, k) for k in ("method", "n_components", "seed", "input_dim", "column", "n_fit")}
        (directory / "reducer.json").write_text(json.dumps({"format_version": _FORMAT_VERSION, **meta}, indent=2))
        if self.tsne is not None:
            with open(directory / "reducer_tsne.pkl", "wb") as handle:
                pickle.dump(self.tsne, handle)
        else:
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
        if reducer.method == "tsne":
            with open(directory / "reducer_tsne.pkl", "rb") as handle:
                reducer.tsne = pickle.load(handle)
        else:
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
) -> Reducer:
    """Fit a dimensionality reducer on the ``column`` vectors of ``ds``.

    Args:
        method: ``"pca"`` (default), ``"svd"`` (TruncatedSVD, no centring) or ``"tsne"`` (openTSNE).
        n_components: output dimensions (the grid step needs 2 or 3).
        seed: the only source of randomness (sampling, SVD solvers, t-SNE).
        max_samples: fit on a seeded random sample of at most this many rows (then project all with add_coords).
        perplexity: t-SNE perplexity (lowered automatically for tiny datasets).
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
    elif method == "svd":
        from sklearn.decomposition import TruncatedSVD

        fitted = TruncatedSVD(n_components=n_components, random_state=seed).fit(x)
        reducer.arrays = {"components": fitted.components_.astype(np.float32)}
    else:
        reducer.tsne = _fit_tsne(x, n_components, seed, perplexity)
    return reducer


def _fit_tsne(x: np.ndarray, n_components: int, seed: int, perplexity: float):
    from openTSNE import TSNE

    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    method = "fft" if n_components <= 2 else "bh"  # openTSNE's FFT gradients support at most 2 dimensions
    tsne = TSNE(
        n_components=n_components, perplexity=perplexity, random_state=seed, negative_gradient_method=method, n_jobs=1
    )
    return tsne.fit(x.astype(np.float64))


class _Project:
    """The ``Dataset.map`` function of :func:`add_coords` (state: the fitted reducer and column names)."""

    def __init__(self, reducer: Reducer, column: str, output_column: str):
        self.reducer, self.column, self.output_column = reducer, column, output_column

    def __call__(self, batch: dict[str, list]) -> dict[str, np.ndarray]:
        return {self.output_column: self.reducer.transform(batch[self.column])}


@splitwise()
def add_coords(ds, reducer: Reducer, *, column: str | None = None, output_column: str = "coords", **map_kwargs):
    """Add the reduced coordinates of every row as a float32 ``coords`` column of length ``n_components``.

    ``ds`` may be a ``Dataset``, an ``IterableDataset`` (projected as rows are read) or a dict of them (every split).

    Example:
        >>> ds = add_coords(ds, fit_reducer(ds, method="pca", n_components=2))  # doctest: +SKIP
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
