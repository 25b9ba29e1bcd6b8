"""The pipeline recipe: a dataclass parsed by ``TrlParser`` from ``--config recipe.yaml`` plus flag overrides."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from numbers import Integral
from typing import Literal

from .common.options import (
    ANSWER_FORMATS,
    KNN_PAIRINGS,
    KNN_TEXTS,
    METHODS,
    RARITY_WORD_WEIGHTS,
    REDUCERS,
    RUN_STAGES,
    SIDE_CHOICES,
    TRACKERS,
    WEIGHTS,
)
from .quality.selectors import SELECTORS  # the registry (a cheap import)

RECIPE_VERSION = 1
# Options with a fixed set of choices (common/options.py; the selectors' registry): HfArgumentParser turns a Literal
# into argparse ``choices`` (``--help`` lists them, a bad flag is one line), and _check_types checks YAML and Python.
WeightsOption = Literal[WEIGHTS]
ReducerOption = Literal[REDUCERS]
SelectorOption = Literal[tuple(SELECTORS)]  # the built-in ones; one registered in Python is accepted as well
KnnPairingOption = Literal[KNN_PAIRINGS]
KnnTextOption = Literal[KNN_TEXTS]
RarityWordWeightsOption = Literal[RARITY_WORD_WEIGHTS]
SideChoiceOption = Literal[SIDE_CHOICES]
RunStageOption = Literal[RUN_STAGES]
MethodOption = Literal[METHODS]
AnswerFormatOption = Literal[ANSWER_FORMATS]
TrackerOption = Literal[TRACKERS]
#: One way to switch off a feature that has an off switch: its value here (null for decontaminate: no evaluation
#: set; "none" for report_to, the value transformers' TrainingArguments takes). The older spellings (null, false,
#: "", "none", any case) are still read from recipes and run dirs and mean the same (normalize_off).
OFF = {"decontaminate": None, "report_to": "none"}
#: What a setting feeds, declared on each field's metadata (``"stage"``), in run order. A changed setting makes its
#: stage and every later one stale (pipeline.py keeps the saved outputs of the stages before it). ``operational``
#: settings say where results go, how fast they come or how hard to try, not what they are: a run dir may be resumed
#: with other values of these. A key no field declares (another version's) counts as changing every stage.
STAGES = ("embed", "grid", "select", "decode", "generate")
OPERATIONAL = "operational"
# Teacher specs whose server URLs are operational: the same model behind another URL gives the same results.
_TEACHER_KEYS = ("teacher", "consistency_teacher")


def _teacher_identity(spec):
    """``openai:<model>@<urls>`` without the URLs (where the model is served is not what it answers)."""
    if isinstance(spec, str) and spec.strip().startswith("openai:") and "@http" in spec:
        return spec.strip().split("@http", 1)[0]
    return spec


def results_view(config: dict) -> dict:
    """The settings of a config dict that define its results (not where they go or how fast they come)."""
    operational = set(stage_fields(OPERATIONAL))
    view = {k: normalize_off(k, v) for k, v in config.items() if k not in operational}
    for key in _TEACHER_KEYS:
        if key in view:
            view[key] = _teacher_identity(view[key])
    return view


def results_diff(previous: dict, current: dict) -> list[str]:
    """Result-changing keys whose values differ; a key missing on one side counts as its default (so a run dir
    written before a key existed still matches when the key is left at its default)."""
    defaults = results_view({f.name: f.default for f in fields(PipelineConfig) if f.default is not MISSING})
    previous, current = results_view(previous), results_view(current)
    keys = set(previous) | set(current)
    return sorted(k for k in keys if previous.get(k, defaults.get(k)) != current.get(k, defaults.get(k)))


class _Declared(Mapping):
    """A field's metadata: ``help`` for the argument parsers (``HfArgumentParser`` hands every key it sees to
    argparse), plus declarations only this library reads with ``metadata.get``: ``stage`` (what the setting feeds,
    see :data:`STAGES`) and ``path`` (a path setting: ``~`` and ``$VARS`` are expanded)."""

    def __init__(self, help: str, **declared):
        self._visible = {"help": help.replace("%", "%%")}  # argparse formats help with %
        self._all = {"help": help, **declared}

    def __getitem__(self, key):
        return self._all[key]

    def __iter__(self):
        return iter(self._visible)

    def __len__(self) -> int:
        return len(self._visible)

    def copy(self) -> dict:  # what the parsers copy into add_argument's keywords
        return dict(self._visible)


def _declare(stage: str, *, help: str, path: bool = False) -> Mapping:
    """The metadata of a :class:`PipelineConfig` field: its help and the stage it feeds (``STAGES`` or
    ``"operational"``)."""
    return _Declared(help, stage=stage, path=path)


@dataclass
class PipelineConfig:
    """Everything a run needs. Unknown keys in a recipe are an error (they are reported by name)."""

    version: int = field(default=RECIPE_VERSION, metadata=_declare("embed", help="Recipe format version."))
    # Seed pool
    seed_pool: str = field(
        default="word-problems",
        metadata=_declare(
            "embed",
            path=True,
            help="'word-problems' (built-in generator), a local .jsonl/.parquet/.csv file, or a Hub id.",
        ),
    )
    pool_size: int | None = field(
        default=None, metadata=_declare("embed", help="Rows to use (built-in: rows to generate).")
    )
    pool_split: str = field(default="train", metadata=_declare("embed", help="Split of a Hub dataset."))
    pool_name: str | None = field(
        default=None, metadata=_declare("embed", help="Config name of a Hub dataset (openai/gsm8k: main).")
    )
    text_template: str = field(
        default="{question}\n{answer}",
        metadata=_declare("embed", help="str.format template over pool columns: the training text."),
    )
    # Student and embedding
    student: str = field(
        default="smollm2-135m-instruct",
        metadata=_declare("embed", help="Student spec: Hub id, local folder, or built-in name."),
    )
    weights: WeightsOption = field(
        default="mean", metadata=_declare("embed", help="Token weights: mean, mask or attention.")
    )
    max_length: int | None = field(
        default=None, metadata=_declare("embed", help="Truncate texts (default: model context size).")
    )
    # Reduction and grid
    reducer: ReducerOption = field(
        default="pca",
        metadata=_declare(
            "embed",
            help="pca, svd, tsne or umap (pip install 'embedsdg-hf[umap]'); t-SNE/UMAP keep fitted coords.",
        ),
    )
    n_components: int = field(default=2, metadata=_declare("embed", help="2 or 3 (grid dimensions)."))
    bins: int | None = field(
        default=20, metadata=_declare("grid", help="Windows per axis (ignored when window is set).")
    )
    window: float | None = field(default=None, metadata=_declare("grid", help="Window size in coordinate units."))
    stride: float | None = field(
        default=None, metadata=_declare("grid", help="Window stride (default: the window; plain grid).")
    )
    threshold: str = field(
        default="auto",
        metadata=_declare(
            "grid",
            help="Sparse threshold T: an int >= 2; 'auto' (threshold_fraction x the typical window's count, as "
            "the paper's Fig. 2); or 'quantile' (threshold_quantile of the non-empty window counts).",
        ),
    )
    threshold_fraction: float = field(
        default=0.25,
        metadata=_declare("grid", help="threshold 'auto': T = ceil(fraction x typical window count); in (0, 1]."),
    )
    threshold_quantile: float = field(
        default=0.25,
        metadata=_declare(
            "grid",
            help="threshold 'quantile': the quantile of non-empty window counts; in [0, 1].",
        ),
    )
    min_populated_neighbors: float = field(
        default=0.5,
        metadata=_declare("grid", help="Share of surrounding windows that must be non-empty (0 disables)."),
    )
    # Seed selection: the rarity selector (default; space/rarity.py), k-NN (space/knn_regions.py) or the paper's
    # grid (fit_grid above)
    selector: SelectorOption = field(
        default="rarity",
        metadata=_declare(
            "select",
            help="rarity (default: the question rare both in its words (each once) and in the student's token "
            "embeddings, numbers masked, at its rarest of k = 0.5-8% of the pool; in a pool of mostly unique rows, "
            "rare in its words or in a small group; "
            "docs/selection-benchmark.md), knn (sparsity by k-NN distance of the student's embedding, k = knn_k), "
            "grid (the paper's 2-D grid), or a selector registered with quality.selectors.register_selector",
        ),
    )
    knn_k: int = field(
        default=20, metadata=_declare("select", help="knn: the neighbour whose distance measures sparsity.")
    )
    knn_dims: int | None = field(
        default=None,
        metadata=_declare("select", help="knn: PCA dims of the density space; null: all dims, cosine geometry."),
    )
    knn_suppress: int = field(
        default=0,
        metadata=_declare("select", help="knn: neighbours of a chosen centre that cannot be centres (0: none)."),
    )
    knn_hood_k: int = field(
        default=5, metadata=_declare("select", help="knn: neighbours of a centre the seed pair comes from.")
    )
    knn_pairing: KnnPairingOption = field(
        default="near", metadata=_declare("select", help="knn: near (nearest on each side) or extreme.")
    )
    rarity_hood_k: int = field(
        default=2,
        metadata=_declare(
            "select",
            help="rarity: a region is its centre and this many nearest rows, and the seed pair comes from it. More "
            "rows give seeds farther apart (a teacher copies a seed less often), fewer give rare seeds more often "
            "(docs/selection-benchmark.md; 5 until 2026-12-06).",
        ),
    )
    rarity_word_weights: RarityWordWeightsOption = field(
        default="presence",
        metadata=_declare(
            "select",
            help="rarity: how the word view weighs a question's words: presence (each word once, every word alike) "
            "or tfidf (words few rows use weigh more; the default until 2026-12-07; docs/selection-benchmark.md).",
        ),
    )
    knn_text: KnnTextOption = field(
        default="input",
        metadata=_declare(
            "select",
            help="knn: what sparsity is measured on: input (the template's first column, e.g. the question; "
            "an extra cheap embedding pass) or full (the training text, the same embedding as the map).",
        ),
    )
    # Pairs
    n_pairs: int = field(
        default=20,
        metadata=_declare(
            "select",
            help="Seed pairs to make, sparsest regions first (then next-sparsest windows: T is raised).",
        ),
    )
    max_pairs_per_region: int | None = field(
        default=None,
        metadata=_declare(
            "select",
            help="Most pairs from one region (default: no limit; regions give 4 pairs a round, sparsest first).",
        ),
    )
    side_choice: SideChoiceOption = field(
        default="random",
        metadata=_declare(
            "select",
            help="Seed on each side of a region: 'random' member (the paper) or 'nearest' to the face.",
        ),
    )
    seed: int = field(default=0, metadata=_declare("embed", help="The run's only source of randomness."))
    # Decoding through the student (eq. 6)
    decode_examples: int = field(
        default=4, metadata=_declare("decode", help="Few-shot examples in the copy prompt P_d.")
    )
    decode_max_new_tokens: int | None = field(
        default=None,
        metadata=_declare(
            "decode",
            help="Decoding budget (default per pair: 1.25x its longer seed + 16, at most 512).",
        ),
    )
    decode_rescale: bool = field(
        default=True,
        metadata=_declare("decode", help="Feed the averaged sequence at token scale (False: eq. 4 literally)."),
    )
    decode_batch_size: int = field(
        default=32, metadata=_declare("operational", help="Pairs decoded per generate() call.")
    )
    decode_cache: str | None = field(
        default=None,
        metadata=_declare(
            "operational",
            path=True,
            help="A JSONL file of finished decodings shared across runs (a pair decoded before with the same "
            "input, budget and settings is read, not decoded); runs sharing it must not run at the same time.",
        ),
    )
    decode_engine: str = field(
        default="transformers",
        metadata=_declare(
            "decode",
            help="'transformers' (in-process), 'vllm' (offline) or vllm serve base URL(s), comma-separated.",
        ),
    )
    # Teacher generation
    stage: RunStageOption = field(
        default="all", metadata=_declare("operational", help="'all', or 'analysis' to stop before decoding.")
    )
    method: MethodOption = field(
        default="embedsdg", metadata=_declare("generate", help="'embedsdg', or 'random' (RandomSDG, same budget).")
    )
    teacher: str = field(
        default="transformers:smollm2-135m-instruct",
        metadata=_declare(
            "generate",
            help="'transformers:<model spec>' or 'openai:<model>@<base_url>[,<base_url>...]'.",
        ),
    )
    teacher_concurrency: int = field(
        default=64, metadata=_declare("operational", help="Requests in flight (HTTP teachers).")
    )
    teacher_batch_size: int = field(
        default=32, metadata=_declare("operational", help="Batch size of the in-process teacher.")
    )
    teacher_timeout: float = field(
        default=120.0, metadata=_declare("operational", help="Seconds per HTTP attempt (HTTP teachers).")
    )
    teacher_max_retries: int = field(
        default=6,
        metadata=_declare(
            "operational",
            help="Retries after a failed HTTP attempt (5xx, timeout, dropped connection).",
        ),
    )
    max_failed_fraction: float = field(
        default=0.5,
        metadata=_declare(
            "operational",
            help="The run fails (non-zero exit) when more than this share of teacher requests fail.",
        ),
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata=_declare("operational", help="Env var holding the HTTP API key.")
    )
    teacher_response_format: str | None = field(
        default=None,
        metadata=_declare(
            "generate",
            help="Structured output for an 'openai:' teacher: 'json' (the JSON form of an example; guided "
            "decoding on vLLM), 'json_object', or a response_format object as JSON. Not sent to the "
            "self-consistency teacher.",
        ),
    )
    teacher_extra_body: str | None = field(
        default=None,
        metadata=_declare(
            "generate",
            help="Extra request keys for 'openai:' teachers, a JSON object (e.g. '{\"top_k\": 20}').",
        ),
    )
    generate_prompt: str | None = field(
        default=None,
        metadata=_declare(
            "generate",
            path=True,
            help="Prompt template name or .txt path (default: P_g / P_b of the paper).",
        ),
    )
    samples_per_item: int = field(
        default=1, metadata=_declare("generate", help="Teacher samples per pair (or per random seed).")
    )
    teacher_attempts: int | None = field(
        default=None,
        metadata=_declare(
            "generate",
            help="Best-of-n: responses drawn per sample (new seed each, all cached) until one parses and passes "
            "verification. Default (null): 2 for an in-process 'transformers:' teacher, 1 for others.",
        ),
    )
    teacher_calculator: bool | None = field(
        default=None,
        metadata=_declare(
            "generate",
            help="In-process teacher: answer '<<expr=' with the exact value and '>>' (GSM8K calculator). "
            "Default (null): on for 'transformers:' teachers with answer_format gsm8k; not for HTTP teachers.",
        ),
    )
    teacher_grammar: bool | None = field(
        default=None,
        metadata=_declare(
            "generate",
            help="In-process teacher: constrain responses to the parser's format (llguidance), within "
            "max_tokens. Default (null): on for 'transformers:' teachers (HTTP: see teacher_response_format).",
        ),
    )
    temperature: float = field(default=0.7, metadata=_declare("generate", help="Teacher sampling temperature."))
    top_p: float = field(default=0.95, metadata=_declare("generate", help="Teacher nucleus sampling."))
    max_tokens: int = field(default=320, metadata=_declare("generate", help="Teacher completion budget per request."))
    # Quality gates (on the accepted rows, in this order; each sees only the rows the earlier ones passed)
    verify: bool = field(
        default=True,
        metadata=_declare(
            "generate",
            help="Check calculator annotations and the final answer (see answer_format).",
        ),
    )
    answer_format: AnswerFormatOption = field(
        default="gsm8k",
        metadata=_declare(
            "generate",
            help="'gsm8k' (<<a*b=c>> annotations, #### N) or 'math' (\\boxed{} answers).",
        ),
    )
    dedup: bool = field(
        default=True,
        metadata=_declare("generate", help="Drop exact and near duplicates (of the pool and earlier rows)."),
    )
    dedup_threshold: float = field(
        default=0.95,
        metadata=_declare(
            "generate",
            help="Centred cosine of question embeddings at or above which rows are duplicates.",
        ),
    )
    decontaminate: str | None = field(
        default="gsm8k-test",
        metadata=_declare(
            "generate",
            path=True,
            help="Eval sets to drop leaked problems of: comma-separated names/files (null disables; 'none' too).",
        ),
    )
    decontam_ngram: int = field(
        default=13, metadata=_declare("generate", help="Word n-gram length of the overlap check.")
    )
    decontam_threshold: float = field(
        default=0.95,
        metadata=_declare(
            "generate",
            help="Centred cosine to an eval question at or above which a row is a leak.",
        ),
    )
    self_consistency: int = field(
        default=0,
        metadata=_declare(
            "generate",
            help="Teacher solutions per question for the majority-vote check (0 disables).",
        ),
    )
    consistency_teacher: str | None = field(
        default=None,
        metadata=_declare(
            "generate",
            help="Teacher of the self-consistency check (default: the generating teacher).",
        ),
    )
    coverage: bool = field(
        default=True,
        metadata=_declare(
            "operational",
            help="Re-embed the kept rows and report how they fill the sparse regions.",
        ),
    )
    # Output
    output_dir: str = field(
        default="outputs/embedsdg-default",
        metadata=_declare("operational", path=True, help="Where the run writes."),
    )
    overwrite: bool = field(
        default=False,
        metadata=_declare(
            "operational",
            help="Replace a run dir written by another config (never a non-run folder; keeps cache/).",
        ),
    )
    clear_cache: bool = field(
        default=False,
        metadata=_declare(
            "operational",
            help="Delete the teacher request cache (cache/) first: every request is sent.",
        ),
    )
    push_to_hub: str | None = field(
        default=None, metadata=_declare("operational", help="Push the dataset + card to this Hub repo id.")
    )
    hub_private: bool = field(default=False, metadata=_declare("operational", help="Create the Hub repo as private."))
    report_to: TrackerOption = field(
        default="none",
        metadata=_declare(
            "operational",
            help="Track the run: 'none' or 'trackio' (counts, rejects, timings and figures, logged locally under "
            "$TRACKIO_DIR when the run ends; pip install 'embedsdg-hf[trackio]').",
        ),
    )
    tracking_project: str = field(
        default="embedsdg", metadata=_declare("operational", help="The tracker's project (with report_to).")
    )

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, normalize_off(f.name, getattr(self, f.name)))
        self._check_types()
        self._expand_paths()
        if self.version != RECIPE_VERSION:
            raise ValueError(f"Recipe version {self.version} is not supported; this library reads {RECIPE_VERSION}.")
        from .generation.decode_engines import parse_engine

        parse_engine(self.decode_engine)  # names what is allowed
        if self.n_components not in (2, 3):
            raise ValueError(f"n_components must be 2 or 3 (the grid is 2-D or 3-D), got {self.n_components}.")
        if str(self.threshold) not in ("auto", "quantile"):
            given = self.threshold
            try:
                self.threshold = str(int(given))
            except (TypeError, ValueError):
                self.threshold = None
            if self.threshold is None or int(self.threshold) < 2:
                raise ValueError(
                    f"threshold must be 'auto', 'quantile' or an integer >= 2 (sparse: 1 <= count < T, so 1 would "
                    f"select nothing), got {given!r}."
                )
        if self.window is None and (self.bins is None or self.bins < 1):
            raise ValueError(f"bins must be >= 1 windows per axis (or set window), got {self.bins}.")
        if not 0.0 < self.threshold_fraction <= 1.0:
            raise ValueError(f"threshold_fraction must be in (0, 1], got {self.threshold_fraction}.")
        if not 0.0 <= self.threshold_quantile <= 1.0:
            raise ValueError(f"threshold_quantile must be in [0, 1], got {self.threshold_quantile}.")
        if not 0.0 <= self.min_populated_neighbors <= 1.0:
            raise ValueError(
                f"min_populated_neighbors must be a fraction in [0, 1], got {self.min_populated_neighbors}."
            )
        if self.max_pairs_per_region is not None and self.max_pairs_per_region < 1:
            raise ValueError(f"max_pairs_per_region must be >= 1, got {self.max_pairs_per_region}.")
        for name, minimum in (("knn_k", 1), ("knn_suppress", 0), ("knn_hood_k", 1), ("rarity_hood_k", 1)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)}.")
        if self.knn_dims is not None and self.knn_dims < 1:
            raise ValueError(f"knn_dims must be >= 1 or null (all dims), got {self.knn_dims}.")
        if self.n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1, got {self.n_pairs}.")
        for name in ("pool_size", "max_length", "decode_max_new_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (or null for the default), got {getattr(self, name)}.")
        for name in (
            "samples_per_item",
            "max_tokens",
            "teacher_concurrency",
            "teacher_batch_size",
            "decode_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.decode_examples < 0:
            raise ValueError(f"decode_examples must be >= 0, got {self.decode_examples}.")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        for name in ("dedup_threshold", "decontam_threshold"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a cosine in [-1, 1], got {getattr(self, name)}.")
        if self.decontam_ngram < 1:
            raise ValueError(f"decontam_ngram must be >= 1, got {self.decontam_ngram}.")
        if self.teacher_timeout <= 0:
            raise ValueError(f"teacher_timeout must be > 0 seconds, got {self.teacher_timeout}.")
        if self.teacher_max_retries < 0:
            raise ValueError(f"teacher_max_retries must be >= 0, got {self.teacher_max_retries}.")
        if not 0.0 <= self.max_failed_fraction <= 1.0:
            raise ValueError(f"max_failed_fraction must be in [0, 1], got {self.max_failed_fraction}.")
        if self.self_consistency < 0:
            raise ValueError(f"self_consistency must be >= 0 (0 disables it), got {self.self_consistency}.")
        self._check_teacher_request_options()
        from .common.tracking import check_tracker

        check_tracker(self.report_to)

    def _check_types(self) -> None:
        """Each setting has its declared type, and an option one of its choices (a YAML ``bins: [1, 2]`` or
        ``selector: bogus`` is named here, with what is allowed, not met as a TypeError later)."""
        for f in fields(self):
            value, allowed = getattr(self, f.name), _type_names(f.name)
            if value is None and "None" in allowed:
                continue
            choices = option_choices(f.name)
            if choices is not None:
                if isinstance(value, str) and value in choices:
                    continue
                raise ValueError(f"{f.name} must be one of {list(choices)}, got {value!r}.")
            if any(_TYPE_CHECKS[t](value) for t in allowed if t in _TYPE_CHECKS):
                continue
            if (f.name == "threshold" and _TYPE_CHECKS["int"](value)) or (
                f.name == "teacher_extra_body" and isinstance(value, dict)
            ):
                continue  # an integer T; a JSON object already parsed (YAML mapping)
            kinds = " or ".join(_TYPE_WORDS.get(t, t) for t in allowed)
            raise ValueError(f"{f.name} must be {kinds}, got {value!r} ({type(value).__name__}).")

    def _expand_paths(self) -> None:
        """``~`` and ``$VARS`` expanded in every path setting (``decontaminate``: in each comma-separated item)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("path") and isinstance(value, str):
                items = value.split(",") if f.name == "decontaminate" else [value]
                setattr(self, f.name, ",".join(os.path.expandvars(os.path.expanduser(i.strip())) for i in items))

    def input_files(self) -> dict[str, list[str]]:
        """The local files each setting reads (seed pool, prompt, eval sets): their content is fingerprinted with
        the run (a changed file invalidates the stages of the setting that names it)."""
        from pathlib import Path

        files: dict[str, list[str]] = {}
        if self.seed_pool and Path(self.seed_pool).is_file():
            files["seed_pool"] = [self.seed_pool]
        if self.generate_prompt and Path(self.generate_prompt).is_file():
            files["generate_prompt"] = [self.generate_prompt]
        eval_files = []
        for item in (i.strip() for i in (self.decontaminate or "").split(",")):
            if item == "gsm8k-test":
                from .data.eval_sets import local_gsm8k_file

                item = str(local_gsm8k_file("test") or "")
            if item and Path(item).is_file():
                eval_files.append(item)
        if eval_files:
            files["decontaminate"] = eval_files
        return files

    def _check_teacher_request_options(self) -> None:
        """``teacher_response_format`` / ``teacher_extra_body``: valid, and only for an HTTP (``openai:``) teacher.
        The self-consistency teacher gets ``teacher_extra_body`` when it is an HTTP one, never the response format
        (its answers are solutions, not examples)."""
        import json

        from .generation.parse import response_format_from_spec

        response_format_from_spec(self.teacher_response_format)
        if isinstance(self.teacher_extra_body, str):
            try:
                self.teacher_extra_body = json.loads(self.teacher_extra_body)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"teacher_extra_body must be a JSON object, got {self.teacher_extra_body!r} ({err})."
                ) from None
        if self.teacher_extra_body is not None and not isinstance(self.teacher_extra_body, dict):
            raise ValueError(f"teacher_extra_body must be a JSON object, got {self.teacher_extra_body!r}.")
        if self.teacher_attempts is not None and self.teacher_attempts < 1:
            raise ValueError(f"teacher_attempts must be >= 1 (or null: the default), got {self.teacher_attempts}.")
        in_process = [n for n in ("teacher_calculator", "teacher_grammar") if getattr(self, n)]
        if in_process and not self.teacher.startswith("transformers:"):
            raise ValueError(
                f"{' and '.join(in_process)} apply to in-process 'transformers:' teachers only; the teacher is "
                f"{self.teacher!r} (an HTTP teacher's output format is teacher_response_format)."
            )
        if self.teacher_calculator and self.answer_format != "gsm8k":
            raise ValueError("teacher_calculator writes GSM8K annotations <<a*b=c>>; it needs answer_format 'gsm8k'.")
        set_options = [n for n in ("teacher_response_format", "teacher_extra_body") if getattr(self, n) is not None]
        if set_options and not self.teacher.startswith("openai:"):
            raise ValueError(
                f"{' and '.join(set_options)} apply to 'openai:' teachers only; the teacher is {self.teacher!r}."
            )

    def teacher_decoding(self) -> dict:
        """What the teacher fields resolve to: ``attempts``, ``calculator`` and ``grammar`` (an answer format or
        None). The defaults (null) turn all three on for an in-process teacher and leave HTTP teachers as they are.

        Example:
            >>> PipelineConfig().teacher_decoding()
            {'attempts': 2, 'calculator': True, 'grammar': 'gsm8k'}
        """
        in_process = self.teacher.startswith("transformers:")

        def chosen(value, default):
            return default if value is None else value

        return {
            "attempts": chosen(self.teacher_attempts, 2 if in_process else 1),
            "calculator": chosen(self.teacher_calculator, in_process and self.answer_format == "gsm8k"),
            "grammar": self.answer_format if chosen(self.teacher_grammar, in_process) else None,
        }

    def knn_settings(self) -> dict:
        """The keyword arguments of ``knn_seed_pairs`` this config sets."""
        return {
            "k": self.knn_k,
            "density_dims": self.knn_dims,
            "suppress": self.knn_suppress,
            "hood_k": self.knn_hood_k,
            "pairing": self.knn_pairing,
        }

    @property
    def threshold_value(self) -> int | str:
        return self.threshold if self.threshold in ("auto", "quantile") else int(self.threshold)

    def to_dict(self) -> dict:
        """Every setting, with secrets redacted (URL user-info, ``api_key``-like keys): what run_config.json, the
        manifest and the Hub card hold."""
        from .common.redact import redact

        return redact(asdict(self))

    def fingerprint_dict(self) -> dict:
        """The settings that define the results (not where they go or whether to overwrite)."""
        return results_view(self.to_dict())


