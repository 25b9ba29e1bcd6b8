"""``Dataset.map`` helpers shared by the transforms."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .validation import as_float_matrix, require_columns


def map_numpy(ds, function, *, columns: list[str], **map_kwargs):
    """``ds.map(function, batched=True, ...)`` with ``columns`` handed to ``function`` as NumPy arrays.

    Vector columns (embeddings, coords) then arrive as 2-D arrays straight from Arrow instead of Python lists of
    lists. The dataset's own format is restored on the result.
    """
    fmt = ds.format
    out = ds.with_format("numpy", columns=columns, output_all_columns=True).map(function, batched=True, **map_kwargs)
    shown = fmt["columns"]
    if shown is None or set(shown) >= set(ds.column_names):
        shown = None  # every column was visible: keep it so, new ones included
    else:
        shown = shown + [c for c in out.column_names if c not in ds.column_names]
    return out.with_format(
        fmt["type"], columns=shown, output_all_columns=fmt["output_all_columns"], **fmt["format_kwargs"]
    )


def column_array(ds, column: str) -> np.ndarray:
    """A scalar column as a NumPy array, read through Arrow (``ds[column]`` iterates row by row in datasets 5)."""
    require_columns(ds, [column])
    values = ds.with_format("arrow")[column]
    return values.to_numpy(zero_copy_only=False) if len(values) else np.zeros(0)


def list_matrix(ds, column: str, *, what: str = "dataset") -> np.ndarray:
    """A column of equal-length numeric lists as a 2-D numpy array, read through Arrow (no Python objects)."""
    require_columns(ds, [column], what=what)
    values = ds.with_format("arrow")[column]
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    list_type = array.type
    if not (
        pa.types.is_list(list_type) or pa.types.is_large_list(list_type) or pa.types.is_fixed_size_list(list_type)
    ):
        raise ValueError(
            f"Column {column!r} must hold fixed-length numeric vectors; its type is {ds.features[column]}."
        )
    if array.null_count:
        rows = np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))
        raise ValueError(f"Column {column!r} has {len(rows)} missing (None) row(s) (first: {rows[:5].tolist()}).")
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if len(lengths) and lengths.min() != lengths.max():
        raise ValueError(
            f"Column {column!r} must hold fixed-length vectors; lengths range from {lengths.min()} to {lengths.max()}."
        )
    width = int(lengths[0]) if len(lengths) else 0
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), width)


def vector_matrix(ds, column: str, *, expected_dim: int | None = None) -> np.ndarray:
    """The ``column`` of fixed-length vectors as a finite float32 (n, K) matrix (clear errors otherwise)."""
    return as_float_matrix(list_matrix(ds, column), column=column, expected_dim=expected_dim)


def fixed_size_list(values: np.ndarray) -> pa.Array:
    """A 2-D array (n, k) as an Arrow fixed-size-list column of width k (no Python objects on the way)."""
    values = np.asarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def attach_columns(ds, columns: dict, features):
    """``ds`` with the given whole columns added (replacing same-named ones); ``features`` types them.

    For steps whose result depends on all rows at once (neighbour search), computed first and then attached.
    """
    import datasets

    new = datasets.Dataset.from_dict(columns, features=features)
    if len(new) != len(ds):
        raise ValueError(f"attach_columns got {len(new)} values for a dataset of {len(ds)} rows.")
    base = ds.remove_columns([name for name in columns if name in ds.column_names])
    if len(ds) == 0:  # concatenate_datasets(axis=1) drops the new columns of empty datasets
        for name in columns:
            base = base.add_column(name, [], feature=features[name])
        return base
    return datasets.concatenate_datasets([base, new], axis=1)


def without_embeddings(ds):
    """``ds`` without its embedding columns (names ending in ``embedding``): for JSONL exports and Hub pushes."""
    return ds.remove_columns([c for c in ds.column_names if c.endswith("embedding")])
