"""The targeting testbed: a pool of built-in word problems with planted rare families, and where the seeds go.

EmbedSDG exists to draw seeds from the thin parts of the student's data. On the built-in generator's pools the
thin parts are known: :func:`make_testbed_pool` makes chosen problem families rare (``family_weights``), and
:func:`run_targeting` measures, per family, the share of EmbedSDG's seeds, of RandomSDG's seeds and of the pool,
and the **lift** = rare-family share of the seeds / rare-family share of the pool (1 = no better than uniform).
It runs each selector (the paper's grid, the k-NN selector) across reducers, 2-D and 3-D maps and token weights,
in seconds, with no teacher and no training::

    embedsdg testbed --quick --output-dir outputs/testbed

The rare-family patterns are fixed by name (:data:`PATTERNS`): the k-NN selector's defaults were tuned on
:data:`TUNE_PATTERNS` and the report's headline lift is over the others. Only the pool's labels are read here;
the selectors see embeddings and coordinates only.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.word_problems import PROBLEM_TYPES, make_word_problems

logger = logging.getLogger(__name__)

__all__ = [
    "PATTERNS",
    "TUNE_PATTERNS",
    "Pattern",
    "family_shares",
    "make_testbed_pool",
    "measure_targeting",
    "run_targeting",
]


@dataclass(frozen=True)
class Pattern:
    """A planted imbalance: ``rare`` families each at ``rare_share`` of the pool, the others sharing the rest."""

    name: str
    rare: tuple[str, ...]
    rare_share: float

    @classmethod
    def from_seed(cls, name: str, pattern_seed: int, n_rare: int, rare_share: float) -> Pattern:
        rare = np.random.default_rng(pattern_seed).choice(np.array(PROBLEM_TYPES), size=n_rare, replace=False)
        return cls(name, tuple(sorted(rare.tolist())), rare_share)


#: Six patterns of 4 families at 1% each and two of 2 families at 2% each (the research note's patterns).
PATTERNS: tuple[Pattern, ...] = (
    *(Pattern.from_seed(f"r4s{s}", s, 4, 0.01) for s in range(6)),
    *(Pattern.from_seed(f"r2s{s}", 100 + s, 2, 0.02) for s in range(2)),
)
#: The patterns the k-NN selector's defaults were chosen on; the report's headline excludes them.
TUNE_PATTERNS: tuple[str, ...] = ("r4s0", "r4s1")
#: ``embedsdg testbed --quick``: three held-out patterns.
QUICK_PATTERNS: tuple[str, ...] = ("r4s2", "r4s3", "r2s0")


def make_testbed_pool(n: int, *, rare_families: Sequence[str], rare_share: float = 0.01, seed: int = 0):
    """``n`` built-in word problems where each of ``rare_families`` makes ``rare_share`` of the rows.

    Example:
        >>> pool = make_testbed_pool(2000, rare_families=["ages", "inventory"], rare_share=0.01)
        >>> pool["problem_type"].count("ages")
        20
    """
    rare = list(dict.fromkeys(rare_families))
    unknown = sorted(set(rare) - set(PROBLEM_TYPES))
    if unknown or not rare:
        raise ValueError(f"rare_families must name some of {list(PROBLEM_TYPES)}; got {list(rare_families)}.")
    if not 0 < rare_share * len(rare) < 1:
        raise ValueError(f"rare_share={rare_share} x {len(rare)} rare families must lie in (0, 1).")
    n_common = len(PROBLEM_TYPES) - len(rare)
    weight = rare_share * n_common / (1 - rare_share * len(rare)) if n_common else 1.0
    return make_word_problems(n, seed=seed, family_weights=dict.fromkeys(rare, weight))


def family_shares(
    families: Sequence[str], seeds: Mapping[str, Sequence[int]], *, rare_families: Sequence[str]
) -> dict:
    """Per family, the share of the pool and of each method's seeds; per method, the lift and rare families hit.

    ``families`` is the pool's family label per row; ``seeds`` maps a method name to the row positions of its seeds
    (a row chosen twice counts twice). Lift = rare-family share of the seeds / rare-family share of the pool.

    Example:
        >>> family_shares(["a", "a", "a", "b"], {"x": [3, 3, 0, 1]}, rare_families=["b"])["lift"]["x"]
        2.0
    """
    labels = np.asarray(families)
    names = sorted(set(labels.tolist()))
    is_rare = np.isin(labels, list(rare_families))
    if not is_rare.any():
        raise ValueError(f"None of the rare families {list(rare_families)} occurs in the pool.")
    shares = {"pool": {f: float(np.mean(labels == f)) for f in names}}
    lift, hit = {}, {}
    for method, rows in seeds.items():
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            shares[method], lift[method], hit[method] = dict.fromkeys(names, 0.0), float("nan"), 0
            continue
        if rows.min() < 0 or rows.max() >= len(labels):
            raise ValueError(f"seeds[{method!r}] holds row positions outside the pool of {len(labels)} rows.")
        shares[method] = {f: float(np.mean(labels[rows] == f)) for f in names}
        lift[method] = float(is_rare[rows].mean() / is_rare.mean())
        hit[method] = len(set(labels[rows][is_rare[rows]].tolist()))
    return {"families": names, "rare": sorted(rare_families), "shares": shares, "lift": lift, "rare_hit": hit}


# ---------------------------------------------------------------------------------------------------------------------
# Running the selectors on a testbed pool
# ---------------------------------------------------------------------------------------------------------------------


def _selector_seeds(pool, config, *, model: str) -> np.ndarray:
    """The seeds ``embedsdg run`` would take on ``pool`` under ``config``: the same selector calls as the pipeline
    (``get_selector(config.selector).from_config(config)``, ``fit``, ``select``), without interpolation."""
    from ..quality.selectors import SELECTION_COLUMN, EmbeddingSettings, SelectionContext, get_selector

    if INPUT_EMBEDDING in pool.column_names and SELECTION_COLUMN not in pool.column_names:
        pool = pool.rename_column(INPUT_EMBEDDING, SELECTION_COLUMN)  # the question-only embedding, made once
    embedding = EmbeddingSettings(
        model=model, text_template=config.text_template, weights=config.weights, max_length=config.max_length
    )
    selector = get_selector(config.selector).from_config(config)
    ctx = SelectionContext(pool=pool, embedding=embedding, seed=config.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a short budget shows as fewer seeds in the table
        try:
            selector.fit(ctx)
            _, pairs = selector.select(ctx, n_pairs=config.n_pairs)
        except ValueError as err:  # `embedsdg run` stops here (no grid window passes the neighbour rule; a pool
            # without the question text for the rarity selector)
            logger.info("%s selector: no seeds (%s)", config.selector, err)
            return np.zeros(0, np.int64)
    return np.concatenate([pairs["seed_a"], pairs["seed_b"]]).astype(np.int64)


def _random_seeds(n_rows: int, n_pairs: int, repeats: int) -> list[np.ndarray]:
    """RandomSDG's draw (``generate._random_items``): as many seeds as pairs, uniform without replacement."""
    return [np.random.default_rng(r).choice(n_rows, size=min(n_pairs, n_rows), replace=False) for r in range(repeats)]


