"""The selection benchmark: do the seed selectors find rare kinds on pools from sources nobody tuned them on?

Pools (:data:`POOLS`) are drawn from four independent sources (``data/bench_sources.py``): the built-in word-problem
generator (the **tuning** source), GSM8K train (real text, topics as kinds: varied wording), DeepMind's
``mathematics_dataset`` (modules as kinds: tight templates; in six of its pools the rare modules are drawn at
random) and the MMLU test set (real exam questions, subjects as kinds), the last three **held out**; four more
pools mix MMLU's mathematics questions into GSM8K (the rare kind is a change of source; in two of them no other MMLU
subject is in the pool). In each pool some kinds are made rare (0.5-5%).
Lift = rare share of the chosen seeds (2 per pair, repeats count) / rare share of the pool. The report gives lift per
pool and selector, the mean and the worst case over held-out and tuning pools::

    embedsdg testbed --part selection [--quick] --output-dir outputs/selection

Only the benchmark reads the ``kind`` column; the selectors see the texts / embeddings.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "POOLS",
    "RANDOM_MD_DRAW",
    "TUNE_SOURCES",
    "BenchPool",
    "best_per_pool",
    "build_pool",
    "kind_visibility",
    "pool_group",
    "run_selection_bench",
    "selector_rows",
]

#: Sources the selector's defaults were chosen on; every other source is held out.
TUNE_SOURCES: tuple[str, ...] = ("word_problems",)
#: How the ``md-rand*`` pools' rare modules were drawn (before any selector ran on them): ``numpy.random.
#: default_rng(seed).choice(MATH_DATASET_MODULES, n, replace=False)`` once per pool, in order, with these n.
RANDOM_MD_DRAW: tuple[int, tuple[int, ...]] = (2028, (3, 3, 3, 3, 2, 2))


@dataclass(frozen=True)
class BenchPool:
    """One benchmark pool: ``n`` rows of ``source`` with each of ``rare`` at ``rare_share``."""

    name: str
    source: str
    n: int
    rare: tuple[str, ...]
    rare_share: float
    shape: str  # "template" (instances differ in names / numbers), "wording" (a topic written many ways) or "source"
    # (rows from another source mixed in)
    quick: bool = False
    seed: int = 0
    drawn: bool = False  # the rare kinds were drawn at random before any selector ran on the pool, not picked


POOLS: tuple[BenchPool, ...] = (
    BenchPool("wp-4x1%", "word_problems", 3000, ("ages", "inventory", "reading_pages", "unit_price"), 0.01,
              "template", quick=True),
    BenchPool("wp-2x2%", "word_problems", 3000, ("compare_collections", "shopping_change"), 0.02, "template"),
    BenchPool("wp-3x0.5%-8k", "word_problems", 8000, ("rectangle_area_perimeter", "savings", "work_rate"), 0.005,
              "template"),
    BenchPool("gsm-3x1%", "gsm8k", 3000, ("age", "speed", "time_clock"), 0.01, "wording", quick=True),
    BenchPool("gsm-2x0.5%-6k", "gsm8k", 6000, ("percent", "speed"), 0.005, "wording"),
    BenchPool("gsm-age5%", "gsm8k", 4000, ("age",), 0.05, "wording"),
    BenchPool("gsm-frac2%", "gsm8k", 4000, ("fraction",), 0.02, "wording"),
    BenchPool("md-3x1%", "math_dataset", 3000,
              ("probability__swr_p_level_set", "numbers__place_value", "numbers__is_prime"), 0.01, "template",
              quick=True),
    BenchPool("md-2x0.5%-7.5k", "math_dataset", 7500, ("measurement__conversion", "algebra__sequence_next_term"),
              0.005, "template"),
    BenchPool("md-1x3%", "math_dataset", 4000, ("numbers__div_remainder",), 0.03, "template"),
    BenchPool("md-4x1%-20k", "math_dataset", 20000,
              ("probability__swr_p_sequence", "numbers__round_number", "comparison__sort", "numbers__gcd"), 0.01,
              "template"),
    # mathematics_dataset with its rare modules drawn at random (RANDOM_MD_DRAW; the pools above were picked by
    # hand): a kind a selector prefers whatever its share cannot lift these on average
    BenchPool("md-rand1-3x1%", "math_dataset", 3000,
              ("probability__swr_p_level_set", "measurement__time", "comparison__kth_biggest"), 0.01, "template",
              drawn=True),
    BenchPool("md-rand2-3x1%", "math_dataset", 3000,
              ("numbers__div_remainder", "comparison__pair", "probability__swr_p_level_set"), 0.01, "template",
              drawn=True),
    BenchPool("md-rand3-3x1%", "math_dataset", 3000,
              ("arithmetic__nearest_integer_root", "comparison__kth_biggest", "comparison__closest"), 0.01,
              "template", drawn=True),
    BenchPool("md-rand4-3x1%", "math_dataset", 3000,
              ("polynomials__evaluate", "comparison__closest", "comparison__sort"), 0.01, "template", drawn=True),
    BenchPool("md-rand5-2x1%-7.5k", "math_dataset", 7500, ("comparison__pair", "algebra__linear_1d"), 0.01,
              "template", drawn=True),
    BenchPool("md-rand6-2x1%-7.5k", "math_dataset", 7500, ("arithmetic__mixed", "algebra__sequence_next_term"), 0.01,
              "template", drawn=True),
    # MMLU: rare subjects drawn at random (numpy default_rng(2026)) among those with enough rows, before any
    # selector ran on them
    BenchPool("mmlu-3x1%-3k", "mmlu", 3000, ("anatomy", "philosophy", "college medicine"), 0.01, "wording",
              quick=True, drawn=True),
    BenchPool("mmlu-2x0.5%-8k", "mmlu", 8000, ("clinical knowledge", "high school government and politics"), 0.005,
              "wording", drawn=True),
    BenchPool("mmlu-1x3%-4k", "mmlu", 4000, ("international law",), 0.03, "wording", drawn=True),
    BenchPool("mmlu-4x1%-6k", "mmlu", 6000, ("nutrition", "global facts", "moral disputes", "machine learning"), 0.01,
              "wording", drawn=True),
    BenchPool("mmlustem-2x1%-2k", "mmlu_stem", 2000, ("formal logic", "high school biology"), 0.01, "wording",
              drawn=True),
    BenchPool("gsm+mmlu-2x1%-3k", "gsm8k+mmlu", 3000, ("high school statistics", "college mathematics"), 0.01,
              "source"),
    BenchPool("gsm+mmlu-1x0.5%-6k", "gsm8k+mmlu", 6000, ("elementary mathematics",), 0.005, "source"),
    # the same plants with no other MMLU subject in the pool: the rare kind is the change of source alone
    BenchPool("gsm+mmlu-only-2x1%-3k", "gsm8k+mmlu-planted", 3000, ("high school statistics", "college mathematics"),
              0.01, "source"),
    BenchPool("gsm+mmlu-only-1x0.5%-6k", "gsm8k+mmlu-planted", 6000, ("elementary mathematics",), 0.005, "source"),
)  # fmt: skip


@dataclass
class _Sources:
    """Source rows, built once per run (``mathematics_dataset`` takes ~4 ms a question)."""

    gsm8k_path: str
    md_per_module: int = 0  # questions per mathematics_dataset module: enough for the largest pool of the run
    cache: dict = field(default_factory=dict)

    def rows(self, pool: BenchPool):
        from ..data import bench_sources as src

        if pool.source == "word_problems":
            key, build = ("wp", pool.n), lambda: src.word_problem_rows(2 * pool.n, seed=1000 + pool.n)
        elif pool.source == "gsm8k":
            key, build = ("gsm8k",), lambda: src.gsm8k_rows(self.gsm8k_path)
        elif pool.source in ("mmlu", "mmlu_stem"):
            subjects = src.MMLU_STEM if pool.source == "mmlu_stem" else None
            key, build = (pool.source,), lambda: src.mmlu_rows(subjects=subjects)
        elif pool.source == "gsm8k+mmlu":
            key, build = ("gsm8k+mmlu",), lambda: src.gsm8k_mmlu_rows(self.gsm8k_path)
        elif pool.source == "gsm8k+mmlu-planted":  # only the planted subjects come from MMLU
            key, build = (
                ("gsm8k+mmlu-planted", pool.rare),
                lambda: src.gsm8k_mmlu_rows(self.gsm8k_path, subjects=pool.rare),
            )
        elif pool.source == "math_dataset":
            per = max(self.md_per_module, _md_per_module(pool))
            key, build = ("md", per), lambda: src.math_dataset_rows(per, seed=pool.seed)
        else:
            raise ValueError(f"Unknown benchmark source {pool.source!r}.")
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


_MIXES = ("gsm8k+mmlu", "gsm8k+mmlu-planted")  # sources that read both GSM8K and MMLU


def _check_sources(pools: Sequence[BenchPool], gsm8k_path: str) -> None:
    """Fail before any pool runs when a source the run needs is missing (not minutes in, at its first pool)."""
    from ..data import bench_sources as src

    sources = {p.source for p in pools}
    if sources & {"gsm8k", *_MIXES} and not Path(gsm8k_path).is_file():
        raise ValueError(f"GSM8K file {gsm8k_path} does not exist; point gsm8k_path at GSM8K's train.jsonl.")
    if sources & {"mmlu", "mmlu_stem", *_MIXES}:
        src.mmlu_file()
    if "math_dataset" in sources:
        src._import_math_dataset()


def _md_per_module(pool: BenchPool) -> int:
    from ..data.bench_sources import MATH_DATASET_MODULES

    return -(-pool.n // (len(MATH_DATASET_MODULES) - len(pool.rare))) + 20


def build_pool(pool: BenchPool, sources: _Sources):
    """The pool's rows (``question``, ``answer``, ``kind``)."""
    from ..data.bench_sources import make_kind_pool

    return make_kind_pool(
        sources.rows(pool), n=pool.n, rare_kinds=pool.rare, rare_share=pool.rare_share, seed=pool.seed
    )


