"""What a selection took, in the pool's own words: the words far more common among the chosen seeds than in the pool.

A selector ranks rows by where they lie in its views; it cannot name what it took. When many seeds share words the
pool seldom uses ("grams", "litres"), the selection piled into one kind of question, and the user can see which one
without any labels. The selection benchmark found this happen: on mathematics_dataset pools a common kind written
many ways (unit conversions) can fill the top of the `rarity` order (docs/selection-benchmark.md, ninth session).

Words are counted once per row (numbers masked, lower-cased, English stop words left out), over the distinct seed
rows and over the pool (above ``sample`` rows, a fixed random sample of it, so the cost does not grow with the pool).

Example:
    >>> texts = ["How many grams are in 3 kg?"] * 4 + ["What is 2 plus 2?"] * 36
    >>> [(w["word"], w["seeds"]) for w in seed_word_lean(texts, [0, 1, 2, 4])]
    [('grams', 3), ('kg', 3)]
    >>> lean_sentence(seed_word_lean(texts, [0, 1, 2, 4]), 4)
    'The seeds lean to the words "grams" (3 of 4 seed rows, 10% of the pool), "kg" (3 of 4, 10%).'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["lean_sentence", "seed_word_lean"]


def seed_word_lean(
    texts: Sequence[str],
    seed_rows: Sequence[int],
    *,
    top: int = 5,
    min_share: float = 0.2,
    min_lift: float = 3.0,
    sample: int = 20000,
    seed: int = 0,
) -> list[dict]:
    """The words in at least ``min_share`` of the distinct seed rows (and at least 2 of them) and at least
    ``min_lift`` times as common there as in the pool, most seeds first (then highest lift); at most ``top``. Each
    is ``{"word", "seeds", "seed_share", "pool_share", "lift"}``. Empty when no word leans so, or no row has a word."""
    from sklearn.feature_extraction.text import CountVectorizer

    from ..space.rarity import NUMBER_MASK, mask_numbers

    rows = np.unique(np.asarray(seed_rows, dtype=np.int64))
    if len(rows) == 0 or len(texts) == 0:
        return []
    vectorizer = CountVectorizer(
        binary=True, stop_words="english", preprocessor=lambda t: mask_numbers(str(t)).lower()
    )  # scikit-learn's token pattern: the words of two or more letters / digits the lexical view reads
    try:
        in_seeds = vectorizer.fit_transform([texts[int(i)] for i in rows])
    except ValueError:  # the seeds have no word but stop words
        return []
    reference = np.arange(len(texts))
    if len(texts) > sample:
        reference = np.sort(np.random.default_rng(seed).choice(len(texts), sample, replace=False))
    in_pool = vectorizer.transform([texts[int(i)] for i in reference])
    seeds = np.asarray(in_seeds.sum(axis=0)).ravel()
    pool_share = np.asarray(in_pool.mean(axis=0)).ravel()
    pool_share = np.maximum(pool_share, 1.0 / len(reference))  # a seed's word missed by the sample is still in it
    seed_share = seeds / len(rows)
    lift = seed_share / pool_share
    words = vectorizer.get_feature_names_out()
    keep = [
        j
        for j in np.flatnonzero((seed_share >= min_share) & (seeds >= 2) & (lift >= min_lift))
        if words[j] != NUMBER_MASK.lower()  # the mask of every number
    ]
    keep.sort(key=lambda j: (-seeds[j], -lift[j], words[j]))
    return [
        {
            "word": str(words[j]),
            "seeds": int(seeds[j]),
            "seed_share": round(float(seed_share[j]), 4),
            "pool_share": round(float(pool_share[j]), 4),
            "lift": round(float(lift[j]), 2),
        }
        for j in keep[:top]
    ]


def lean_sentence(lean: list[dict], n_seed_rows: int) -> str:
    """One sentence of :func:`seed_word_lean`'s words for the run's summary; empty when there are none."""
    if not lean:
        return ""
    first, *rest = lean
    parts = [
        f'"{first["word"]}" ({first["seeds"]} of {n_seed_rows} seed rows, {_pct(first["pool_share"])} of the pool)'
    ]
    parts += [f'"{w["word"]}" ({w["seeds"]} of {n_seed_rows}, {_pct(w["pool_share"])})' for w in rest]
    return "The seeds lean to the words " + ", ".join(parts) + "."


def _pct(share: float) -> str:
    return f"{share:.1%}" if share < 0.1 else f"{share:.0%}"