_TYPE_CHECKS = {
    "int": lambda v: isinstance(v, Integral) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
}
_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "None": "null"}


def _type_names(name: str) -> list[str]:
    """``["int", "None"]`` for a field typed ``int | None`` (an option: ``["Literal", ...]``). Read from the class's
    own annotations: HfArgumentParser rewrites ``f.type`` (``int | None`` becomes ``int``)."""
    import typing

    annotation = _field_types()[name]
    args = typing.get_args(annotation) if typing.get_origin(annotation) is not Literal else ()
    args = args or (annotation,)
    return ["None" if a is type(None) else "Literal" if typing.get_origin(a) is Literal else a.__name__ for a in args]


@functools.cache
def _field_types() -> dict:
    import typing

    return typing.get_type_hints(PipelineConfig)


def accepts_none(name: str) -> bool:
    """Whether the setting ``name`` may be null."""
    return "None" in _type_names(name)


def option_choices(name: str) -> tuple[str, ...] | None:
    """The values the option ``name`` takes (its ``Literal``), or None for a setting that is not an option. For
    ``selector``: every registered selector (one registered in Python after this module was imported too).

    Example:
        >>> option_choices("reducer")
        ('pca', 'svd', 'tsne', 'umap')
        >>> option_choices("n_pairs") is None
        True
    """
    import typing

    if name == "selector":
        return tuple(SELECTORS)
    annotation = _field_types()[name]
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return None


def normalize_off(name: str, value):
    """The one spelling of "off" (:data:`OFF`) for a setting with an off switch given in an older spelling (null,
    false, "", "none" in any case); any other value as it is.

    Example:
        >>> normalize_off("decontaminate", "None"), normalize_off("report_to", None), normalize_off("seed", 0)
        (None, 'none', 0)
    """
    if name not in OFF:
        return value
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return OFF[name]
    return value


def field_stage(name: str) -> str | None:
    """The stage a setting feeds (``STAGES`` or ``"operational"``), from its field's metadata; None for a key no
    field declares."""
    for f in fields(PipelineConfig):
        if f.name == name:
            return f.metadata.get("stage")
    return None


def stage_fields(stage: str) -> tuple[str, ...]:
    """The settings that feed ``stage`` (declared on each field's metadata)."""
    return tuple(f.name for f in fields(PipelineConfig) if f.metadata.get("stage") == stage)