def kind_visibility(pool, rare_kinds: Sequence[str], *, model: str, neighbours: int = 5, seed: int = 0) -> dict:
    """Can a selector that reads the text see the pool's rare kinds at all?

    For each rare kind: its ``share`` of the pool and the share of its rows' ``neighbours`` nearest rows (exact
    cosine) that are of the same kind, in each of the ``rarity`` default's views: ``lexical`` (TF-IDF, numbers
    masked) and ``student`` (the student's mean token embedding of the question, numbers masked, centred). A kind
    that is a region of the view is near 1; a kind the view scatters among the rest is near its share, and no
    selector that ranks rows by their neighbours can tell its rows from the others. ``score_auc``: how well the
    default's rarity score ranks the rare rows above the others (0.5 = no information; below 0.5 = the rare rows
    look *denser* than the rest), before any region or pair is chosen.

    Example:
        >>> kind_visibility(pool, ["ages"], model="smollm2-135m-instruct")  # doctest: +SKIP
        {'kinds': {'ages': {'share': 0.01, 'lexical': 1.0, 'student': 0.97}}, 'score_auc': 0.98}
    """
    from scipy.stats import rankdata

    from ..space.rarity import fit_rarity, nearest_rows, rarity_scores, scoring_settings, view_matrices

    texts = [str(t) for t in pool["question"]]
    kinds = np.asarray(pool["kind"])
    spec = fit_rarity(texts, model=model)  # the default selector's settings and views
    views = view_matrices(spec, texts)
    spaces = {name: views[name] for name in ("lexical", "student") if name in views}
    rows = np.flatnonzero(np.isin(kinds, list(rare_kinds)))
    same = {
        name: (kinds[nearest_rows(x, rows, neighbours)] == kinds[rows, None]).mean(1) for name, x in spaces.items()
    }
    out = {}
    for kind in dict.fromkeys(rare_kinds):
        mine = kinds[rows] == kind
        out[kind] = {"share": round(float((kinds == kind).mean()), 4)}
        out[kind].update({name: round(float(hits[mine].mean()), 3) for name, hits in same.items()})
    score, _ = rarity_scores(views, scoring_settings(spec), seed=seed)
    rare = np.isin(kinds, list(rare_kinds))
    ranks = rankdata(score)
    n_rare, n_rest = int(rare.sum()), int((~rare).sum())
    auc = (ranks[rare].sum() - n_rare * (n_rare + 1) / 2) / (n_rare * n_rest)
    return {"kinds": out, "score_auc": round(float(auc), 3), "pool_shape": spec.get("shape")}


