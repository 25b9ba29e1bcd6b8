"""Rare-kind seed selection that follows the pool (the ``rarity`` selector; docs/selection-benchmark.md).

The ``knn`` selector (``space/knn_regions.py``) measures sparsity as the distance to the 20th neighbour of the
*mean* of the question's token embeddings. Two things make it fail on pools written by others: every token gets
1/m of the weight, so the few content words that mark a rare kind wash out (and numbers decide where a short
question lands); and k=20 does not follow the pool (a rare kind of 30 near-identical rows looks dense). This
selector fixes both, with everything it fits saved as a JSON spec:

1. *Views* of each text (the input column alone, e.g. the question), each fitted on the pool:
   - ``"student"``: the student's input embeddings pooled with **token weights from the pool**
     (:func:`fit_token_weights`: smooth inverse frequency a/(a + p(w)) or IDF; number tokens masked), centred on
     the pool mean and scaled to unit length (cosine geometry);
   - ``"lexical"``: the words of the text with numbers masked (:func:`fit_lexical`), unit rows: by default each
     word the text has once, every word alike (``word_weights="presence"``); or TF-IDF (``"tfidf"``), which lets
     the words few rows use (unit names, names) outweigh the words of the question's template.
2. *Sparsity at the pool's scale*: for each view and each ``fraction`` in ``fractions``, the distance of every row to
   its k-th nearest neighbour with k = fraction x (reference rows); ``score="drop"`` scores instead the largest
   relative rise of that distance between consecutive k (near at a small k, far at the next: a small group, not a
   lone outlier). The reference is a fixed-size random sample of the pool (``reference_size`` rows; all of it when
   smaller), so time and memory stay bounded on large pools.
3. *One score per row*: each (view, k) distance becomes a rank in [0, 1]. ``combine="every"`` (the default) takes
   each view's highest rank over the ks, the scale at which the row looks rarest there (a kind of 0.5% of the pool is
   sparse at k = 1%, one of 3% only at k = 4-8%; a mean over scales hides the larger kinds), and multiplies the
   views': a row must look rare in *every* view. The lexical view also finds rows whose words are one-offs (unit
   names, letter strings, names), which make every question of a large kind look unique; the student's token
   embeddings place such words near each other, so that kind is dense there while a rare kind stays sparse in both.
   ``combine="best"`` takes the highest rank over views and ks, ``combine="mean"`` their mean. The highest scores
   are the region centres (ties broken with ``seed``).
   ``score="auto"`` (the default) first looks at the pool's shape (:func:`pool_shape`, fitted with the spec): in a
   pool whose rows come in groups (templated or generated problems) it scores ``"distance"`` as above; in a pool of
   mostly unique rows (natural writing) it scores ``"groups"``: the first (lexical) view's best rank over the
   scales, or, where it ranks higher, the row's small-group rank (the largest rise of its log distance from one k to
   the next, the largest k left out, ranked and multiplied over the views: near at a small k and far at a larger one).
   The student's mean token embedding of natural writing did not help the sparsity rank there, and a small group of
   near copies among unique rows is dense at every k, which the second rank catches.
4. *Pairs*: a centre's region is it and its ``hood_k`` nearest rows in the first view (exact, searched for the
   walked centres only); the pair is taken as the ``knn`` selector does (:func:`~.knn_regions.make_knn_pairs`),
   so the regions and pairs datasets have the ``knn`` selector's columns and everything downstream works unchanged.

Example:
    >>> regions, pairs, spec = rarity_seed_pairs(pool, n_pairs=60, model="smollm2-135m-instruct")  # doctest: +SKIP
    >>> regions2, pairs2, _ = rarity_seed_pairs(pool, n_pairs=60, model="smollm2-135m-instruct", spec=spec)
    ... # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa

from ..common.mapping import fixed_size_list, vector_matrix
from ..common.options import RARITY_WORD_WEIGHTS
from ..common.validation import require_columns, require_rows
from .neighbors import unit_rows

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULTS",
    "GROUPED_SHARE",
    "NUMBER_MASK",
    "TOKEN_SCHEMES",
    "VIEWS",
    "apply_token_weights",
    "fit_lexical",
    "fit_rarity",
    "fit_with_views",
    "fit_token_weights",
    "lexical_matrix",
    "mask_numbers",
    "nearest_rows",
    "pool_shape",
    "number_token_ids",
    "RaritySelection",
    "rarity_scores",
    "rarity_seed_pairs",
    "rarity_selection",
    "reference_sample",
    "scoring_settings",
    "view_matrices",
]

VIEWS = ("student", "lexical")
TOKEN_SCHEMES = ("sif", "idf", "mean")
SCORES = ("auto", "distance", "drop", "groups")
COMBINES = ("every", "best", "mean")
#: The selector's default settings: the lexical view and the student's mean token embedding (numbers masked) at
#: k = 0.5/1/2/4/8% of the pool. When the pool's rows come in groups (``score="auto"``, :func:`pool_shape`), a row is
#: scored by its best rank over those scales in each view, multiplied over the views (``combine="every"``: rare in
#: both); when nearly every row is unique (``"groups"``), by the lexical view's best rank over the scales, or where it
#: is higher, its small-group rank (the rise of its log distance from one k to the next) in both views. In the
#: selection benchmark (docs/selection-benchmark.md) no setting has a held-out worst case of 1 or more (GSM8K and
#: MMLU topic kinds the text does not make regions of; drawn mathematics_dataset modules that are regions but rank
#: below common modules written many ways); on the pools of mostly unique rows this rule replaced
#: ``"drop"`` (2026-12-06, seventh round), which took no rare seed on 7 / 8 of the 13 such benchmark pools in two
#: draws (four of the five MMLU pools), against 1 / 1 for this rule; held-out mean 6.87 / 5.56 against 5.74 / 3.63.
#: ``hood_k``: a centre's region is it and its 2 nearest rows (5 until the eighth round of 2026-12-06): a rare centre's
#: farther neighbours are of its kind less often on natural writing (17-48% of a 5-row hood on gsm-2x0.5%-6k and four
#: MMLU pools), and the seeds come from the region; held-out mean +0.47 / +0.87 / +0.51 on three draws, worst case
#: 0.28 / 0.00 (was 0.00 / 0.00; docs/selection-benchmark.md).
#: ``word_weights``: the lexical view counts each word of the question once, every word alike ("presence"; TF-IDF
#: until the tenth round of 2026-12-07): under TF-IDF the words few rows use (unit names, letter strings) make every
#: question of a common kind written many ways look unique, and such kinds took the seeds of mathematics_dataset pools
#: whose rare modules were drawn at random. Held-out mean 6.44 / 5.52 / 4.68 -> 8.86 / 7.39 / 7.24 on three draws
#: (median 2.29 / 2.50 / 1.67 -> 4.17 / 2.78 / 3.61; pools at 0 2 / 6 / 6 -> 2 / 6 / 5; worst case 0 in all);
#: it loses on two hand-picked mathematics_dataset pools (md-3x1%: 4.44 / 3.89 / 3.33 -> 0.56 / 0.00 / 0.00).
DEFAULTS = {
    "views": ("lexical", "student"),
    "token_weights": "mean",
    "sif_a": 1e-3,
    "numbers": "mask",
    "fractions": (0.005, 0.01, 0.02, 0.04, 0.08),
    "score": "auto",
    "combine": "every",
    "min_k": 5,
    "reference_size": 8000,
    "hood_k": 2,
    "min_df": 1,
    "symbols": False,
    "word_weights": "presence",
    "refine": 4096,
}
#: ``score="auto"``: a pool is *grouped* (templated: most rows have near copies) when at least this share of the
#: reference rows is at under half its largest-k distance already at the smallest k (mean over views); measured on
#: the selection benchmark's sources: 0.54-0.89 for the built-in generator and mathematics_dataset, 0.000-0.004 for
#: GSM8K, in either view.
GROUPED_SHARE = 0.25
_DENSE_REFERENCE_BYTES = 1 << 30  # a sparse view's reference sample is made dense below this size
_BLOCK_BYTES = 1 << 28  # one block of rows x reference similarities (float64) stays near this size
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_TOKEN = re.compile(r"^[\s\d.,:/+\-$%]*\d[\s\d.,:/+\-$%]*$")


#: The word :func:`mask_numbers` puts in place of every number.
NUMBER_MASK = "NUM"


def mask_numbers(text: str) -> str:
    """``text`` with every number replaced by the word ``NUM`` (the lexical view's treatment of numbers).

    Example:
        >>> mask_numbers("Is 1,234 a multiple of 7.5?")
        'Is NUM a multiple of NUM?'
    """
    return _NUMBER.sub(NUMBER_MASK, text)


@functools.lru_cache(maxsize=4)
def number_token_ids(model: str) -> frozenset[int]:
    """Ids of the student's tokens that are numbers (digits, possibly with separators / a leading space)."""
    from ..common.models import load_tokenizer

    tokenizer = load_tokenizer(model)
    ids = range(len(tokenizer))
    return frozenset(
        i for i, text in zip(ids, tokenizer.batch_decode([[i] for i in ids])) if _NUMBER_TOKEN.match(text)
    )


def _tokenize(model: str, texts: Sequence[str]) -> list[list[int]]:
    from ..common.models import load_tokenizer

    return load_tokenizer(model)(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]


def fit_token_weights(
    ids: Sequence[Sequence[int]], *, model: str, scheme: str = "sif", a: float = 1e-3, numbers: str = "mask"
) -> dict:
    """Per-token weights fitted on a pool's token ids: a frozen, JSON-serialisable spec.

    ``scheme``: ``"sif"`` a / (a + p(w)), p(w) the token's share of all tokens of the pool; ``"idf"``
    log((1 + n) / (1 + df(w))) + 1; ``"mean"`` 1 for every token. ``numbers="mask"`` gives number tokens weight 0
    (``"keep"``: weighted like any other). A token the pool never had gets the weight of a token seen zero times.

    Example:
        >>> spec = fit_token_weights([[1, 2], [1, 3]], model="smollm2-135m-instruct", scheme="idf")
        >>> spec["weights"]["1"] < spec["weights"]["2"]
        True
    """
    if scheme not in TOKEN_SCHEMES:
        raise ValueError(f"token_weights={scheme!r} is not supported; choose one of {list(TOKEN_SCHEMES)}.")
    if numbers not in ("mask", "keep"):
        raise ValueError(f"numbers={numbers!r} is not supported; choose 'mask' or 'keep'.")
    if not a > 0:
        raise ValueError(f"sif_a must be > 0; got {a!r}.")
    tokens, counts = np.unique(np.fromiter((t for seq in ids for t in seq), dtype=np.int64), return_counts=True)
    doc_tokens, df = np.unique(np.fromiter((t for seq in ids for t in set(seq)), dtype=np.int64), return_counts=True)
    n_docs, total = len(ids), max(int(counts.sum()), 1)
    if scheme == "sif":
        weights, unseen = a / (a + counts / total), 1.0
    elif scheme == "idf":
        weights, unseen = np.log((1 + n_docs) / (1 + df)) + 1.0, float(np.log(1 + n_docs) + 1.0)
        tokens = doc_tokens
    else:
        weights, unseen = np.ones(len(tokens)), 1.0
    return {
        "model": model,
        "scheme": scheme,
        "a": float(a),
        "numbers": numbers,
        "n_texts": n_docs,
        "unseen": unseen,
        "weights": {str(int(t)): float(w) for t, w in zip(tokens, weights)},
    }


def apply_token_weights(spec: dict, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Each text's per-token weights under ``spec``, normalised to sum to 1 (all-masked texts: uniform)."""
    table, unseen = spec["weights"], float(spec["unseen"])
    masked = number_token_ids(spec["model"]) if spec["numbers"] == "mask" else frozenset()
    out = []
    for seq in ids:
        w = np.asarray([0.0 if t in masked else table.get(str(t), unseen) for t in seq], dtype=np.float32)
        total = float(w.sum())
        out.append(w / total if total > 0 else np.full(len(seq), 1.0 / max(len(seq), 1), np.float32))
    return out


def _student_vectors(spec: dict, ids: Sequence[Sequence[int]]) -> np.ndarray:
    from .embed import EmbeddingSpec, pool

    return pool(EmbeddingSpec(model=spec["model"]), [list(s) for s in ids], apply_token_weights(spec, ids))


_WORDS = r"(?u)\b\w\w+\b"  # scikit-learn's default: words of two or more letters / digits
_WORDS_AND_SYMBOLS = _WORDS + r"|[%$€£]"  # ... and the symbols that mark a kind of math question


def _vectorizer(symbols: bool, weights: str = "tfidf", **kwargs):
    """TF-IDF (sublinear tf, smooth idf), or for ``weights="presence"`` a 0/1 count of each word (every word alike;
    :func:`lexical_matrix` scales the rows to unit length)."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    kwargs.update(
        preprocessor=lambda t: mask_numbers(t).lower(), token_pattern=_WORDS_AND_SYMBOLS if symbols else _WORDS
    )
    if weights == "presence":
        return CountVectorizer(binary=True, **kwargs)
    return TfidfVectorizer(sublinear_tf=True, **kwargs)


def _check_word_weights(weights: str) -> None:
    if weights not in RARITY_WORD_WEIGHTS:
        raise ValueError(f"word_weights={weights!r} is not supported; choose one of {list(RARITY_WORD_WEIGHTS)}.")


def fit_lexical(texts: Sequence[str], *, min_df: float = 1, symbols: bool = False, weights: str = "tfidf") -> dict:
    """The word view fitted on ``texts``, numbers masked: a JSON-serialisable spec. ``weights="tfidf"`` (this
    function's default; sublinear tf, smooth idf) or ``"presence"`` (the selector's default, :data:`DEFAULTS`).

    ``min_df``: words in fewer rows than this (a count, or a share of the pool when < 1) are left out: a word only
    one or two rows use (a name, a one-off object) makes a row look unique without making it a rare *kind*.
    ``symbols``: ``%``, ``$``, ``€``, ``£`` count as words. ``weights="presence"``: each word the text has counts 1
    (no idf): a word few rows use weighs no more than the words of the question's template.

    Example:
        >>> spec = fit_lexical(["the cat sat", "the dog sat", "the cat ran"])
        >>> spec["idf"][spec["vocabulary"]["the"]] < spec["idf"][spec["vocabulary"]["dog"]]
        True
        >>> sorted(fit_lexical(["the cat sat", "the dog sat", "the cat ran"], min_df=2)["vocabulary"])
        ['cat', 'sat', 'the']
    """
    texts = list(texts)
    _check_word_weights(weights)
    if min_df < 1:
        min_df = max(1, int(np.ceil(min_df * len(texts))))
    vectorizer = _vectorizer(symbols, weights, min_df=int(min_df))
    try:
        vectorizer.fit(texts)
    except ValueError:  # every word is in fewer than min_df rows
        vectorizer = _vectorizer(symbols, weights)
        vectorizer.fit(texts)
    spec = {"vocabulary": {word: int(i) for word, i in vectorizer.vocabulary_.items()}, "symbols": bool(symbols)}
    if weights == "tfidf":
        spec["idf"] = [float(v) for v in vectorizer.idf_]
    else:
        spec["weights"] = weights
    return spec


def lexical_matrix(spec: dict, texts: Sequence[str]):
    """The texts' TF-IDF (or word-presence) rows under a :func:`fit_lexical` spec (scipy CSR, unit rows)."""
    weights = spec.get("weights", "tfidf")
    vectorizer = _vectorizer(spec.get("symbols", False), weights, vocabulary=spec["vocabulary"])
    if weights == "tfidf":
        vectorizer.idf_ = np.asarray(spec["idf"], dtype=np.float64)
        return vectorizer.transform(list(texts)).astype(np.float32).tocsr()
    from sklearn.preprocessing import normalize

    return normalize(vectorizer.transform(list(texts)).astype(np.float32)).tocsr()


def fit_rarity(texts: Sequence[str], *, model: str, **settings) -> dict:
    """Fit every part of the selector on the pool's input texts: the JSON spec :func:`rarity_seed_pairs` reuses.

    ``settings`` override :data:`DEFAULTS` (``views``, ``token_weights``, ``sif_a``, ``numbers``, ``fractions``,
    ``score``, ``combine``, ``min_k``, ``reference_size``, ``hood_k``, ``min_df``, ``symbols``, ``word_weights``,
    ``refine``).
    """
    return fit_with_views(texts, model=model, **settings)[0]


def fit_with_views(texts: Sequence[str], *, model: str, **settings) -> tuple[dict, dict]:
    """:func:`fit_rarity`'s spec and the views of ``texts`` under it (what :func:`view_matrices` gives), which
    fitting computes on the way: the student view's vectors are what the pool mean is taken over, and tokenizing and
    pooling a large pool twice costs tens of seconds (~40 s at 400k rows). Pass them to :func:`rarity_selection`
    as ``fitted_views``."""
    texts = list(texts)
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown rarity setting(s) {unknown}; the settings are {sorted(DEFAULTS)}.")
    s = {**DEFAULTS, **settings}
    s["views"], s["fractions"] = list(s["views"]), [float(f) for f in s["fractions"]]
    if not s["views"] or set(s["views"]) - set(VIEWS):
        raise ValueError(f"views={s['views']} must be a non-empty list of {list(VIEWS)}.")
    if not s["fractions"] or not all(0 < f < 1 for f in s["fractions"]):
        raise ValueError(f"fractions={s['fractions']} must be a non-empty list of numbers in (0, 1).")
    if s["score"] not in SCORES:
        raise ValueError(f"score={s['score']!r} is not supported; choose one of {list(SCORES)}.")
    _check_word_weights(s["word_weights"])
    if s["combine"] not in COMBINES:
        raise ValueError(f"combine={s['combine']!r} is not supported; choose one of {list(COMBINES)}.")
    if not isinstance(s["refine"], int) or s["refine"] < 0:
        raise ValueError(f"refine must be an integer >= 0; got {s['refine']!r}.")
    for name in ("min_k", "reference_size", "hood_k"):
        if not isinstance(s[name], int) or s[name] < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {s[name]!r}.")
    spec: dict = {"selector": "rarity", "model": model, "settings": s}
    views = {}
    for view in s["views"]:
        if view == "student":
            ids = _tokenize(model, texts)
            weights = fit_token_weights(
                ids, model=model, scheme=s["token_weights"], a=s["sif_a"], numbers=s["numbers"]
            )
            vectors = _student_vectors(weights, ids)
            spec["token_weights"] = weights
            spec["center"] = [float(v) for v in vectors.mean(axis=0)]
            views[view] = _student_view(spec, vectors)
        else:
            spec["lexical"] = fit_lexical(texts, min_df=s["min_df"], symbols=s["symbols"], weights=s["word_weights"])
            views[view] = lexical_matrix(spec["lexical"], texts)
    if s["score"] == "auto":
        spec["shape"] = pool_shape(spec, texts, views=views)
    return spec, views


def pool_shape(spec: dict, texts: Sequence[str], *, seed: int = 0, views: dict | None = None) -> dict:
    """Do the pool's rows come in groups, or is nearly every row unique? What ``score="auto"`` scores by.

    ``grouped_share``: the share of the reference rows (:func:`reference_sample`, against themselves) whose k-th
    neighbour at the smallest k is under half as far as at the largest k, the mean over the spec's views. In a
    *grouped* pool (at least :data:`GROUPED_SHARE`: templated or generated problems, where a kind's rows are near
    copies) a rare kind is a group smaller than the large ks, sparse there: ``"distance"``. In an *ungrouped* pool
    (natural writing, where distances to the near and the far rows hardly differ) every row is sparse at every k,
    and it takes the rows sparsest by their words (rows from another source stand out there), or a small group that
    is near at a small k and far at a larger one, whichever ranks higher: ``"groups"``.

    Example:
        >>> pool_shape(fit_rarity(texts, model="smollm2-135m-instruct", score="distance"), texts)  # doctest: +SKIP
        {'grouped_share': 0.71, 'score': 'distance'}
    """
    texts = list(texts)
    settings = spec["settings"]
    reference, ks = reference_sample(len(texts), settings, seed=seed)
    if len(ks) < 2:  # one scale: nothing to compare; "drop" could not run either
        return {"grouped_share": None, "score": "distance"}
    if views is None:  # the reference rows' views; ``views``: the whole pool's, already computed
        sample = view_matrices(spec, [texts[i] for i in reference])
    else:
        sample = {name: x[reference] for name, x in views.items()}
    shares = []
    for x in sample.values():
        dist = _kth_distances(x, np.arange(x.shape[0]), [ks[0], ks[-1]])
        shares.append(float(np.mean(dist[:, 0] < 0.5 * dist[:, 1])))
    share = float(np.mean(shares))
    return {"grouped_share": round(share, 4), "score": "distance" if share >= GROUPED_SHARE else "groups"}


def scoring_settings(spec: dict) -> dict:
    """The spec's settings with ``score="auto"`` replaced by the rule :func:`pool_shape` chose when it was fitted:
    what :func:`rarity_scores` takes."""
    settings = dict(spec["settings"])
    if settings["score"] == "auto":
        settings["score"] = spec["shape"]["score"]
    return settings


def _student_view(spec: dict, vectors: np.ndarray) -> np.ndarray:
    """The student view's rows: pooled ``vectors`` centred on the pool mean the spec saved, at unit length."""
    return unit_rows(vectors, np.asarray(spec["center"], dtype=np.float32))


def view_matrices(spec: dict, texts: Sequence[str], *, views: Sequence[str] | None = None) -> dict:
    """Each view of ``texts`` under a fitted spec (or only ``views``): ``"student"`` dense unit rows, ``"lexical"``
    sparse unit rows. The first view is the one regions and their radius live in."""
    out = {}
    for view in spec["settings"]["views"] if views is None else views:
        if view == "student":
            vectors = _student_vectors(spec["token_weights"], _tokenize(spec["model"], texts))
            out[view] = _student_view(spec, vectors)
        else:
            out[view] = lexical_matrix(spec["lexical"], texts)
    return out


def _kth_distances(x, reference: np.ndarray, ks: Sequence[int], block: int | None = None) -> np.ndarray:
    """(n, len(ks)) cosine distances of each row of ``x`` to its k-th nearest reference row (itself excluded).

    Rows are compared ``block`` at a time; by default as many as keep one block's similarities near 256 MB (2,048
    against the default 8,000-row reference, 83 against a 400k-row one), so memory does not grow with the
    reference (an exact check at 400k rows would otherwise hold 6.5 GB per block, several times over)."""
    import scipy.sparse as sp

    if block is None:
        block = int(min(2048, max(16, _BLOCK_BYTES // (8 * max(len(reference), 1)))))

    ref = x[reference]
    in_ref = np.full(x.shape[0], -1, dtype=np.int64)
    in_ref[reference] = np.arange(len(reference))
    out = np.empty((x.shape[0], len(ks)), dtype=np.float64)
    if sp.issparse(ref) and ref.shape[0] * ref.shape[1] * 4 <= _DENSE_REFERENCE_BYTES:
        ref = ref.toarray()  # sparse rows x a dense reference: much faster than a sparse x sparse product
    ref_t = ref.T.tocsr() if sp.issparse(ref) else np.ascontiguousarray(ref.T)
    for start in range(0, x.shape[0], block):
        rows = x[start : start + block]
        sims = rows @ ref_t
        sims = sims.toarray() if sp.issparse(sims) else np.asarray(sims)
        own = in_ref[start : start + block]
        mine = np.flatnonzero(own >= 0)
        sims[mine, own[mine]] = -np.inf  # a reference row is not its own neighbour
        out[start : start + block] = 1.0 - _kth_largest(sims, ks)
    return out


def rarity_scores(views: dict, settings: dict, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each row's score and the first view's distance at the middle k (the region radius the coverage report reads).

    ``score="distance"``: each (view, k) k-th-neighbour distance is ranked in [0, 1] (1 = sparsest); ``"drop"``: each
    view's largest rise of the log distance from one k to the next is. ``combine="every"`` multiplies each view's
    best rank, ``"best"`` / ``"mean"`` take the best / mean rank over views and columns. ``"groups"``: the first
    view's distances as under ``"distance"``; a row's score is then raised to its small-group rank (the rank of its
    largest rise of the log distance from one k to the next, the largest k left out, multiplied over every view)
    where that is higher. ``settings["score"]`` must be resolved (:func:`scoring_settings`).

    With a reference sample smaller than the pool and ``refine`` > 0, rows are scored again from their exact
    k-th-neighbour distances in the whole pool (k scaled from the sample to the pool): in each view, the ``refine``
    best-scored rows and the ``refine`` best rows of each of the view's columns. In each column they keep the set of
    ranks the sample gave them, dealt out again in their exact order (rows tied there share the mean of theirs, as
    tied rows do in the exact search), so their ranks stay on the pool's scale (which the product over views needs)
    while their order is the exact search's. With a column's own best rows among them, the top ranks of every column,
    where the centres' ranks come from, are the exact search's (docs/selection-benchmark.md, "Scale"), at a cost of
    up to (1 + columns) x refine x pool rows per view.
    """
    if settings["score"] not in ("distance", "drop", "groups"):
        raise ValueError(f"score={settings['score']!r} must be resolved first: pass scoring_settings(spec).")
    n = next(iter(views.values())).shape[0]
    reference, ks = reference_sample(n, settings, seed=seed)
    if settings["score"] in ("drop", "groups") and len(ks) < 2:
        raise ValueError(f"score={settings['score']!r} needs at least two distinct k (fractions) to compare.")
    columns, radius, groups = {}, None, []
    how = settings["score"]
    for view in settings["views"]:
        # rounded: a dense product's last bits move with threads and load, and must not reorder rows at equal distance
        dist = np.round(_kth_distances(views[view], reference, ks), 6)
        dist[_empty_rows(views[view])] = 0.0  # a row with no word of the view is not a region: least sparse
        if radius is None:
            radius = dist[:, len(ks) // 2]
        if how == "groups":  # every view's small-group rank; only the first view's distances rank sparsity
            groups.append(_rank01(_small_group_rise(dist)))
            if len(groups) > 1:
                continue
        columns[view] = _columns(dist, how)
    ranks = {view: _ranks(c) for view, c in columns.items()}
    combine = settings.get("combine", "mean")  # a spec saved before "best" existed was fitted with the mean
    score = _combine(ranks, combine)
    refine = min(int(settings.get("refine", 0)), n) if len(reference) < n - 1 else 0
    if refine:
        best = np.argsort(-score, kind="stable")[:refine]
        pool_ks = [min(n - 1, max(1, round(k * (n - 1) / len(reference)))) for k in ks]
        for view, sampled in columns.items():
            tops = [np.argsort(-sampled[:, j], kind="stable")[:refine] for j in range(sampled.shape[1])]
            rows = np.unique(np.concatenate([best, *tops]))
            exact = np.round(_pool_kth_distances(views[view], rows, pool_ks), 6)
            exact[_empty_rows(views[view])[rows]] = 0.0
            exact = _columns(exact, how)
            for j in range(exact.shape[1]):
                ranks[view][rows, j] = _deal(ranks[view][rows, j], exact[:, j])
        score = _combine(ranks, combine)
    if groups:  # "groups": sparse in the first view, or in a small group in every view, whichever ranks higher
        score = np.maximum(score, np.prod(groups, axis=0))
    return score, radius


def _small_group_rise(dist: np.ndarray) -> np.ndarray:
    """The largest rise of the log k-th-neighbour distance from one k to the next, the largest k left out (a group
    that is near up to the largest k is as large as the largest scale: a common kind), rounded like the distances.

    Example:
        >>> _small_group_rise(np.array([[0.1, 0.1, 0.8, 0.9], [0.5, 0.6, 0.6, 0.9]])).round(2).tolist()
        [2.08, 0.18]
    """
    return _largest_log_rise(dist[:, :-1] if dist.shape[1] > 2 else dist)  # two scales: their one rise


def _deal(held: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """The ranks ``held`` dealt out again in the order of ``exact`` (the lowest rank to the lowest value); rows with
    equal ``exact`` values share the mean of the ranks dealt to them, as rankdata's average gives tied rows.

    Example:
        >>> _deal(np.array([0.9, 0.5, 0.7, 0.6]), np.array([0.3, 0.1, 0.3, 0.2])).tolist()
        [0.8, 0.5, 0.8, 0.6]
    """
    dealt = np.sort(held)[np.argsort(np.argsort(exact, kind="stable"), kind="stable")]
    _, group = np.unique(exact, return_inverse=True)
    return (np.bincount(group, dealt) / np.bincount(group))[group]


def _columns(dist: np.ndarray, how: str) -> np.ndarray:
    """What one view ranks rows by, from their (rows, ks) k-th-neighbour distances: those distances
    (``"distance"``, and the first view's under ``"groups"``), or the largest rise of their log from one k to the next
    (``"drop"``, one column: near at a small k and far at the next larger one is a small group, however near or far
    the rest of the pool is)."""
    if how in ("distance", "groups"):
        return dist
    return _largest_log_rise(dist)[:, None]


def _largest_log_rise(dist: np.ndarray) -> np.ndarray:
    """Each row's largest rise of its log k-th-neighbour distance from one k to the next, rounded like the
    distances (what ``"drop"`` ranks, and ``"groups"`` without the largest k)."""
    return np.round(np.diff(np.log(np.maximum(dist, 1e-6)), axis=1).max(axis=1), 6)


def _ranks(columns: np.ndarray) -> np.ndarray:
    return np.stack([_rank01(columns[:, j]) for j in range(columns.shape[1])], axis=1)


def _combine(ranks: dict, combine: str) -> np.ndarray:
    """One score per row from its per-view (rows, columns) ranks."""
    if combine == "every":  # each view's best column; rare in every view
        return np.prod([r.max(axis=1) for r in ranks.values()], axis=0)
    stacked = np.concatenate(list(ranks.values()), axis=1)  # (rows, views x columns)
    return stacked.max(axis=1) if combine == "best" else stacked.mean(axis=1)


def _pool_kth_distances(x, rows: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """(len(rows), len(ks)) cosine distances of ``rows`` to their k-th nearest pool row (self excluded)."""
    out = np.empty((len(rows), len(ks)), dtype=np.float64)
    for start, sims in _pool_similarities(x, rows, block=256):
        out[start : start + len(sims)] = 1.0 - _kth_largest(sims, ks)
    return out


def _pool_similarities(x, rows: np.ndarray, *, block: int):
    """``(start, sims)`` for ``rows[start : start + block]``: their cosine similarities to every pool row (themselves
    at -inf), ``block`` rows at a time, so memory is pool rows x ``block`` whatever the pool size."""
    import scipy.sparse as sp

    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        queries = x[chunk].toarray() if sp.issparse(x) else x[chunk]
        sims = np.asarray(x @ queries.T).T  # (chunk, pool rows)
        sims[np.arange(len(chunk)), chunk] = -np.inf
        yield start, sims


def _kth_largest(sims: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """(rows, len(ks)): each row's k-th largest value for every k in ``ks`` (1-based), exactly.

    Two partitions: one at the largest k over the whole row, then one at the other ks within the top slice it leaves
    (8% of the row at the default scales). A single partition at every k walks the whole row once per k; a sort of
    the top would order 32,000 values a row at 400k rows. Rows are split over one thread per available core, up to
    8 (numpy's partition releases the GIL)."""
    kth = np.asarray(ks) - 1
    last = int(kth.max())
    smaller = np.unique(kth[kth < last])
    negated = np.negative(sims, out=sims)  # sims is the caller's scratch block

    def part(chunk: np.ndarray) -> np.ndarray:
        top = np.partition(chunk, last, axis=1)[:, : last + 1]  # column ``last``: the k-th at the largest k
        if len(smaller):
            top[:, :last] = np.partition(top[:, :last], smaller, axis=1)
        return -top[:, kth]

    return _over_rows(part, negated)


def _over_rows(fn, block: np.ndarray) -> np.ndarray:
    """``fn`` of ``block``, its rows split over one thread per available core (up to 8, at least 32 rows each),
    the results stacked in row order."""
    n_threads = min(_cores(), 8, len(block) // 32)
    if n_threads < 2:
        return fn(block)
    with ThreadPoolExecutor(n_threads) as pool:
        return np.concatenate(list(pool.map(fn, np.array_split(block, n_threads))))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def reference_sample(n: int, settings: dict, *, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """The reference rows sparsity is measured against (``reference_size`` rows drawn with ``seed``, all but one row
    of a smaller pool) and the ks (``fractions`` of it, at least ``min_k``), ascending.

    Example:
        >>> reference, ks = reference_sample(1000, {**DEFAULTS, "reference_size": 500})
        >>> len(reference), ks
        (500, [5, 10, 20, 40])
    """
    size = min(n - 1, settings["reference_size"])
    reference = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    ks = sorted({min(size - 1, max(settings["min_k"], round(f * size))) for f in settings["fractions"]})
    return reference, ks


def _empty_rows(x) -> np.ndarray:
    """Rows of a view that are all zero (every word of the text left out of the vocabulary)."""
    return np.asarray(abs(x).sum(axis=1)).ravel() == 0


def _rank01(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return (rankdata(values) - 1) / max(len(values) - 1, 1)


def rarity_seed_pairs(ds: datasets.Dataset, **kwargs) -> tuple[datasets.Dataset, datasets.Dataset, dict]:
    """The ``rarity`` selector end to end: ``(regions, pairs, spec)`` of :func:`rarity_selection` (same arguments)."""
    chosen = rarity_selection(ds, **kwargs)
    return chosen.regions, chosen.pairs, chosen.spec


@dataclass(frozen=True)
class RaritySelection:
    """What :func:`rarity_selection` chose, and every pool row's ``score`` (the order centres are taken in) and
    ``radius`` (its k-th-neighbour distance at the middle k in the first view: what the figures and the coverage
    report read)."""

    regions: datasets.Dataset
    pairs: datasets.Dataset
    spec: dict
    score: np.ndarray
    radius: np.ndarray


def rarity_selection(
    ds: datasets.Dataset,
    *,
    n_pairs: int,
    model: str,
    text_column: str = "question",
    coords_column: str = "coords",
    spec: dict | None = None,
    seed: int = 0,
    pairing: str = "near",
    fitted_views: dict | None = None,
    **settings,
) -> RaritySelection:
    """The ``rarity`` selector end to end, with every row's score and radius kept (the selector's figures reuse
    them); pass the returned ``spec`` back to get the same selection from the saved fitted parts (``settings`` are
    then ignored). ``fitted_views``: the texts' views under ``spec`` when already computed (:func:`fit_with_views`);
    ``settings`` (``views`` among them: which views to fit) go to :func:`fit_rarity`.

    ``regions`` / ``pairs`` have the columns of :func:`~.knn_regions.knn_seed_pairs`'s (``knn_distance``: the
    centre's k-th-neighbour distance at the middle k in the first view; ``k``: that k).
    """
    from .knn_regions import PAIRINGS, _check_int, _make_pairs

    n_pairs = _check_int(n_pairs, "n_pairs", 1)
    seed = _check_int(seed, "seed", 0)
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing={pairing!r} is not supported; choose one of {list(PAIRINGS)}.")
    require_columns(ds, [text_column, coords_column])
    require_rows(ds, step="the rarity selector")
    texts = [str(t) for t in ds[text_column]]
    views = fitted_views
    if spec is None:
        if views is not None:
            raise ValueError("fitted_views needs the spec they were computed under (fit_with_views).")
        spec, views = fit_with_views(texts, model=model, **settings)
    s = spec["settings"]
    if len(ds) <= max(s["hood_k"], s["min_k"]) + 1:
        raise ValueError(
            f"The rarity selector needs more than {max(s['hood_k'], s['min_k']) + 1} rows; got {len(ds)}."
        )
    if views is None:
        views = view_matrices(spec, texts)
    elif list(views) != list(s["views"]) or any(x.shape[0] != len(texts) for x in views.values()):
        raise ValueError(f"fitted_views must be the {s['views']} views of the {len(texts)} texts (fit_with_views).")
    score, radius = rarity_scores(views, scoring_settings(spec), seed=seed)
    n = len(ds)
    order = np.lexsort((np.random.default_rng(seed).random(n), -score))
    first = views[s["views"][0]]
    coords = vector_matrix(ds, coords_column)
    dense = first if isinstance(first, np.ndarray) else None
    walked = min(n, 4 * n_pairs + 64)
    while True:
        centres = order[:walked]
        members = np.concatenate([centres[:, None], nearest_rows(first, centres, s["hood_k"])], axis=1)
        regions = _regions(centres, members, radius, coords, spec, seed)
        space = dense if dense is not None else _DenseRows(first)
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            pairs = _make_pairs(space, coords, regions, n_pairs=n_pairs, pairing=pairing)
        if len(pairs) >= n_pairs or walked >= n:
            for w in caught:
                warnings.warn(w.message, w.category, stacklevel=2)
            break
        walked = min(n, walked * 2)
    used = np.unique(np.asarray(pairs["region_id"], dtype=np.int64))
    return RaritySelection(regions.select(used.tolist()), pairs, spec, score, radius)


class _DenseRows:
    """Rows of a sparse view, made dense as they are read (``x[i]``: 1-D; ``x[rows]``: 2-D): what the pairing reads."""

    def __init__(self, matrix):
        self.matrix = matrix

    def __getitem__(self, rows):
        dense = self.matrix[rows].toarray()
        return dense[0] if np.ndim(rows) == 0 else dense


def nearest_rows(x, centres: np.ndarray, hood_k: int) -> np.ndarray:
    """The ``hood_k`` nearest rows of each of ``centres`` in the whole view ``x`` (exact, cosine; itself excluded),
    nearest first; 64 centres at a time."""
    out = np.empty((len(centres), hood_k), dtype=np.int64)
    for start, sims in _pool_similarities(x, centres, block=64):
        top = np.argpartition(-sims, hood_k - 1, axis=1)[:, :hood_k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[start : start + len(sims)] = np.take_along_axis(top, order, axis=1)
    return out


def _regions(centres, members, radius, coords, spec, seed) -> datasets.Dataset:
    """The regions dataset: the common schema (``space/regions.py``) with the k-NN selector's columns."""
    from .knn_regions import KNN_REGION_FEATURES
    from .regions import regions_dataset

    _, ks = reference_sample(len(coords), spec["settings"], seed=seed)
    boxes = coords[members]
    n = len(centres)
    columns = {
        "region_id": pa.array(np.arange(n, dtype=np.int64)),
        "lower": fixed_size_list(boxes.min(axis=1).astype(np.float64)),
        "upper": fixed_size_list(boxes.max(axis=1).astype(np.float64)),
        "count": pa.array(np.full(n, members.shape[1], dtype=np.int64)),
        "members": pa.array(members.tolist(), pa.list_(pa.int64())),
        "centre": pa.array(centres.astype(np.int64)),
        "knn_distance": pa.array(radius[centres].astype(np.float64)),
        "k": pa.array(np.full(n, ks[len(ks) // 2], dtype=np.int64)),
        "density_dims": pa.array([None] * n, pa.int64()),
        "seed": pa.array(np.full(n, seed, dtype=np.int64)),
    }
    return regions_dataset(columns, k=coords.shape[1], extra=KNN_REGION_FEATURES)
