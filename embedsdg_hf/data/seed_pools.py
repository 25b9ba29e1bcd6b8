"""``load_seed_pool``: the seed pool D from a built-in generator, a local file, or a Hub dataset."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..common.validation import check_json_lines, check_utf8_lines

logger = logging.getLogger(__name__)

BUILTIN_POOLS = ("word-problems",)
_LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_seed_pool(
    source: str,
    *,
    split: str = "train",
    name: str | None = None,
    n: int | None = None,
    seed: int = 0,
    what: str = "seed pool",
):
    """Load the seed pool as a ``Dataset``.

    Args:
        source: ``"word-problems"`` (the built-in generator, :func:`embedsdg_hf.make_word_problems`), a local
            ``.jsonl`` / ``.json`` / ``.parquet`` / ``.csv`` file, or a Hub dataset id (``"openai/gsm8k"``,
            ``"meta-math/MetaMathQA"``).
        split / name: split and config name of a Hub dataset (``name="main"`` for openai/gsm8k).
        n: keep the first ``n`` rows (built-in: generate ``n``, default 1000).
        seed: seed of the built-in generator.
        what: what the data is, for error messages (``"evaluation data"``...).

    Example:
        >>> pool = load_seed_pool("word-problems", n=50)  # the built-in generator: no file, no network
        >>> len(pool), pool.column_names[:2]
        (50, ['question', 'answer'])
        >>> pool = load_seed_pool("../shared/data/gsm8k/train.jsonl", n=500)  # doctest: +SKIP
    """
    if source in BUILTIN_POOLS:
        from .word_problems import make_word_problems

        return make_word_problems(n or 1000, seed=seed)
    from datasets import load_dataset

    path = Path(os.path.expandvars(source)).expanduser()
    if path.suffix.lower() in _LOCAL_BUILDERS or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"The {what} file {str(path)!r} does not exist.")
        builder = _LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(
                f"The {what} file {str(path)!r}: unsupported extension; use one of {list(_LOCAL_BUILDERS)}."
            )
        if builder == "json" and path.suffix.lower() == ".jsonl":
            check_json_lines(path, what=what)  # empty file / bad line / not UTF-8: file and line, not StopIteration
        elif builder == "csv":
            check_utf8_lines(path, what=what)
        ds = load_dataset(builder, data_files=str(path), split="train")
        if len(ds) == 0:
            raise ValueError(f"The {what} {str(path)!r} is empty (0 rows).")
    else:
        ds = load_dataset(source, name, split=split)
    if n is not None:
        if n < 1:
            raise ValueError(f"The number of {what} rows to use must be >= 1, got {n}.")
        ds = ds.select(range(min(n, len(ds))))
    logger.info("Seed pool %s: %d rows, columns %s", source, len(ds), ds.column_names)
    return ds