def _available_reducers() -> tuple[str, ...]:
    from ..space.reduce import METHODS

    return tuple(METHODS)


@dataclass
class _Setting:
    selector: str  # a registered selector's name (quality/selectors.py)
    label: str
    settings: dict  # PipelineConfig fields that differ from the defaults ("map": knn_dims = the map's dims)
    per_map: bool  # True when the selection depends on the map (the grid); k-NN depends only on the embeddings
    is_default: bool = False  # each selector's default settings (share figures, headline table)


def _default_settings() -> list[_Setting]:
    from ..config import PipelineConfig

    knn = {**PipelineConfig().knn_settings(), "text": PipelineConfig().knn_text}
    return [
        _Setting("grid", "grid (paper, defaults)", {}, True, True),
        _Setting("grid", "grid, no neighbour rule", {"min_populated_neighbors": 0.0}, True),
        _Setting("knn", f"knn (defaults: {_describe(knn)})", {}, False, True),
        _Setting("knn", "knn on the training text (text=full)", {"knn_text": "full"}, False),
        _Setting("knn", "knn in the map's dims (PCA, 2 or 3)", {"knn_dims": "map"}, True),
        _Setting("knn", "knn, 16-D PCA", {"knn_dims": 16}, False),
        _Setting("knn", "knn with suppression (suppress=k)", {"knn_suppress": knn["k"]}, False),
        _Setting(
            "rarity",
            "rarity (defaults: words x student mean at k = 0.5-8%, rule by the pool's shape)",
            {},
            False,
            True,
        ),
    ]


