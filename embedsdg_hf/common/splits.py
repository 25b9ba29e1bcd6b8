"""Every kind of dataset through one door: ``Dataset``, ``IterableDataset`` (streaming) and ``DatasetDict`` /
``IterableDatasetDict`` (applied split by split), so every transform accepts them the same way or says why not.

- :func:`splitwise`: the decorator of every ``add_*`` transform: written for one ``Dataset``, it then also takes a
  ``DatasetDict`` / ``IterableDatasetDict`` (per split) and an ``IterableDataset``, or, with ``streaming=<reason>``,
  refuses a stream with that reason and what to do instead (:func:`per_split` does the work).
- :func:`whole_dataset`: the decorator of steps that need one whole ``Dataset`` (``fit_*``, ``make_*``, ``find_*``):
  anything else is refused with the reason.
- :func:`map_batched`: the one batched ``map`` of a row-wise transform, for a ``Dataset`` (cached, ``num_proc``,
  ``desc``; an empty one gets the new columns) or an ``IterableDataset`` (lazy, applied as rows are read).

Example:
    >>> from datasets import Dataset, DatasetDict
    >>> @splitwise()
    ... def add_one(ds, **map_kwargs):  # written for one Dataset
    ...     return ds.map(lambda row: {"n": row["x"] + 1}, **map_kwargs)
    >>> parts = DatasetDict({"train": Dataset.from_dict({"x": [1, 2]}), "test": Dataset.from_dict({"x": [5]})})
    >>> list(add_one(parts)["test"]["n"])  # every split
    [6]
    >>> [row["n"] for row in add_one(parts["train"].to_iterable_dataset())]  # a stream, as rows are read
    [2, 3]
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["is_streaming", "map_batched", "per_split", "splitwise", "whole_dataset"]

# Dataset.map arguments an IterableDataset.map has no counterpart for (its map is lazy: no cache, no processes).
_DATASET_ONLY = (
    "num_proc",
    "load_from_cache_file",
    "cache_file_name",
    "writer_batch_size",
    "keep_in_memory",
    "new_fingerprint",
    "disable_nullable",
    "suffix_template",
    "with_rank",
    "try_original_type",
)
_RESERVED = ("function", "batched", "features")


def is_streaming(ds: Any) -> bool:
    """Whether ``ds`` is an ``IterableDataset`` (or a dict of them): rows come as they are read, no ``len()``."""
    import datasets

    return isinstance(ds, (datasets.IterableDataset, datasets.IterableDatasetDict))


def per_split(ds: Any, apply: Callable[[Any], Any], *, step: str, streaming: str | None = None) -> Any:
    """``apply(ds)`` for a ``Dataset`` / ``IterableDataset``; for a ``DatasetDict`` / ``IterableDatasetDict`` the
    same type with ``apply`` run on every split.

    Args:
        ds: the input.
        apply: the transform on one split.
        step: the transform's name, for error messages.
        streaming: None when ``apply`` handles an ``IterableDataset``; else the reason it cannot (e.g. "the
            duplicate search compares every row with every other"), raised as a ``TypeError`` for one.

    An ``IterableDataset`` whose features are unknown (``load_dataset("json", ..., streaming=True)``) has them
    resolved from its first rows first, so validation and the output features see its columns.
    """
    import datasets

    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return type(ds)(
            {
                name: per_split(split, apply, step=f"{step} (split {name!r})", streaming=streaming)
                for name, split in ds.items()
            }
        )
    if isinstance(ds, datasets.IterableDataset):
        if streaming is not None:
            raise TypeError(
                f"{step} cannot take an IterableDataset (streaming): {streaming}. Load the data without "
                "streaming=True, or materialise it first: Dataset.from_generator(lambda: (yield from ds), "
                "features=ds.features)."
            )
        return apply(ds if ds.features is not None else ds._resolve_features())
    if isinstance(ds, datasets.Dataset):
        return apply(ds)
    raise TypeError(
        f"{step} takes a datasets.Dataset, IterableDataset, DatasetDict or IterableDatasetDict; got "
        f"{type(ds).__name__}."
    )


def splitwise(*, streaming: str | None = None) -> Callable:
    """Decorator: the transform ``f(ds, ...)`` written for one ``Dataset`` also takes an ``IterableDataset`` (unless
    ``streaming`` says why it cannot) and a ``DatasetDict`` / ``IterableDatasetDict`` (applied to every split, the
    same arguments for each).

    Example:
        >>> from datasets import Dataset
        >>> @splitwise(streaming="the duplicate search compares every row with every other")
        ... def add_duplicate_flags(ds, *, threshold=0.95):
        ...     return ds
        >>> add_duplicate_flags(Dataset.from_dict({"x": [1]}).to_iterable_dataset())
        Traceback (most recent call last):
        TypeError: add_duplicate_flags cannot take an IterableDataset (streaming): the duplicate search compares ...
    """

    def decorator(transform: Callable) -> Callable:
        first = _first_parameter(transform)

        @functools.wraps(transform)
        def wrapper(*args, **kwargs):
            import datasets

            ds = args[0] if args else kwargs.get(first)
            if isinstance(ds, datasets.Dataset):
                return transform(*args, **kwargs)

            def on_split(split):
                return transform(split, *args[1:], **kwargs) if args else transform(**{**kwargs, first: split})

            return per_split(ds, on_split, step=transform.__name__, streaming=streaming)

        return wrapper

    return decorator


def _first_parameter(function: Callable) -> str:
    """The name of the dataset parameter (the first one), so a keyword call (``f(pool=...)``) is handled too."""
    import inspect

    return next(iter(inspect.signature(function).parameters))


def whole_dataset(why: str) -> Callable:
    """Decorator for a step that needs one whole in-memory ``Dataset`` (it fits or builds from all rows at once): a
    ``DatasetDict`` or a stream raises ``TypeError`` with ``why`` and what to pass instead."""

    def decorator(step: Callable) -> Callable:
        first = _first_parameter(step)

        @functools.wraps(step)
        def wrapper(*args, **kwargs):
            import datasets

            ds = args[0] if args else kwargs.get(first)
            if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
                raise TypeError(
                    f"{step.__name__} takes one Dataset, not a {type(ds).__name__}: {why}. Pass one split, e.g. "
                    f"{first}[{next(iter(ds), 'train')!r}]."
                )
            if isinstance(ds, datasets.IterableDataset):
                raise TypeError(
                    f"{step.__name__} cannot take an IterableDataset (streaming): {why}. Load the data without "
                    "streaming=True, or materialise it first: Dataset.from_generator(lambda: (yield from ds), "
                    "features=ds.features)."
                )
            return step(*args, **kwargs)

        return wrapper

    return decorator


def map_batched(
    ds: Any,
    function: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    new_features: dict[str, Any],
    step: str,
    numpy_columns: list[str] | None = None,
    **map_kwargs: Any,
) -> Any:
    """``ds.map(function, batched=True)`` adding ``new_features`` (replacing same-named columns, with a warning).

    A ``Dataset``: one cached ``map`` with the explicit output features (``num_proc``, ``desc``, ... passed
    through); ``numpy_columns`` reach ``function`` as NumPy arrays; an empty dataset comes back empty with the new
    columns (``Dataset.map`` would skip the function). An ``IterableDataset``: a lazy ``map`` with the same output
    features, run as rows are read; ``Dataset``-only arguments (``num_proc``, ``load_from_cache_file``, ...) raise a
    ``TypeError`` and ``desc`` is dropped. ``function`` must accept plain lists for ``numpy_columns`` there.
    """
    import datasets

    from .mapping import map_numpy

    for reserved in _RESERVED:
        if reserved in map_kwargs:
            raise ValueError(f"{step} sets {reserved!r} itself; do not pass it in map_kwargs.")
    replaced = [name for name in new_features if name in ds.column_names]
    if replaced:
        logger.warning("%s: column(s) %s already exist and will be replaced.", step, replaced)
    features = ds.features.copy()
    features.update(new_features)
    if isinstance(ds, datasets.IterableDataset):
        unsupported = [name for name in map_kwargs if name in _DATASET_ONLY]
        if unsupported:
            raise TypeError(
                f"{step}: {', '.join(map(repr, unsupported))} cannot be used with an IterableDataset (its map is "
                "lazy: no cache files, no worker processes)."
            )
        map_kwargs.pop("desc", None)
        return ds.map(function, batched=True, features=features, **map_kwargs)
    if len(ds) == 0:
        ds = ds.remove_columns(replaced)
        for name, feature in new_features.items():
            ds = ds.add_column(name, [], feature=feature)
        return ds
    if numpy_columns:
        return map_numpy(ds, function, columns=numpy_columns, features=features, **map_kwargs)
    return ds.map(function, batched=True, features=features, **map_kwargs)
