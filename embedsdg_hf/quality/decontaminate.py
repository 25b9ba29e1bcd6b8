"""``add_contamination_flags``: catch generated examples that leak evaluation problems (GSM8K test, MATH test ...).

A teacher that has seen a benchmark can reproduce its problems; training on them inflates the score the student is
then judged by. Two checks, against every evaluation set given, on the question text:

1. ``ngram_overlap``: the row shares at least ``min_overlap`` word ``ngram``-grams (13 by default, as in GPT-3's
   decontamination) with one evaluation problem. Words are lower-cased, punctuation and spacing ignored
   (:func:`~embedsdg_hf.common.text.words`). A text shorter than ``ngram`` words is one gram of all its words.
2. ``embedding_match``: the centred cosine of its student embedding with an evaluation problem's is ``>= threshold``
   (a paraphrase, or a copy with the numbers changed). The centre is the mean over both sides.

Added columns: ``contamination_reason`` (None, ``"ngram_overlap"`` or ``"embedding_match"``), ``contaminated_with``
(``"<set name>:<row>"`` of the matching problem), ``contamination_ngrams`` (n-grams shared with it) and
``contamination_score`` (the best cosine over all sets). ``ds.filter(filter_clean)`` keeps the clean rows.

Evaluation sets are Datasets, or names :func:`load_eval_sets` understands: ``"gsm8k-test"``, ``"math-test"`` or a
local file (see :func:`~embedsdg_hf.data.eval_sets.load_eval_data`).

Public API: :func:`add_contamination_flags`, :func:`filter_clean`, :func:`load_eval_sets`,
:data:`CONTAMINATION_REASONS`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from ..common.mapping import attach_columns, vector_matrix
from ..common.splits import splitwise
from ..common.text import words
from ..common.validation import require_columns, require_rows
from ..space.neighbors import DEFAULT_BATCH_SIZE, batched_mean, best_match, check_cosine, ensure_embeddings, unit_rows

logger = logging.getLogger(__name__)

__all__ = ["CONTAMINATION_REASONS", "add_contamination_flags", "filter_clean", "load_eval_sets"]

NGRAM, EMBEDDING = "ngram_overlap", "embedding_match"
CONTAMINATION_REASONS = (NGRAM, EMBEDDING)
QUESTION_COLUMNS = ("question", "problem", "query", "prompt")
DEFAULT_THRESHOLD = 0.95
FEATURES = datasets.Features(
    {
        "contamination_reason": datasets.Value("string"),
        "contaminated_with": datasets.Value("string"),
        "contamination_ngrams": datasets.Value("int64"),
        "contamination_score": datasets.Value("float32"),
    }
)


def filter_clean(example: dict[str, Any]) -> bool:
    """``Dataset.filter`` predicate: keep rows that :func:`add_contamination_flags` did not flag.

    Example:
        >>> filter_clean({"contamination_reason": None}), filter_clean({"contamination_reason": "ngram_overlap"})
        (True, False)
    """
    return example["contamination_reason"] is None


def load_eval_sets(specs: str | Sequence[str]) -> dict[str, datasets.Dataset]:
    """Evaluation sets by name: ``"gsm8k-test"``, ``"math-test"``, or local files; a comma-separated string works.

    Example:
        >>> sorted(load_eval_sets("gsm8k-test"))  # doctest: +SKIP
        ['gsm8k-test']
    """
    from ..data.eval_sets import load_eval_data

    names = [s.strip() for s in specs.split(",")] if isinstance(specs, str) else [str(s).strip() for s in specs]
    return {name: load_eval_data(name)[0] for name in names if name and name.lower() != "none"}


def _question_column(ds: datasets.Dataset, name: str, given: str | None) -> str:
    if given is not None:
        require_columns(ds, [given], what=f"evaluation set {name!r}")
        return given
    for column in QUESTION_COLUMNS:
        if column in ds.column_names:
            return column
    raise ValueError(
        f"Evaluation set {name!r} has none of the question columns {list(QUESTION_COLUMNS)}; its columns are "
        f"{ds.column_names}. Pass eval_columns={{{name!r}: '<column>'}}."
    )


def _grams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _ngram_table(eval_sets: Mapping[str, datasets.Dataset], columns: Mapping[str, str], n: int) -> dict:
    """gram -> the evaluation problems holding it, as ``(set name, row)``."""
    table: dict[tuple[str, ...], list[tuple[str, int]]] = {}
    for name, ds in eval_sets.items():
        for row, text in enumerate(ds.with_format("arrow")[columns[name]].to_pylist()):
            for gram in _grams(words(text), n):
                table.setdefault(gram, []).append((name, row))
    return table


def _ngram_matches(texts: list[str], table: dict, n: int) -> tuple[list[tuple[str, int] | None], np.ndarray]:
    """Per text, the evaluation problem sharing the most grams with it, and how many it shares."""
    best: list[tuple[str, int] | None] = []
    shared = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        hits = Counter(owner for gram in _grams(words(text), n) for owner in table.get(gram, ()))
        if hits:
            owner, count = hits.most_common(1)[0]
            best.append(owner)
            shared[i] = count
        else:
            best.append(None)
    return best, shared


@splitwise(
    streaming="it embeds all rows and searches them against the evaluation sets in one pass, then attaches the columns"
)
def add_contamination_flags(
    ds: datasets.Dataset,
    eval_sets: Mapping[str, datasets.Dataset] | datasets.Dataset,
    *,
    model: str | None = None,
    text_column: str = "question",
    eval_columns: Mapping[str, str] | None = None,
    ngram: int = 13,
    min_overlap: int = 1,
    threshold: float | None = DEFAULT_THRESHOLD,
    embedding_column: str = "question_embedding",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> datasets.Dataset:
    """Flag rows whose question overlaps an evaluation problem (n-grams) or is its near neighbour (embeddings).

    Args:
        ds: the generated rows.
        eval_sets: ``{name: Dataset}`` of evaluation problems (a single Dataset is named ``"eval"``); see
            :func:`load_eval_sets`.
        model: the student spec, to embed questions that have no ``embedding_column`` yet.
        text_column: the column of ``ds`` compared.
        eval_columns: ``{name: column}`` of each evaluation set's problem text (default: the first of
            ``question``, ``problem``, ``query``, ``prompt`` it has).
        ngram: gram length in words (13, as in GPT-3).
        min_overlap: shared grams with one evaluation problem that flag a row.
        threshold: centred cosine at or above which a row matches an evaluation problem; None disables the check.
        embedding_column: where the question embeddings are (or are put).
        batch_size: rows searched at a time.

    Returns:
        ``ds`` with ``contamination_reason``, ``contaminated_with``, ``contamination_ngrams``,
        ``contamination_score`` (and ``embedding_column`` when the embedding check runs).

    Example:
        >>> flagged = add_contamination_flags(synthetic, load_eval_sets("gsm8k-test"), model="smollm2-135m-instruct")
        ... # doctest: +SKIP
        >>> clean = flagged.filter(filter_clean)  # doctest: +SKIP
    """
    if isinstance(eval_sets, datasets.Dataset):
        eval_sets = {"eval": eval_sets}
    if not eval_sets:
        raise ValueError("add_contamination_flags needs at least one evaluation set.")
    require_columns(ds, [text_column], what="generated dataset")
    columns = {name: _question_column(e, name, (eval_columns or {}).get(name)) for name, e in eval_sets.items()}
    for name, e in eval_sets.items():
        require_rows(e, what=f"evaluation set {name!r}", step="decontamination")
    for value, label in ((ngram, "ngram"), (min_overlap, "min_overlap")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}.")
    check_cosine(threshold, "threshold", off="n-gram check only")

    texts = ds.with_format("arrow")[text_column].to_pylist()
    owners, shared = _ngram_matches(texts, _ngram_table(eval_sets, columns, ngram), ngram)
    reason = [NGRAM if count >= min_overlap else None for count in shared]
    matched = [f"{owner[0]}:{owner[1]}" if owner and flagged else None for owner, flagged in zip(owners, reason)]
    score = np.full(len(ds), np.nan, dtype=np.float32)

    if threshold is not None and len(ds):
        ds = ensure_embeddings(ds, model=model, text_template=f"{{{text_column}}}", column=embedding_column)
        vectors = vector_matrix(ds, embedding_column)
        embedded = {
            name: ensure_embeddings(
                e.select_columns([columns[name]]),
                model=model,
                text_template=f"{{{columns[name]}}}",
                column=embedding_column,
                what=f"evaluation set {name!r}",
            )
            for name, e in eval_sets.items()
        }
        total = vectors.sum(0, dtype=np.float64) + sum(
            batched_mean(e, embedding_column) * len(e) for e in embedded.values()
        )
        center = total / (len(ds) + sum(len(e) for e in embedded.values()))
        queries = unit_rows(vectors, center)
        for name, e in embedded.items():
            best, rows = best_match(
                queries, e, column=embedding_column, center=center, batch_size=batch_size, desc=f"Matching {name}"
            )
            better = ~(best <= score)  # NaN (no score yet) counts as worse
            score[better] = best[better]
            for i in np.flatnonzero(better & (best >= threshold)):
                if reason[i] is None:
                    reason[i], matched[i] = EMBEDDING, f"{name}:{rows[i]}"
    logger.info(
        "Contamination among %d rows vs %s: %s.",
        len(ds),
        {name: len(e) for name, e in eval_sets.items()},
        {why: reason.count(why) for why in CONTAMINATION_REASONS},
    )
    new = {
        "contamination_reason": reason,
        "contaminated_with": matched,
        "contamination_ngrams": [int(c) for c in shared],
        "contamination_score": [None if np.isnan(s) else float(s) for s in score],
    }
    return attach_columns(ds, new, FEATURES)