def _describe(settings: Mapping) -> str:
    return ", ".join(f"{k}={'full' if v is None else v}" for k, v in settings.items())


SLOW_REDUCERS = ("tsne", "umap")
#: The column of the input-only embedding (the question) that ``knn_text="input"`` measures sparsity on.
INPUT_EMBEDDING = "input_embedding"


def measure_targeting(
    embedded,
    *,
    rare_families: Sequence[str],
    family_column: str = "problem_type",
    reducers: Sequence[str] = ("pca",),
    dims: Sequence[int] = (2, 3),
    n_pairs: int = 60,
    seed: int = 0,
    random_repeats: int = 10,
    figure_dir: str | Path | None = None,
    tag: str = "",
    progress: Callable[[str], None] | None = None,
    model: str = "smollm2-135m-instruct",
) -> list[dict]:
    """Lift of every selection setting on one embedded pool (columns ``embedding``, ``input_embedding`` (the
    question only, for the k-NN settings with ``text="input"``) and ``family_column``).

    One row per (reducer, dims, setting): the EmbedSDG lift, the RandomSDG lift (mean and sd over
    ``random_repeats`` draws), rare families hit, seeds, seconds; with ``figure_dir``, each selector's default's
    share figure, its file name in ``figure`` (the grid's for each PCA map; k-NN and rarity read no map: one each).

    Example:
        >>> rows = measure_targeting(add_embeddings(pool, model="smollm2-135m-instruct"), rare_families=["ages"])
        ... # doctest: +SKIP
    """
    from ..common.validation import require_columns
    from ..config import PipelineConfig
    from ..space.reduce import add_coords, fit_reducer

    require_columns(embedded, ["embedding", INPUT_EMBEDDING, family_column])
    labels = embedded[family_column]
    random_runs = _random_seeds(len(embedded), n_pairs, random_repeats)
    random_lift = [family_shares(labels, {"r": r}, rare_families=rare_families)["lift"]["r"] for r in random_runs]
    rows, done = [], {}
    for reducer in reducers:
        for k in dims:
            t0 = time.perf_counter()
            mapped = add_coords(embedded, fit_reducer(embedded, method=reducer, n_components=k, seed=seed))
            t_map = time.perf_counter() - t0
            for s in _default_settings():
                t0 = time.perf_counter()
                args = {key: k if value == "map" else value for key, value in s.settings.items()}
                key = (s.label, _describe(args))
                if s.per_map or key not in done:
                    config = PipelineConfig(selector=s.selector, n_pairs=n_pairs, seed=seed, **args)
                    done[key] = _selector_seeds(mapped, config, model=model)
                seeds = done[key]
                result = family_shares(
                    labels, {"embedsdg": seeds, "random": random_runs[0]}, rare_families=rare_families
                )
                row = {
                    "reducer": reducer,
                    "dims": k,
                    "selector": s.selector,
                    "setting": s.label,
                    "default": s.is_default,
                    "lift": round(result["lift"]["embedsdg"], 3),
                    "random_lift": round(float(np.mean(random_lift)), 3),
                    "random_lift_sd": round(float(np.std(random_lift)), 3),
                    "rare_hit": result["rare_hit"]["embedsdg"],
                    "n_rare": len(set(rare_families)),
                    "n_seeds": len(seeds),
                    "seconds": round(time.perf_counter() - t0 + t_map, 2),
                }
                if figure_dir is not None and reducer == "pca" and s.is_default and (s.per_map or k == dims[0]):
                    where = f"{reducer}-{k}d-" if s.per_map else ""  # knn and rarity read no map: one figure
                    name = f"shares-{tag}-{where}{s.selector}.png".lstrip("-")
                    row["figure"] = _share_figure(Path(figure_dir) / name, result, rare_families, s.label, tag)
                rows.append(row)
            if progress:
                progress(f"{reducer} {k}-D")
    return rows


