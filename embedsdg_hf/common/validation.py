"""Input checks shared by every transform: clear errors that name the column / value and say what is allowed."""

from __future__ import annotations

import numbers
import string
from collections.abc import Iterable

import numpy as np


def is_int(value) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` in Python, never a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require_columns(ds, columns: Iterable[str], *, what: str = "dataset") -> None:
    """Raise ``ValueError`` naming each missing column and listing the columns there are."""
    present = list(ds.column_names)
    missing = [c for c in columns if c not in present]
    if missing:
        hint = ""
        for name in missing:
            close = [c for c in present if c.lower() == name.lower() or c.rstrip("s") == name.rstrip("s")]
            if close:
                hint += f" Did you mean {close[0]!r} instead of {name!r}?"
        raise ValueError(
            f"The {what} has no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}. "
            f"Columns present: {present}.{hint}"
        )


def require_rows(ds, *, what: str = "dataset", step: str = "this step") -> None:
    """Raise ``ValueError`` for an empty dataset, which no step can work with.

    An ``IterableDataset`` (streaming) has no length to check: an empty stream simply gives an empty result.
    """
    if not hasattr(ds, "__len__"):
        return
    if len(ds) == 0:
        raise ValueError(f"The {what} is empty (0 rows): {step} needs at least one row.")


_TEXT = (str, numbers.Real)


def drop_non_text_rows(ds, columns: Iterable[str], *, what: str = "dataset"):
    """``(ds without the rows whose text ``columns`` hold a null or a list / dict / bool, how many were dropped)``
    (a number is formatted as text, as ``str.format`` would); the count is logged with the first row and column.
    A column missing altogether is left to :func:`require_template_columns`.

    Example:
        >>> from datasets import Dataset
        >>> drop_non_text_rows(Dataset.from_dict({"q": ["a", None, "c"]}), ["q"])[1]
        1
    """
    import logging

    columns = [c for c in columns if c in ds.column_names]
    table = ds.select_columns(columns).with_format("arrow")[:] if columns else None
    bad = set()
    for column in columns:
        values = table[column].to_pylist()
        bad.update(i for i, value in enumerate(values) if isinstance(value, bool) or not isinstance(value, _TEXT))
    if not bad:
        return ds, 0
    first = min(bad)
    logging.getLogger(__name__).warning(
        "The %s has %d row(s) whose %s is null or not text (first: row %d); they are skipped.",
        what,
        len(bad),
        " / ".join(repr(c) for c in columns),
        first,
    )
    if len(bad) == len(ds):
        raise ValueError(f"Every row of the {what} has a null or non-text value in {columns}: nothing to work with.")
    return ds.select([i for i in range(len(ds)) if i not in bad]), len(bad)


def template_fields(template: str) -> list[str]:
    """Names of the ``{fields}`` a ``str.format`` template uses, in order, without duplicates."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"Invalid text template {template!r}: {err}.") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise ValueError(
                f"Text template {template!r} uses a positional field '{{{field}}}'; name a column instead, "
                "e.g. '{question}\\n{answer}'."
            )
        name = field.split(".")[0].split("[")[0]
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"Text template {template!r} names no column; use fields like '{{question}}'.")
    return names


def require_template_columns(ds, template: str) -> list[str]:
    """Check that every field of ``template`` is a column of ``ds``; return the fields."""
    fields = template_fields(template)
    missing = [f for f in fields if f not in ds.column_names]
    if missing:
        raise ValueError(
            f"Text template {template!r} names column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}, which the dataset does not have. Columns present: {ds.column_names}."
        )
    return fields


def as_float_matrix(values, *, column: str, expected_dim: int | None = None) -> np.ndarray:
    """Turn a column of fixed-length vectors into a finite float32 matrix, or raise a clear ``ValueError``."""
    try:
        matrix = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as err:
        raise ValueError(f"Column {column!r} must hold fixed-length numeric vectors ({err}).") from None
    if matrix.ndim != 2:
        raise ValueError(
            f"Column {column!r} must hold fixed-length numeric vectors; got an array of shape {matrix.shape}."
        )
    if expected_dim is not None and matrix.shape[1] != expected_dim:
        raise ValueError(f"Column {column!r} holds vectors of length {matrix.shape[1]}, expected {expected_dim}.")
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"Column {column!r} has NaN or infinite values in {len(rows)} row(s) (first: {rows[:5].tolist()}). "
            "Remove or recompute those rows before this step."
        )
    return matrix


def _utf8_line(raw: bytes, path, number: int, what: str, hint: str = "") -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"The {what} {str(path)!r} line {number} is not UTF-8 text (byte {raw[err.start]:#04x} at column "
            f"{err.start + 1}). Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).{hint}"
        ) from None


def check_utf8_lines(path, *, what: str = "file") -> None:
    """Raise ``ValueError`` naming the file and line of the first bytes that are not UTF-8 (a text file such as a
    CSV; ``datasets`` would fail later without saying where)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            _utf8_line(raw, path, number, what)


def check_json_lines(path, *, what: str = "file", hint: str = "") -> None:
    """Read a ``.jsonl`` file line by line; raise ``ValueError`` naming the file for an empty one, and the file and
    line number for a line that is not a JSON object (``datasets`` would raise ``StopIteration`` or a generic error).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "pool.jsonl"
        >>> _ = path.write_text('{"question": "a"}\\n{"question": "b"}\\n{"question": oops\\n')
        >>> check_json_lines(path, what="seed pool")
        Traceback (most recent call last):
        ValueError: The seed pool '...pool.jsonl' line 3 is not valid JSON (...): '{"question": oops'. Fix or ...
    """
    import json

    rows = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = _utf8_line(raw, path, number, what, hint)
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as err:
                snippet = line.strip()[:80]
                raise ValueError(
                    f"The {what} {str(path)!r} line {number} is not valid JSON ({err}): {snippet!r}. Fix or delete "
                    f"that line.{hint}"
                ) from None
            if not isinstance(value, dict):
                raise ValueError(
                    f"The {what} {str(path)!r} line {number} is a JSON {type(value).__name__}, not an object "
                    f"({{column: value, ...}}).{hint}"
                )
            rows += 1
    if rows == 0:
        raise ValueError(f"The {what} {str(path)!r} is empty (0 rows).{hint}")