def selector_rows() -> list[tuple[str, str, dict]]:
    """(label, kind, settings) of every selector the benchmark runs; ``rarity`` settings go to ``fit_rarity``."""
    from ..space.rarity import DEFAULTS

    d = {
        **DEFAULTS,
        "views": ("student", "lexical"),
        "token_weights": "sif",
        "score": "distance",
        "fractions": (0.005, 0.01, 0.02),
        "combine": "mean",
        "word_weights": "tfidf",
    }  # the rows below measured the mean rank over scales (the default until 2026-12-06)
    best = {
        **DEFAULTS,
        "score": "distance",
        "fractions": (0.005, 0.01, 0.02, 0.04, 0.08),
        "combine": "best",
        "word_weights": "tfidf",
    }  # every row below but the pipeline's own default reads TF-IDF in the lexical view (the default until the
    # tenth round of 2026-12-07)
    every = {**best, "views": ("lexical", "student"), "token_weights": "mean", "combine": "every"}
    drop = {"score": "drop", "fractions": (0.0025, 0.01, 0.04)}
    return [
        ("RandomSDG (uniform seeds)", "random", {}),
        ("grid (paper defaults)", "grid", {}),
        ("rarity (the pipeline default, as `embedsdg run` runs it)", "default", {}),
        ("knn (mean, k=20; the default before this benchmark)", "knn", {}),
        ("lexical TF-IDF, numbers masked, k=0.5/1/2%", "rarity", {**d, "views": ("lexical",)}),
        ("student SIF, numbers masked, k=0.5/1/2%", "rarity", {**d, "views": ("student",)}),
        ("student IDF, numbers masked, k=0.5/1/2%", "rarity", {**d, "views": ("student",), "token_weights": "idf"}),
        ("student mean, numbers masked, k=0.5/1/2%", "rarity",
         {**d, "views": ("student",), "token_weights": "mean"}),
        ("student SIF, numbers kept, k=0.5/1/2%", "rarity", {**d, "views": ("student",), "numbers": "keep"}),
        ("student SIF, numbers masked, k=1% only", "rarity", {**d, "views": ("student",), "fractions": (0.01,)}),
        ("student SIF + lexical, k=0.5/1/2%", "rarity", {**d, "score": "distance"}),
        ("student mean + lexical, k=0.5/1/2%", "rarity", {**d, "token_weights": "mean"}),
        ("lexical TF-IDF, numbers masked, k=1/2/4%, mean rank (the rarity default until 2026-12-06)", "rarity",
         {**d, "views": ("lexical",), "fractions": (0.01, 0.02, 0.04)}),
        ("lexical, k=0.5/1/2/4/8%, best rank over scales (the rarity default until the 3rd round of 2026-12-06)",
         "rarity", {**best, "views": ("lexical",)}),
        ("lexical word presence (each word once, no IDF), k=0.5/1/2/4/8%, best rank over scales", "rarity",
         {**best, "views": ("lexical",), "word_weights": "presence"}),
        ("student mean, numbers masked, k=0.5/1/2/4/8%, best rank", "rarity",
         {**best, "views": ("student",), "token_weights": "mean"}),
        ("lexical + student mean, k=0.5/1/2/4/8%, best rank", "rarity",
         {**best, "views": ("lexical", "student"), "token_weights": "mean"}),
        ("lexical x student mean, k=0.5/1/2/4/8%, each view's best rank multiplied (the rarity default on every pool "
         "until the 4th round of 2026-12-06; now on grouped pools)", "rarity", every),
        ("drop: lexical + student mean, k=0.5/1/2/4/8% (the rarity default on ungrouped pools until the 7th round "
         "of 2026-12-06)", "rarity", {**every, "score": "drop"}),
        ("groups: the lexical view's best rank, or the small-group rank in both views if higher (the rarity default "
         "on ungrouped pools)", "rarity", {**every, "score": "groups"}),
        ("rarity default with TF-IDF in the lexical view (word_weights=tfidf; the default until the 10th round of "
         "2026-12-07)", "rarity", {**every, "score": "auto"}),
        ("rarity default with TF-IDF and a 5-row region (hood_k=5; the default until the 8th round of 2026-12-06)",
         "rarity",
         {**every, "score": "auto", "hood_k": 5}),
        ("lexical, k=1/2/4%, words in < 3 rows left out", "rarity",
         {**d, "views": ("lexical",), "fractions": (0.01, 0.02, 0.04), "min_df": 3}),
        ("lexical, k=1/2/4%, words in < 0.2% of rows left out, % and $ as words", "rarity",
         {**d, "views": ("lexical",), "fractions": (0.01, 0.02, 0.04), "min_df": 0.002, "symbols": True}),
        ("drop: lexical, k=0.25/1/4%", "rarity", {**d, **drop, "views": ("lexical",)}),
        ("drop: student SIF, k=0.25/1/4%", "rarity", {**d, **drop, "views": ("student",)}),
        ("drop: student mean, k=0.25/1/4%", "rarity", {**d, **drop, "views": ("student",), "token_weights": "mean"}),
        ("drop: student SIF + lexical, k=0.25/1/4%", "rarity", {**d, **drop}),
        ("drop: student mean + lexical, k=0.25/1/4%", "rarity", {**d, **drop, "token_weights": "mean"}),
    ]  # fmt: skip