def run_targeting(
    output_dir: str | Path,
    *,
    model: str = "smollm2-135m-instruct",
    patterns: Sequence[str] | None = None,
    weights: Sequence[str] = ("mean", "mask"),
    reducers: Sequence[str] = ("pca", "svd", "tsne", "umap"),
    dims: Sequence[int] = (2, 3),
    n: int = 2000,
    n_pairs: int = 60,
    random_repeats: int = 10,
    seed: int = 0,
    slow_reducer_patterns: int = 1,
    slow_reducer_weights: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run every selection setting on each pattern's pool; write ``testbed.{md,json}`` and the share figures.

    Args:
        patterns: names from :data:`PATTERNS` (default: all).
        weights: token weights to embed with (``attention`` runs a forward pass: ~2 rows/s on a CPU, use a small n).
        reducers: map reducers; one the installed library does not offer is skipped with a note in the report.
        slow_reducer_patterns: t-SNE / UMAP (seconds per fit) run on only this many of the patterns.
        slow_reducer_weights: ... and with only these weights (``None``: all).
        progress: called with a line per finished (pattern, weights, reducer, dims), e.g. ``print``.
    """
    from ..common.validation import template_fields
    from ..config import PipelineConfig
    from ..space.embed import add_embeddings

    input_column = template_fields(PipelineConfig().text_template)[0]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [p for p in PATTERNS if patterns is None or p.name in patterns]
    if patterns is not None and len(chosen) != len(set(patterns)):
        raise ValueError(f"Unknown pattern(s) in {list(patterns)}; the patterns are {[p.name for p in PATTERNS]}.")
    available = _available_reducers()
    notes = [
        f"reducer {r!r} is not offered by this installation (space/reduce.py has {list(available)}): skipped."
        for r in reducers
        if r not in available
    ]
    reducers = [r for r in reducers if r in available]
    rows, figures, started = [], {}, time.perf_counter()
    for pi, pattern in enumerate(chosen):
        pool = make_testbed_pool(n, rare_families=pattern.rare, rare_share=pattern.rare_share, seed=seed)
        for wi, w in enumerate(weights):
            embedded = add_embeddings(pool, model=model, weights=w)
            embedded = add_embeddings(
                embedded, model=model, weights=w, text_template=f"{{{input_column}}}", column=INPUT_EMBEDDING,
                count_column="input_num_tokens",
            )  # fmt: skip
            slow = pi < slow_reducer_patterns and (slow_reducer_weights is None or w in slow_reducer_weights)
            for row in measure_targeting(
                embedded,
                rare_families=pattern.rare,
                reducers=[r for r in reducers if slow or r not in SLOW_REDUCERS],
                dims=dims,
                n_pairs=n_pairs,
                seed=seed,
                random_repeats=random_repeats,
                model=model,
                figure_dir=out if wi == 0 else None,
                tag=f"{pattern.name}-{w}",
                progress=lambda line, where=f"{pattern.name} {w}": (progress or logger.info)(
                    f"{where} {line} ({time.perf_counter() - started:.0f}s)"
                ),
            ):
                figure = row.pop("figure", None)
                if figure:
                    figures[f"{pattern.name}-{w}-{row['reducer']}-{row['dims']}d-{row['selector']}"] = figure
                rows.append({"pattern": pattern.name, "tuned_on": pattern.name in TUNE_PATTERNS, "weights": w, **row})
    report = {
        "patterns": [{"name": p.name, "rare": list(p.rare), "rare_share": p.rare_share} for p in chosen],
        "tune_patterns": list(TUNE_PATTERNS),
        "n": n,
        "n_pairs": n_pairs,
        "random_repeats": random_repeats,
        "notes": notes,
        "rows": rows,
        "summary": _summary(rows),
        "figures": figures,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "testbed.json").write_text(json.dumps(report, indent=2))
    (out / "testbed.md").write_text(render_targeting(report))
    return report


def _share_figure(path: Path, result: dict, rare: Sequence[str], label: str, tag: str) -> str:
    from ..plots import plot_family_shares

    names = (("EmbedSDG", "embedsdg"), ("RandomSDG", "random"), ("pool", "pool"))
    shares = {name: result["shares"][method] for name, method in names}
    title = f"{tag}: seed share per family, {label} (lift {result['lift']['embedsdg']:.2f})"
    plot_family_shares(result["families"], shares, path, rare=rare, title=title)
    return path.name


def _summary(rows: list[dict]) -> list[dict]:
    """Mean lift per (setting, weights, reducer, dims) over the held-out patterns (and over all)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["setting"], row["weights"], row["reducer"], row["dims"]), []).append(row)
    summary = []
    for (setting, w, reducer, k), group in groups.items():
        held = [r["lift"] for r in group if not r["tuned_on"]]
        summary.append(
            {
                "setting": setting,
                "weights": w,
                "reducer": reducer,
                "dims": k,
                "lift_held_out": round(float(np.mean(held)), 2) if held else None,
                "lift_min_held_out": round(float(np.min(held)), 2) if held else None,
                "lift_all": round(float(np.mean([r["lift"] for r in group])), 2),
                "random_lift": round(float(np.mean([r["random_lift"] for r in group])), 2),
                "patterns": len(group),
                "held_out_patterns": len(held),
            }
        )
    return summary


