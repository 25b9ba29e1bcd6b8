"""Seed selectors: one protocol, one registry, the paper's grid and the k-NN selector as its implementations.

A *selector* decides what a sparse region is and which seed pairs a budget gets. ``embedsdg run`` (pipeline.py),
``embedsdg coverage`` (coverage_run.py), the run summary, the dataset card and the testbed all reach a selector
through :func:`get_selector` and the :class:`Selector` protocol only; nothing outside this module asks which
selector a run used. A new selector is one new class here (or in its own module imported at the end of this one),
decorated with :func:`register_selector`::

    @register_selector
    class MySelector:
        name = "mine"                        # the value of ``selector:`` in a recipe / ``--selector``
        config_fields = ("mine_alpha",)      # the PipelineConfig fields it reads (declare them in config.py)
        saved_files = ("mine.npz",)          # what ``save`` writes into the run dir
        ...                                  # the methods of :class:`Selector`

The flow (pipeline.py): ``s = get_selector(config.selector).from_config(config)``; ``s.load(run_dir)`` or
``s.fit(ctx)`` + ``s.save(run_dir)``; ``regions, pairs = s.select(ctx, n_pairs=...)``; ``s.plot(...)``,
``s.describe()``, ``s.summarize(...)`` for the manifest; after generation ``s.coverage(...)``.

This module sits with coverage (``quality/``) because a selector owns its coverage report, and coverage reads the
embedding space (``space/``); heavy libraries are imported inside the methods, so importing the registry is cheap
(``config.py`` checks ``selector:`` against it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import datasets
    import numpy as np

    from ..analysis.coverage import CoverageReport
    from ..space.reduce import Reducer

logger = logging.getLogger(__name__)

__all__ = [
    "SELECTORS",
    "EmbeddingSettings",
    "GridSelector",
    "KnnSelector",
    "SelectionContext",
    "Selector",
    "get_selector",
    "register_selector",
]


# ----------------------------------------------------------------------------------------------------------------
# What a selector is given


def _setting(config: Any, name: str, default: Any = None) -> Any:
    """``config.name`` (a ``PipelineConfig``) or ``config[name]`` (a run dir's ``run_config.json``), else
    ``default``."""
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


@dataclass(frozen=True)
class EmbeddingSettings:
    """How the pool was embedded (the run's ``student``, ``text_template``, ``weights``, ``max_length``): a selector
    that embeds other text (e.g. the question alone) embeds it with these.

    Example:
        >>> EmbeddingSettings.from_config({"student": "smollm2-135m-instruct", "text_template": "{question}"}).kwargs()
        {'model': 'smollm2-135m-instruct', 'text_template': '{question}', 'weights': 'mean', 'max_length': None}
    """

    model: str
    text_template: str = "{question}\n{answer}"
    weights: str = "mean"
    max_length: int | None = None

    @classmethod
    def from_config(cls, config: Any) -> EmbeddingSettings:
        """From a ``PipelineConfig`` or a run dir's ``run_config.json`` dict."""
        return cls(
            model=_setting(config, "student"),
            text_template=_setting(config, "text_template", cls.text_template),
            weights=_setting(config, "weights", cls.weights) or cls.weights,
            max_length=_setting(config, "max_length"),
        )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~embedsdg_hf.space.embed.add_embeddings` (and of the coverage reports)."""
        return {
            "model": self.model,
            "text_template": self.text_template,
            "weights": self.weights,
            "max_length": self.max_length,
        }


@dataclass
class SelectionContext:
    """What :meth:`Selector.fit` / :meth:`Selector.select` / :meth:`Selector.plot` / :meth:`Selector.coverage` read.

    Attributes:
        pool: the seed pool with its ``embedding`` (of ``embedding.text_template``) and ``coords`` (the map) columns.
            A selector may add columns of its own (another embedding pass) to a copy; it never relies on the
            caller keeping them.
        embedding: how ``embedding`` was made (:class:`EmbeddingSettings`).
        reducer: the fitted :class:`~embedsdg_hf.Reducer` behind ``coords`` (axis labels, projecting new points).
        seed: the run's seed (ties, PCA).
        run_dir: the run dir, where :meth:`Selector.save` writes fitted parts (None: nothing is saved).
    """

    pool: datasets.Dataset
    embedding: EmbeddingSettings
    reducer: Reducer | None = None
    seed: int = 0
    run_dir: Path | None = None


# ----------------------------------------------------------------------------------------------------------------
# The protocol and the registry


@runtime_checkable
class Selector(Protocol):
    """A seed selector. ``name`` is its ``selector:`` value; ``config_fields`` the ``PipelineConfig`` fields it
    reads; ``saved_files`` what :meth:`save` writes into the run dir."""

    name: ClassVar[str]
    config_fields: ClassVar[tuple[str, ...]]
    saved_files: ClassVar[tuple[str, ...]]

    @classmethod
    def from_config(cls, config: Any) -> Selector:
        """The selector with its own settings read from ``config`` (a ``PipelineConfig`` or a run_config dict)."""
        ...

    def fit(self, ctx: SelectionContext) -> None:
        """Fit what the selection needs on ``ctx.pool`` (the grid; the density space and every point's sparsity)."""
        ...

    def select(self, ctx: SelectionContext, *, n_pairs: int) -> tuple[datasets.Dataset, datasets.Dataset]:
        """``(regions, pairs)``: the regions (schema of :func:`~embedsdg_hf.space.regions.regions_dataset`) and
        ``n_pairs`` seed pairs (columns of :func:`~embedsdg_hf.make_seed_pairs`), sparsest first. Fits first when
        :meth:`fit` / :meth:`load` has not run."""
        ...

    def save(self, run_dir: Path) -> None:
        """Write the fitted parts (``saved_files``) into ``run_dir``, atomically."""
        ...

    def load(self, run_dir: Path) -> bool:
        """Read the fitted parts :meth:`save` wrote; False when they are not there (then :meth:`fit`)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain JSON for the manifest, the dataset card and the summary: ``selector``, ``region`` (what a region is,
        in words), ``settings`` and ``fitted`` (what :meth:`fit` found)."""
        ...

    def summarize(self, regions: datasets.Dataset, pairs: datasets.Dataset) -> dict[str, Any]:
        """``{"counts": {...}, "text": "..."}``: the selector's own counts for the manifest and the run summary's
        line on the selection."""
        ...

    def plot(
        self, ctx: SelectionContext, regions: datasets.Dataset, pairs: datasets.Dataset, out_dir: Path
    ) -> dict[str, str]:
        """Draw what the selector used into ``out_dir``; ``{"density": file name, "map": file name}``."""
        ...

    def coverage(
        self, ctx: SelectionContext, regions: datasets.Dataset, synthetic: Mapping[str, Any]
    ) -> CoverageReport:
        """Coverage of ``regions`` by the synthetic sets ``{name: Dataset}`` (re-embedded with ``ctx.embedding``)."""
        ...


SELECTORS: dict[str, type[Selector]] = {}


def register_selector(cls: type) -> type:
    """Class decorator: make ``cls`` the selector called ``cls.name`` (``selector: <name>`` in a recipe).

    Example:
        >>> sorted(SELECTORS)
        ['grid', 'knn', 'rarity']
    """
    missing = [a for a in ("name", "config_fields", "saved_files") if not hasattr(cls, a)]
    methods = ("from_config", "fit", "select", "save", "load", "describe", "summarize", "plot", "coverage")
    missing += [m for m in methods if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"{cls.__name__} is not a Selector: it lacks {missing}.")
    if cls.name in SELECTORS and SELECTORS[cls.name] is not cls:
        logger.warning("Selector %r is registered again: %s replaces %s.", cls.name, cls, SELECTORS[cls.name])
    SELECTORS[cls.name] = cls
    return cls


def get_selector(name: str) -> type[Selector]:
    """The selector class registered as ``name``; an unknown name is a ``ValueError`` listing the known ones.

    Example:
        >>> get_selector("grid").name
        'grid'
    """
    try:
        return SELECTORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"selector must be one of {sorted(SELECTORS)}; got {name!r}.") from None


def _save_npz(path: Path, **arrays) -> None:
    """``np.savez`` to a temporary file, then renamed: a reader never sees half a file."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# The paper's grid (space/regions.py + space/pairs.py)


@register_selector
class GridSelector:
    """The paper's rule (§3.3-3.4): windows of the 2-D / 3-D map holding ``1 <= count < T`` points, sparsest first,
    T raised step by step when the budget needs more (``make_budget_pairs``). Fitted part: the grid (``grid.json``).
    """

    name: ClassVar[str] = "grid"
    config_fields: ClassVar[tuple[str, ...]] = (
        "bins",
        "window",
        "stride",
        "threshold",
        "threshold_quantile",
        "threshold_fraction",
        "min_populated_neighbors",
        "max_pairs_per_region",
        "side_choice",
    )
    saved_files: ClassVar[tuple[str, ...]] = ("grid.json",)

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.grid = None
        self.windows: dict[str, int] | None = None

    @classmethod
    def from_config(cls, config: Any) -> GridSelector:
        threshold = _setting(config, "threshold", "auto")
        if threshold not in ("auto", "quantile") and threshold is not None:
            threshold = int(threshold)
        window = _setting(config, "window")
        return cls(
            bins=None if window else _setting(config, "bins", 20),
            window=window,
            stride=_setting(config, "stride"),
            threshold=threshold,
            quantile=_setting(config, "threshold_quantile", 0.25),
            fraction=_setting(config, "threshold_fraction", 0.25),
            min_populated_neighbors=_setting(config, "min_populated_neighbors", 0.5),
            max_pairs_per_region=_setting(config, "max_pairs_per_region"),
            side_choice=_setting(config, "side_choice", "random"),
        )

    def _fit_args(self) -> dict[str, Any]:
        keys = ("bins", "window", "stride", "threshold", "quantile", "fraction", "min_populated_neighbors")
        return {k: self.settings[k] for k in keys if k in self.settings}

    def fit(self, ctx: SelectionContext) -> None:
        from ..space.regions import fit_grid, summarize_windows

        self.grid = fit_grid(ctx.pool, **self._fit_args())
        self.windows = summarize_windows(ctx.pool, self.grid)

    def _ensure_fitted(self, ctx: SelectionContext) -> None:
        from ..space.regions import summarize_windows

        if self.grid is None:
            self.fit(ctx)
        if self.windows is None:
            self.windows = summarize_windows(ctx.pool, self.grid)

    def select(self, ctx: SelectionContext, *, n_pairs: int):
        from ..space.pairs import make_budget_pairs

        self._ensure_fitted(ctx)
        # sparsest regions first; when they cannot give n_pairs, T is raised step by step (paper §4.3)
        return make_budget_pairs(
            ctx.pool,
            self.grid,
            n_pairs=n_pairs,
            seed=ctx.seed,
            max_pairs_per_region=self.settings.get("max_pairs_per_region"),
            side_choice=self.settings.get("side_choice", "random"),
        )

    def save(self, run_dir: Path) -> None:
        from ..common.rundir import write_json_atomic

        write_json_atomic(Path(run_dir) / "grid.json", self.grid.to_dict())

    def load(self, run_dir: Path) -> bool:
        from ..space.regions import GridSpec

        path = Path(run_dir) / "grid.json"
        if not path.exists():
            return False
        self.grid = GridSpec.load(path)
        return True

    def describe(self) -> dict[str, Any]:
        fitted = {} if self.grid is None else {"grid": self.grid.to_dict(), "windows": self.windows}
        return {
            "selector": self.name,
            "region": "a window of the map (a box) holding 1 <= count < T pool points, with populated windows "
            "around it; sparsest first, T raised when the budget needs more (paper §3.3, §4.3)",
            "settings": dict(self.settings),
            "fitted": fitted,
        }

    def summarize(self, regions, pairs) -> dict[str, Any]:
        below = self.windows["regions"] if self.windows else len(regions)
        past = sum(1 for level in pairs["region_level"] if level > 0)
        raised = len(regions) - below
        more = f" + {raised} next-sparsest windows (T raised, {past} pairs)" if raised else ""
        inside = int(sum(pairs["interp_in_region"])) if "interp_in_region" in pairs.column_names else None
        text = f"{below} sparse regions (T={self.grid.threshold}){more}, {len(pairs)} seed pairs"
        text += "." if inside is None else f", {inside}/{len(pairs)} interpolations inside their region."
        return {"counts": {"regions_below_T": below, "pairs_past_T": past}, "text": text}

    def plot(self, ctx: SelectionContext, regions, pairs, out_dir: Path) -> dict[str, str]:
        from ..common.mapping import vector_matrix
        from ..plots import plot_density_histogram, plot_embedding_map
        from ..space.regions import count_windows

        self._ensure_fitted(ctx)
        out_dir = Path(out_dir)
        density = plot_density_histogram(
            count_windows(ctx.pool, self.grid),
            self.grid.threshold,
            out_dir / "density_histogram.png",
            removed_by_neighbors=self.windows["removed_by_neighbor_rule"],
            threshold_rule=self.grid.threshold_rule,
        )
        labels = ctx.reducer.axis_labels() if ctx.reducer is not None else None
        mapped = plot_embedding_map(
            vector_matrix(ctx.pool, "coords"), out_dir / "embedding_map.png", regions=regions, pairs=pairs,
            axis_labels=labels,
        )  # fmt: skip
        return {"density": density.name, "map": mapped.name}

    def coverage(self, ctx: SelectionContext, regions, synthetic: Mapping[str, Any]):
        from ..analysis.coverage import coverage_report

        if self.grid is None and (ctx.run_dir is None or not self.load(ctx.run_dir)):
            raise FileNotFoundError(
                f"{str(Path(ctx.run_dir or '.') / 'grid.json')!r} does not exist: `embedsdg run` writes it (EmbedSDG "
                "method, selector grid, any stage)."
            )
        return coverage_report(ctx.pool, self.grid, regions, ctx.reducer, synthetic, **ctx.embedding.kwargs())


# ----------------------------------------------------------------------------------------------------------------
# The k-NN selector (space/knn_regions.py)


SELECTION_COLUMN = "selection_embedding"


@register_selector
class KnnSelector:
    """Sparsity as each pool point's distance to its ``k``-th nearest neighbour in the density space (the
    student's embedding of the question alone, ``knn_text: input``, or of the training text, ``full``; centred unit
    vectors or ``knn_dims``-D PCA); regions are the sparsest points' neighbourhoods (README "Choosing seeds").
    Fitted parts (``knn_space.npz``): the density space (pool mean, PCA components) and every pool point's score.
    """

    name: ClassVar[str] = "knn"
    config_fields: ClassVar[tuple[str, ...]] = (
        "knn_k",
        "knn_dims",
        "knn_suppress",
        "knn_hood_k",
        "knn_pairing",
        "knn_text",
    )
    saved_files: ClassVar[tuple[str, ...]] = ("knn_space.npz",)

    def __init__(
        self,
        *,
        k: int = 20,
        density_dims: int | None = None,
        suppress: int = 0,
        hood_k: int = 5,
        pairing: str = "near",
        text: str = "input",
    ) -> None:
        self.settings = {
            "k": k,
            "density_dims": density_dims,
            "suppress": suppress,
            "hood_k": hood_k,
            "pairing": pairing,
            "text": text,
        }
        self.space = None  # DensitySpace
        self.score: np.ndarray | None = None  # every pool point's k-th-neighbour distance
        self._x: np.ndarray | None = None  # the pool in the density space (not saved: the embedding is)
        self._neighbours = None

    @classmethod
    def from_config(cls, config: Any) -> KnnSelector:
        return cls(
            k=_setting(config, "knn_k", 20),
            density_dims=_setting(config, "knn_dims"),
            suppress=_setting(config, "knn_suppress", 0),
            hood_k=_setting(config, "knn_hood_k", 5),
            pairing=_setting(config, "knn_pairing", "near"),
            text=_setting(config, "knn_text", "input"),
        )

    def density_template(self, text_template: str) -> str:
        """The text this selector embeds: the template's first column (``text: input``) or the template."""
        from ..space.knn_regions import selection_template

        return selection_template(text_template, self.settings["text"])

    def _pool_vectors(self, ctx: SelectionContext) -> np.ndarray:
        """The pool's vectors of the selection text: ``embedding`` for the training text, else the pool's
        ``selection_embedding`` (embedded here, with the run's student and weights, when the pool lacks it)."""
        from ..common.mapping import vector_matrix
        from ..space.embed import add_embeddings

        template = self.density_template(ctx.embedding.text_template)
        if template == ctx.embedding.text_template:
            return vector_matrix(ctx.pool, "embedding")
        pool = ctx.pool
        if SELECTION_COLUMN not in pool.column_names:
            pool = add_embeddings(
                pool,
                **{**ctx.embedding.kwargs(), "text_template": template},
                column=SELECTION_COLUMN,
                count_column="selection_num_tokens",
            )
        return vector_matrix(pool, SELECTION_COLUMN)

    def _args(self, n_rows: int, seed: int) -> dict[str, Any]:
        from ..space.knn_regions import check_knn_settings

        s = self.settings
        return check_knn_settings(
            n_rows, k=s["k"], density_dims=s["density_dims"], suppress=s["suppress"], hood_k=s["hood_k"], seed=seed
        )

    def fit(self, ctx: SelectionContext) -> None:
        from ..common.validation import require_columns, require_rows
        from ..space.knn_regions import fit_density_space, knn_neighbours

        require_columns(ctx.pool, ["coords"])
        require_rows(ctx.pool, step="the knn selector")
        args = self._args(len(ctx.pool), ctx.seed)
        vectors = self._pool_vectors(ctx)
        self.space = fit_density_space(vectors, args["density_dims"], seed=args["seed"])
        self._x = self.space.transform(vectors)
        self._neighbours = knn_neighbours(self._x, k=args["k"], suppress=args["suppress"], hood_k=args["hood_k"])
        self.score = self._neighbours[0][:, args["k"] - 1]

    def select(self, ctx: SelectionContext, *, n_pairs: int):
        from ..common.mapping import vector_matrix
        from ..space.knn_regions import PAIRINGS, _check_int, select_knn_pairs

        n_pairs = _check_int(n_pairs, "n_pairs", 1)
        if self.settings["pairing"] not in PAIRINGS:
            raise ValueError(f"pairing={self.settings['pairing']!r} is not supported; choose one of {list(PAIRINGS)}.")
        if self._x is None:  # a loaded space has no neighbours: fit again (the same pool gives the same space)
            self.fit(ctx)
        return select_knn_pairs(
            self._x,
            vector_matrix(ctx.pool, "coords"),
            n_pairs=n_pairs,
            pairing=self.settings["pairing"],
            neighbours=self._neighbours,
            **self._args(len(ctx.pool), ctx.seed),
        )

    def save(self, run_dir: Path) -> None:
        import numpy as np

        components = self.space.components
        _save_npz(
            Path(run_dir) / "knn_space.npz",
            center=self.space.center,
            components=np.zeros((0, len(self.space.center)), np.float32) if components is None else components,
            score=np.asarray(self.score, dtype=np.float64),
        )

    def load(self, run_dir: Path) -> bool:
        import numpy as np

        from ..space.knn_regions import DensitySpace

        path = Path(run_dir) / "knn_space.npz"
        if not path.exists():
            return False
        with np.load(path) as saved:
            components = saved["components"] if len(saved["components"]) else None
            self.space = DensitySpace(center=saved["center"], components=components)
            self.score = saved["score"]
        return True

    def describe(self) -> dict[str, Any]:
        fitted = {}
        if self.space is not None:
            fitted = {
                "density_space_dims": self.space.dims,
                "density_space": "PCA" if self.space.components is not None else "centred unit vectors (cosine)",
                "score": f"distance to the {self.settings['k']}th nearest pool neighbour (knn_space.npz: score)",
            }
        return {
            "selector": self.name,
            "region": f"a sparse pool point (large distance to its {self.settings['k']}th nearest neighbour in the "
            f"density space) and its {self.settings['hood_k']} nearest neighbours; sparsest first",
            "settings": dict(self.settings),
            "fitted": fitted,
        }

    def summarize(self, regions, pairs) -> dict[str, Any]:
        s = self.settings
        cutoff = float(min(regions["knn_distance"])) if len(regions) else None
        text = f"{len(regions)} sparse regions (k-NN, k={s['k']}, {s['text']} text), {len(pairs)} seed pairs."
        return {"counts": {"knn_cutoff": cutoff}, "text": text}

    def plot(self, ctx: SelectionContext, regions, pairs, out_dir: Path) -> dict[str, str]:
        from ..common.mapping import vector_matrix
        from ..plots import plot_knn_map, plot_sparsity_histogram

        if self.score is None:
            self.fit(ctx)
        out_dir = Path(out_dir)
        centres = list(regions["centre"]) if len(regions) else []
        density = plot_sparsity_histogram(
            self.score, out_dir / "density_histogram.png", chosen=centres, k=self.settings["k"]
        )
        labels = ctx.reducer.axis_labels() if ctx.reducer is not None else None
        mapped = plot_knn_map(
            vector_matrix(ctx.pool, "coords"),
            self.score,
            out_dir / "embedding_map.png",
            regions=regions,
            pairs=pairs,
            axis_labels=labels,
            k=self.settings["k"],
        )
        return {"density": density.name, "map": mapped.name}

    def coverage(self, ctx: SelectionContext, regions, synthetic: Mapping[str, Any]):
        from ..analysis.knn_coverage import knn_coverage_report

        density = self.density_template(ctx.embedding.text_template)
        return knn_coverage_report(
            ctx.pool, regions, ctx.reducer, synthetic, density_template=density, **ctx.embedding.kwargs()
        )


# ----------------------------------------------------------------------------------------------------------------
# The rarity selector (space/rarity.py)


def _scales_note(settings: Mapping[str, Any]) -> str:
    """The histogram title's note on how the rarity selector ranks rows (it shows one scale of several)."""
    n = len(settings.get("fractions", ()))
    if n < 2:
        return ""
    if settings.get("score") == "drop":
        return f";\ncentres: near at one of {n} scales and far at the next (a small group)"
    if settings.get("score") == "groups":
        return f";\ncentres by their best rank over {n} scales, or as a small group"
    combine = settings.get("combine", "mean")
    if combine == "every" and len(settings.get("views", ())) > 1:
        return f";\ncentres by their best rank over {n} scales in each view, multiplied"
    how = "mean" if combine == "mean" else "best"
    return f";\ncentres by their {how} rank over {n} scales"


@register_selector
class RaritySelector:
    """Sparsity measured on the question text with the views of ``space/rarity.py`` (default: the question's words,
    each once and every word alike, and the student's mean token embedding, numbers masked) from k-th-neighbour
    distances at k = 0.5/1/2/4/8% of the pool against a fixed-size reference sample. By the pool's shape: when its
    rows come in groups (templated problems), each view's best rank over those scales, multiplied over the views; when
    nearly every row is unique (natural writing), the first (word) view's best rank, or where it ranks higher, a small
    group's (the largest rise of the distance from one scale to the next, in every view). Regions are the rarest rows'
    neighbourhoods, as for ``knn`` (docs/selection-benchmark.md).
    Fitted parts (``rarity.json``): token weights, the word view's vocabulary and every setting, in one JSON spec.
    Coverage: balls in the same view (:mod:`~embedsdg_hf.analysis.rarity_coverage`)."""

    name: ClassVar[str] = "rarity"
    config_fields: ClassVar[tuple[str, ...]] = ("knn_pairing", "rarity_hood_k", "rarity_word_weights")
    saved_files: ClassVar[tuple[str, ...]] = ("rarity.json",)

    def __init__(self, *, pairing: str = "near", hood_k: int | None = None, word_weights: str | None = None) -> None:
        self.pairing = pairing
        self.hood_k = hood_k  # None: the selector's default (space/rarity.py DEFAULTS); a saved spec keeps its own
        self.word_weights = word_weights  # likewise
        self.spec: dict | None = None
        self.radius: np.ndarray | None = None  # every pool row's, from select(): the figures reuse it
        self._views: dict | None = None  # the pool's views computed by fit(), until select() uses them

    @classmethod
    def from_config(cls, config: Any) -> RaritySelector:
        return cls(
            pairing=_setting(config, "knn_pairing", "near"),
            hood_k=_setting(config, "rarity_hood_k"),
            word_weights=_setting(config, "rarity_word_weights"),
        )

    @staticmethod
    def _texts(ctx: SelectionContext) -> tuple[str, list[str]]:
        from ..common.validation import require_columns, template_fields

        column = template_fields(ctx.embedding.text_template)[0]
        require_columns(ctx.pool, [column])
        return column, [str(t) for t in ctx.pool[column]]

    def fit(self, ctx: SelectionContext) -> None:
        from ..space.rarity import fit_with_views

        _, texts = self._texts(ctx)
        given = {"hood_k": self.hood_k, "word_weights": self.word_weights}
        settings = {name: value for name, value in given.items() if value is not None}
        self.spec, self._views = fit_with_views(texts, model=ctx.embedding.model, **settings)

    def select(self, ctx: SelectionContext, *, n_pairs: int):
        from ..space.rarity import rarity_selection

        if self.spec is None:
            self.fit(ctx)
        column, _ = self._texts(ctx)
        views, self._views = self._views, None  # fit()'s views of this pool, when fit() ran in this process
        chosen = rarity_selection(
            ctx.pool,
            n_pairs=n_pairs,
            model=ctx.embedding.model,
            text_column=column,
            spec=self.spec,
            seed=ctx.seed,
            pairing=self.pairing,
            fitted_views=views,
        )
        self.radius = chosen.radius
        return chosen.regions, chosen.pairs

    def save(self, run_dir: Path) -> None:
        from ..common.rundir import write_json_atomic

        write_json_atomic(Path(run_dir) / "rarity.json", self.spec)

    def load(self, run_dir: Path) -> bool:
        from ..common.rundir import read_json

        path = Path(run_dir) / "rarity.json"
        if not path.exists():
            return False
        self.spec = read_json(path, what="rarity selector spec", fix="delete it to fit the selector again")
        return True

    def describe(self) -> dict[str, Any]:
        settings = dict(self.spec["settings"]) if self.spec else {}
        return {
            "selector": self.name,
            "region": "a row whose question is rare by the rarity views (its k-th-neighbour distances at k = the "
            "fractions of the pool, or their largest rise from one k to the next: `shape`) and its nearest "
            "neighbours; rarest first",
            "settings": {**settings, "pairing": self.pairing},
            "shape": self.spec.get("shape") if self.spec else None,
            "fitted": {"spec": "rarity.json"} if self.spec else {},
        }

    def summarize(self, regions, pairs) -> dict[str, Any]:
        from ..space.rarity import scoring_settings

        views = "+".join(self.spec["settings"]["views"]) if self.spec else "?"
        how = scoring_settings(self.spec)["score"] if self.spec else None
        score = f", {how} score" if how else ""
        text = f"{len(regions)} rare regions (rarity, {views} view{score}), {len(pairs)} seed pairs."
        if how in ("groups", "drop"):  # what the benchmark measured it cannot see (docs/selection-benchmark.md)
            taken = ("rare wording and " if how == "groups" else "") + "small groups of near copies"
            text += (
                f" The pool's rows are mostly unique: {taken} were taken; a topic written many ways cannot be seen"
                " (README, 'Choosing seeds')."
            )
        return {"counts": {}, "text": text}

    def plot(self, ctx: SelectionContext, regions, pairs, out_dir: Path) -> dict[str, str]:
        from ..common.mapping import vector_matrix
        from ..plots import plot_knn_map, plot_sparsity_histogram
        from ..space.rarity import rarity_scores, scoring_settings, view_matrices

        if self.spec is None:
            self.fit(ctx)
        settings = scoring_settings(self.spec)
        radius = self.radius
        if radius is None or len(radius) != len(ctx.pool):  # selected in an earlier process: measure it again
            _, texts = self._texts(ctx)
            _, radius = rarity_scores(view_matrices(self.spec, texts), settings, seed=ctx.seed)
        k = int(regions["k"][0]) if len(regions) else None
        out_dir = Path(out_dir)
        centres = list(regions["centre"]) if len(regions) else []
        view = self.spec["settings"]["views"][0]
        density = plot_sparsity_histogram(
            radius, out_dir / "density_histogram.png", chosen=centres, k=k, cutoff=settings["score"] == "distance",
            title=f"Rarity of the seed pool ({view} view, k = {k}){_scales_note(settings)}",
        )  # fmt: skip
        labels = ctx.reducer.axis_labels() if ctx.reducer is not None else None
        mapped = plot_knn_map(
            vector_matrix(ctx.pool, "coords"), radius, out_dir / "embedding_map.png", regions=regions, pairs=pairs,
            axis_labels=labels, k=k, title=f"Where the rarity selector took its {len(regions)} regions",
        )  # fmt: skip
        return {"density": density.name, "map": mapped.name}

    def coverage(self, ctx: SelectionContext, regions, synthetic: Mapping[str, Any]):
        """Balls in the selector's first view, the kept rows' text placed with the saved spec
        (:func:`~embedsdg_hf.analysis.rarity_coverage.measure_rarity_coverage`); the map is the run's as usual."""
        from ..analysis.coverage import aimed_regions, embed_sets, synthetic_sets
        from ..analysis.rarity_coverage import measure_rarity_coverage
        from ..common.mapping import vector_matrix

        if self.spec is None:
            self.fit(ctx)
        column, texts = self._texts(ctx)
        sets = synthetic_sets(synthetic)
        mapped = embed_sets(sets, **ctx.embedding.kwargs())
        dims = ctx.reducer.n_components
        return measure_rarity_coverage(
            self.spec,
            texts,
            regions,
            {name: [] if len(rows) == 0 else rows[column] for name, rows in sets.items()},
            synthetic_region_ids=aimed_regions(sets, "region_id"),
            text_column=column,
            pool_coords=vector_matrix(ctx.pool, "coords", expected_dim=dims),
            synthetic_coords={
                n: np.zeros((0, dims)) if v is None else ctx.reducer.transform(v) for n, v in mapped.items()
            },
            settings={
                **ctx.embedding.kwargs(),
                "rarity": "rarity.json",
                "reducer": f"{ctx.reducer.method} ({dims}-D), for the map only",
                "axis_labels": ctx.reducer.axis_labels(),
            },
        )