def _seeds(kind: str, settings: dict, pool, n_pairs: int, seed: int, model: str) -> np.ndarray:
    """The seeds of one benchmark row: ``grid`` / ``knn`` through the same selector calls as ``embedsdg run``
    (their defaults); the ``rarity`` rows through ``rarity_seed_pairs`` with the row's settings (variants that are
    not config fields)."""
    from ..config import PipelineConfig
    from .testbed import _selector_seeds

    if kind == "default":  # whatever `embedsdg run` selects with no selector setting
        return _selector_seeds(pool, PipelineConfig(n_pairs=n_pairs, seed=seed), model=model)
    if kind != "rarity":
        return _selector_seeds(pool, PipelineConfig(selector=kind, n_pairs=n_pairs, seed=seed), model=model)
    from ..space.rarity import rarity_seed_pairs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, pairs, _ = rarity_seed_pairs(pool, n_pairs=n_pairs, model=model, seed=seed, **settings)
    return np.concatenate([pairs["seed_a"], pairs["seed_b"]]).astype(np.int64)


def run_selection_bench(
    output_dir: str | Path,
    *,
    model: str = "smollm2-135m-instruct",
    quick: bool = False,
    pools: Sequence[str] | None = None,
    selectors: Sequence[str] | None = None,
    n_pairs: int = 60,
    seed: int = 0,
    pool_seed: int = 0,
    random_repeats: int = 100,
    gsm8k_path: str = "../shared/data/gsm8k/train.jsonl",
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run every selector of :func:`selector_rows` (or those labelled in ``selectors``; RandomSDG always) on the
    benchmark pools; write ``selection.{md,json}``. ``seed``: the selectors'; ``pool_seed``: which draw of every
    pool (its rows, and for mathematics_dataset its questions), so a result can be checked on a second draw."""
    import datasets

    chosen = [
        p for p in POOLS if (pools is None and (p.quick or not quick)) or (pools is not None and p.name in pools)
    ]
    if pools is not None and len(chosen) != len(set(pools)):
        raise ValueError(f"Unknown pool(s) in {list(pools)}; the pools are {[p.name for p in POOLS]}.")
    if not isinstance(pool_seed, int) or pool_seed < 0:
        raise ValueError(f"pool_seed must be an integer >= 0; got {pool_seed!r}.")
    chosen = [replace(p, seed=pool_seed) for p in chosen]
    _check_sources(chosen, gsm8k_path)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    per = max([_md_per_module(p) for p in chosen if p.source == "math_dataset"], default=0)
    sources, rows, started = _Sources(gsm8k_path, per), [], time.perf_counter()
    visibility = {}
    # the pipeline's selectors read the pool's embeddings and map; the rarity rows embed their own views
    needs_map = selectors is None or any(k != "rarity" for label, k, _ in selector_rows() if label in selectors)
    for spec in chosen:
        pool = build_pool(spec, sources)
        if needs_map:
            pool = _embed_and_map(pool, model, seed)
        else:  # only rarity rows: they embed their own views; a placeholder map for the region boxes
            vec = datasets.List(datasets.Value("float32"), length=2)
            pool = pool.add_column("coords", np.zeros((len(pool), 2), np.float32).tolist(), feature=vec)
        is_rare = np.isin(np.asarray(pool["kind"]), spec.rare)
        visibility[spec.name] = kind_visibility(pool, spec.rare, model=model, seed=seed)
        for label, kind, settings in selector_rows():
            if selectors is not None and label not in selectors and kind != "random":
                continue
            t0 = time.perf_counter()
            if kind == "random":
                draws = [np.random.default_rng(r).choice(len(pool), 2 * n_pairs) for r in range(random_repeats)]
                lift = float(np.mean([is_rare[d].mean() for d in draws]) / is_rare.mean())
                n_seeds, hit = 2 * n_pairs, None
            else:
                seeds = _seeds(kind, settings, pool, n_pairs, seed, model)
                lift = float(is_rare[seeds].mean() / is_rare.mean()) if len(seeds) else 0.0
                n_seeds = len(seeds)
                hit = len(set(np.asarray(pool["kind"])[seeds][is_rare[seeds]].tolist()))
            rows.append(
                {
                    "pool": spec.name,
                    "source": spec.source,
                    "held_out": spec.source not in TUNE_SOURCES,
                    "shape": spec.shape,
                    "n": spec.n,
                    "rare_share": round(float(is_rare.mean()), 4),
                    "selector": label,
                    "lift": round(lift, 2),
                    "rare_hit": hit,
                    "n_rare": len(spec.rare),
                    "n_seeds": n_seeds,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
        if progress:
            progress(f"{spec.name}: done ({time.perf_counter() - started:.0f}s)")
    report = {
        "pools": [spec.__dict__ for spec in chosen],
        "tune_sources": list(TUNE_SOURCES),
        "n_pairs": n_pairs,
        "pool_seed": pool_seed,
        "model": model,
        "rows": rows,
        "summary": _summary(rows),
        "visibility": visibility,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "selection.json").write_text(json.dumps(report, indent=2))
    (out / "selection.md").write_text(render_selection(report))
    return report


def _embed_and_map(pool, model: str, seed: int):
    """The embeddings the grid (training text) and the knn selector (question) read, and the 2-D PCA map."""
    from ..space.embed import add_embeddings
    from ..space.reduce import add_coords, fit_reducer
    from .testbed import INPUT_EMBEDDING

    pool = add_embeddings(pool, model=model, text_template="{question}\n{answer}")
    pool = add_embeddings(
        pool, model=model, text_template="{question}", column=INPUT_EMBEDDING, count_column="input_num_tokens"
    )
    return add_coords(pool, fit_reducer(pool, method="pca", n_components=2, seed=seed))


def _summary(rows: list[dict]) -> list[dict]:
    out = []
    for label in dict.fromkeys(r["selector"] for r in rows):
        mine = [r for r in rows if r["selector"] == label]
        entry = {"selector": label}
        for part, keep in (("held_out", True), ("tuning", False), ("all", None)):
            lifts = [r["lift"] for r in mine if keep is None or r["held_out"] == keep]
            entry[f"{part}_mean"] = round(float(np.mean(lifts)), 2) if lifts else None
            entry[f"{part}_worst"] = round(float(np.min(lifts)), 2) if lifts else None
            if lifts:
                worst = min((r for r in mine if keep is None or r["held_out"] == keep), key=lambda r: r["lift"])
                entry[f"{part}_worst_pool"] = worst["pool"]
            if part == "held_out":  # how often, not only whether, a selector takes no rare seed at all
                entry["held_out_zeros"] = sum(v == 0 for v in lifts) if lifts else None
                entry["held_out_median"] = round(float(np.median(lifts)), 2) if lifts else None
        out.append(entry)
    return out


def render_selection(report: dict) -> str:
    """The Markdown of a :func:`run_selection_bench` report."""
    pools = [p["name"] for p in report["pools"]]
    by = {(r["selector"], r["pool"]): r for r in report["rows"]}
    lines = [
        "# Selection benchmark",
        "",
        f"{report['n_pairs']} seed pairs per selector; lift = rare share of the seeds / rare share of the pool "
        f"(1 = uniform). Tuning source(s): {', '.join(report['tune_sources'])}; every other source is held out. "
        f"Student: {report['model']}. Draw of the pools: pool seed {report.get('pool_seed', 0)}.",
        "",
        "| pool | source | held out | kind shape | rows | rare kinds x share |",
        "|---|---|---|---|---|---|",
    ]
    for p in report["pools"]:
        held = "yes" if p["source"] not in report["tune_sources"] else "no (tuning)"
        rare = f"{len(p['rare'])} x {p['rare_share']:.1%} ({', '.join(p['rare'])})"
        lines.append(f"| {p['name']} | {p['source']} | {held} | {p['shape']} | {p['n']} | {rare} |")
    lines += [
        "",
        "## Lift per pool",
        "",
        "| selector | " + " | ".join(pools) + " | held-out mean | held-out median | held-out worst "
        "| held-out pools at 0 | tuning mean | tuning worst |",
        "|---|" + "---|" * (len(pools) + 6),
    ]
    for s in report["summary"]:
        cells = [f"{by[(s['selector'], p)]['lift']:.2f}" for p in pools]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        worst = fmt(s["held_out_worst"]) + (f" ({s['held_out_worst_pool']})" if s.get("held_out_worst_pool") else "")
        zeros = s.get("held_out_zeros")
        lines.append(
            f"| {s['selector']} | " + " | ".join(cells) + f" | {fmt(s['held_out_mean'])} | "
            f"{fmt(s.get('held_out_median'))} | {worst} | {'-' if zeros is None else zeros} | "
            f"{fmt(s['tuning_mean'])} | {fmt(s['tuning_worst'])} |"
        )
    lines += _ceiling_lines(report)
    lines += _group_lines(report)
    lines += _visibility_lines(report)
    lines += ["", f"Wall time: {report['wall_seconds']} s.", ""]
    return "\n".join(lines)


def best_per_pool(rows: list[dict]) -> dict[str, tuple[float, str]]:
    """``{pool: (lift, selector)}``: the best lift any selector but RandomSDG reached on each pool (the first to
    reach it on a tie), a ceiling of what choosing among the benchmark's selectors could give there."""
    best: dict[str, tuple[float, str]] = {}
    for r in rows:
        if not r["selector"].startswith("RandomSDG") and r["lift"] > best.get(r["pool"], (-1.0, ""))[0]:
            best[r["pool"]] = (r["lift"], r["selector"])
    return best


def _ceiling_lines(report: dict, bar: float = 5.0) -> list[str]:
    """Held-out pools where no selector reaches ``bar`` (the worst-case goal of issue 21): where even the best
    selector chosen per pool after the fact stays under it."""
    held = list(dict.fromkeys(r["pool"] for r in report["rows"] if r["held_out"]))
    if not held:
        return []
    best = best_per_pool(report["rows"])
    under = [p for p in held if p in best and best[p][0] < bar]
    n_selectors = len({r["selector"] for r in report["rows"] if not r["selector"].startswith("RandomSDG")})
    listed = ", ".join(f"{p} ({best[p][0]:.2f})" for p in under) or "none"
    return [
        "",
        f"Held-out pools where none of the {n_selectors} selectors reaches lift {bar:g}, even chosen per pool after "
        f"the fact: {len(under)} of {len(held)}: {listed}.",
    ]


def pool_group(pool: dict) -> str:
    """The group a report's pool is summed up in: its source, and whether its rare kinds were drawn at random."""
    return pool["source"] + (", kinds drawn at random" if pool.get("drawn") else "")


def _group_lines(report: dict) -> list[str]:
    """Held-out mean (worst) per group of pools (:func:`pool_group`): which sources a selector holds on, and
    whether its lift on a source comes from the kinds someone picked to plant there."""
    group = {p["name"]: pool_group(p) for p in report["pools"] if p["source"] not in report["tune_sources"]}
    names = list(dict.fromkeys(group.values()))
    if not names:
        return []
    lifts: dict[tuple[str, str], list[float]] = {}
    for r in report["rows"]:
        if r["pool"] in group:
            lifts.setdefault((r["selector"], group[r["pool"]]), []).append(r["lift"])
    lines = [
        "",
        "## Held-out lift per group of pools: mean (worst)",
        "",
        "| selector | " + " | ".join(f"{g} ({sum(v == g for v in group.values())})" for g in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for s in report["summary"]:
        cells = [f"{np.mean(v):.2f} ({min(v):.2f})" if (v := lifts.get((s["selector"], g))) else "-" for g in names]
        lines.append(f"| {s['selector']} | " + " | ".join(cells) + " |")
    return lines


def _visibility_lines(report: dict) -> list[str]:
    """The "can the rare kinds be seen?" table of a report (:func:`kind_visibility` per pool)."""
    visibility = report.get("visibility") or {}
    if not visibility:
        return []
    best = best_per_pool(report["rows"])
    lines = [
        "",
        "## Can the rare kinds be seen? (the benchmark reads `kind`; this shows whether the text carries it)",
        "",
        "Same-kind share of each rare row's 5 nearest rows: near 1 = the kind is a region of the view; near its share "
        "of the pool = the view scatters it among the rest, and a selector that ranks rows by their neighbours cannot "
        "find it. Score AUC: the default's rarity score, rare rows against the rest (0.5 = no information, below = "
        "the rare rows look denser). Grouped share: the share of rows with near copies, which decides the default's "
        "rule (`distance` from 0.25, else `groups`; `space/rarity.py`'s `pool_shape`).",
        "",
        "| pool | rare kind | share of pool | same-kind share, lexical view | same-kind share, student view "
        "| default score AUC | grouped share (rule) | best lift of any selector |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for pool, entry in visibility.items():
        top = best.get(pool)
        top_text = f"{top[0]:.2f} ({top[1]})" if top else "-"
        shape = entry.get("pool_shape") or {}
        rule = f"{fmt(shape.get('grouped_share'))} ({shape['score']})" if shape else "-"
        for i, (kind, k) in enumerate(entry["kinds"].items()):
            first = ("", "", "", "") if i else (pool, fmt(entry["score_auc"]), rule, top_text)
            lines.append(
                f"| {first[0]} | {kind} | {k['share']:.1%} | {fmt(k.get('lexical'))} | {fmt(k.get('student'))} "
                f"| {first[1]} | {first[2]} | {first[3]} |"
            )
    return lines