def _lift(value: float) -> str:
    """A lift for the tables; NaN (a selector that made no pair on some pattern) is said in words."""
    return "no pairs" if value != value else f"{value:.2f}"


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    if entry["lift_held_out"] is None:
        return f"{_lift(entry['lift_all'])} (tuned only)"
    return f"{_lift(entry['lift_held_out'])} ({_lift(entry['lift_min_held_out'])})"


def _headline(summary: list[dict]) -> list[str]:
    """Settings x (weights, 2-D / 3-D) on the PCA map: the table the README and the closing notes quote."""
    pca = {(s["setting"], s["weights"], s["dims"]): s for s in summary if s["reducer"] == "pca"}
    if not pca:
        return []
    settings = list(dict.fromkeys(key[0] for key in pca))
    columns = list(dict.fromkeys((key[1], key[2]) for key in pca))
    random = {w: next(s["random_lift"] for s in summary if s["weights"] == w) for w, _ in columns}
    lines = [
        "## Lift, 2-D and 3-D (PCA map; mean over the held-out patterns, worst pattern in brackets)",
        "",
        "| setting | " + " | ".join(f"{w} {k}-D" for w, k in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in settings:
        lines.append(f"| {name} | " + " | ".join(_cell(pca.get((name, w, k))) for w, k in columns) + " |")
    lines.append("| RandomSDG (uniform seeds) | " + " | ".join(f"{random[w]:.2f}" for w, _ in columns) + " |")
    return lines + [""]


def render_targeting(report: dict) -> str:
    """The Markdown of a :func:`run_targeting` report."""
    lines = [
        "# Targeting testbed",
        "",
        f"Pools of {report['n']} built-in word problems with planted rare families; {report['n_pairs']} seed pairs "
        f"per selector (RandomSDG: {report['n_pairs']} uniform seeds, {report['random_repeats']} draws). "
        "Lift = rare-family share of the seeds / rare-family share of the pool (1 = uniform).",
        "",
        "Patterns (rare families): "
        + "; ".join(f"`{p['name']}` {', '.join(p['rare'])} at {p['rare_share']:.0%}" for p in report["patterns"]),
        f"Tuned on: {', '.join(report['tune_patterns'])}; 'held out' averages the other patterns.",
        "",
    ]
    lines += [f"Note: {note}" for note in report["notes"]] + ([""] if report["notes"] else [])
    lines += _headline(report["summary"]) + [
        "## Lift by setting, every reducer (mean over held-out patterns; min in brackets)",
        "",
        "| setting | weights | reducer | dims | lift (held out) | lift (all) | RandomSDG | patterns |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in report["summary"]:
        held = "-" if s["lift_held_out"] is None else f"{_lift(s['lift_held_out'])} ({_lift(s['lift_min_held_out'])})"
        lines.append(
            f"| {s['setting']} | {s['weights']} | {s['reducer']} | {s['dims']}-D | {held} | {_lift(s['lift_all'])} "
            f"| {s['random_lift']:.2f} | {s['patterns']} |"
        )
    lines += ["", "## Every run", "", "| pattern | weights | reducer | dims | setting | lift | rare hit | seeds | s |"]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        tag = " (tuned)" if r["tuned_on"] else ""
        lines.append(
            f"| {r['pattern']}{tag} | {r['weights']} | {r['reducer']} | {r['dims']}-D | {r['setting']} | "
            f"{_lift(r['lift'])} | {r['rare_hit']}/{r['n_rare']} | {r['n_seeds']} | {r['seconds']} |"
        )
    if report["figures"]:
        lines += ["", "## Figures", ""] + [f"- `{name}`" for name in report["figures"].values()]
    lines += ["", f"Wall time: {report['wall_seconds']} s."]
    return "\n".join(lines) + "\n"
