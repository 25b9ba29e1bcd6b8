"""``Dataset.map`` helpers shared by the transforms."""

from __future__ import annotations


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
    return out.with_format(fmt["type"], columns=shown, output_all_columns=fmt["output_all_columns"], **fmt["format_kwargs"])
