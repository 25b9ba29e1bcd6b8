"""The pipeline recipe: a dataclass parsed by ``TrlParser`` from ``--config recipe.yaml`` plus flag overrides."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

RECIPE_VERSION = 1
REDUCERS = ("pca", "svd", "tsne", "umap")  # space.reduce.METHODS (config imports nothing heavy)
SIDE_CHOICES = ("random", "nearest")  # space.pairs.SIDE_CHOICES
# Operational settings: where results go, how fast they come, how hard to try, not what they are. A run dir may be
# resumed with other values of these. Every other key (a new one too) counts as changing the results.
SELECTORS = ("knn", "grid", "rarity")
_NOT_RESULTS = (
    "output_dir",
    "overwrite",
    "clear_cache",
    "push_to_hub",
    "hub_private",
    "teacher_concurrency",
    "teacher_timeout",
    "teacher_max_retries",
    "max_failed_fraction",
    "api_key_env",
    "decode_batch_size",
    "decode_cache",
    "teacher_batch_size",
    "stage",
    "coverage",
    "report_to",
    "tracking_project",
)
# Teacher specs whose server URLs are operational: the same model behind another URL gives the same results.
_TEACHER_KEYS = ("teacher", "consistency_teacher")


def _teacher_identity(spec):
    """``openai:<model>@<urls>`` without the URLs (where the model is served is not what it answers)."""
    if isinstance(spec, str) and spec.strip().startswith("openai:") and "@http" in spec:
        return spec.strip().split("@http", 1)[0]
    return spec


def results_view(config: dict) -> dict:
    """The settings of a config dict that define its results (not where they go or how fast they come)."""
    view = {k: v for k, v in config.items() if k not in _NOT_RESULTS}
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


@dataclass
class PipelineConfig:
    """Everything a run needs. Unknown keys in a recipe are an error (they are reported by name)."""

    version: int = field(default=RECIPE_VERSION, metadata={"help": "Recipe format version."})
    # Seed pool
    seed_pool: str = field(
        default="word-problems",
        metadata={"help": "'word-problems' (built-in generator), a local .jsonl/.parquet/.csv file, or a Hub id."},
    )
    pool_size: int | None = field(default=None, metadata={"help": "Rows to use (built-in: rows to generate)."})
    pool_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    pool_name: str | None = field(
        default=None, metadata={"help": "Config name of a Hub dataset (openai/gsm8k: main)."}
    )
    text_template: str = field(
        default="{question}\n{answer}", metadata={"help": "str.format template over pool columns: the training text."}
    )
    # Student and embedding
    student: str = field(
        default="smollm2-135m-instruct", metadata={"help": "Student spec: Hub id, local folder, or built-in name."}
    )
    weights: str = field(default="mean", metadata={"help": "Token weights: mean, mask or attention."})
    max_length: int | None = field(default=None, metadata={"help": "Truncate texts (default: model context size)."})
    # Reduction and grid
    reducer: str = field(
        default="pca",
        metadata={"help": "pca, svd, tsne or umap (pip install 'embedsdg-hf[umap]'); t-SNE/UMAP keep fitted coords."},
    )
    n_components: int = field(default=2, metadata={"help": "2 or 3 (grid dimensions)."})
    bins: int | None = field(default=20, metadata={"help": "Windows per axis (ignored when window is set)."})
    window: float | None = field(default=None, metadata={"help": "Window size in coordinate units."})
    stride: float | None = field(default=None, metadata={"help": "Window stride (default: the window; plain grid)."})
    threshold: str = field(
        default="auto",
        metadata={
            "help": "Sparse threshold T: an int >= 2; 'auto' (threshold_fraction x the typical window's count, as "
            "the paper's Fig. 2); or 'quantile' (threshold_quantile of the non-empty window counts)."
        },
    )
    threshold_fraction: float = field(
        default=0.25, metadata={"help": "threshold 'auto': T = ceil(fraction x typical window count); in (0, 1]."}
    )
    threshold_quantile: float = field(
        default=0.25, metadata={"help": "threshold 'quantile': the quantile of non-empty window counts; in [0, 1]."}
    )
    min_populated_neighbors: float = field(
        default=0.5, metadata={"help": "Share of surrounding windows that must be non-empty (0 disables)."}
    )
    # Seed selection: the k-NN selector (default; space/knn_regions.py) or the paper's grid (fit_grid above)
    selector: str = field(
        default="knn",
        metadata={
            "help": "knn (sparsity by k-NN distance in knn_dims dims; README 'Choosing seeds'), grid (paper) or "
            "rarity (pool-fitted token weights + TF-IDF, k as a share of the pool; docs/selection-benchmark.md)"
        },
    )
    knn_k: int = field(default=20, metadata={"help": "knn: the neighbour whose distance measures sparsity."})
    knn_dims: int | None = field(
        default=None, metadata={"help": "knn: PCA dims of the density space; null: all dims, cosine geometry."}
    )
    knn_suppress: int = field(
        default=0, metadata={"help": "knn: neighbours of a chosen centre that cannot be centres (0: none)."}
    )
    knn_hood_k: int = field(default=5, metadata={"help": "knn: neighbours of a centre the seed pair comes from."})
    knn_pairing: str = field(default="near", metadata={"help": "knn: near (nearest on each side) or extreme."})
    knn_text: str = field(
        default="input",
        metadata={
            "help": "knn: what sparsity is measured on: input (the template's first column, e.g. the question; "
            "an extra cheap embedding pass) or full (the training text, the same embedding as the map)."
        },
    )
    # Pairs
    n_pairs: int = field(
        default=24,
        metadata={"help": "Seed pairs to make, sparsest regions first (then next-sparsest windows: T is raised)."},
    )
    max_pairs_per_region: int | None = field(
        default=None,
        metadata={
            "help": "Most pairs from one region (default: no limit; regions give 4 pairs a round, sparsest first)."
        },
    )
    side_choice: str = field(
        default="random",
        metadata={"help": "Seed on each side of a region: 'random' member (the paper) or 'nearest' to the face."},
    )
    seed: int = field(default=0, metadata={"help": "The run's only source of randomness."})
    # Decoding through the student (eq. 6)
    decode_examples: int = field(default=4, metadata={"help": "Few-shot examples in the copy prompt P_d."})
    decode_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Decoding budget (default per pair: 1.25x its longer seed + 16, at most 512)."}
    )
    decode_rescale: bool = field(
        default=True, metadata={"help": "Feed the averaged sequence at token scale (False: eq. 4 literally)."}
    )
    decode_batch_size: int = field(default=32, metadata={"help": "Pairs decoded per generate() call."})
    decode_cache: str | None = field(
        default=None,
        metadata={
            "help": "A JSONL file of finished decodings shared across runs (a pair decoded before with the same "
            "input, budget and settings is read, not decoded); runs sharing it must not run at the same time."
        },
    )
    decode_engine: str = field(
        default="transformers",
        metadata={"help": "'transformers' (in-process), 'vllm' (offline) or vllm serve base URL(s), comma-separated."},
    )
    # Teacher generation
    stage: str = field(default="all", metadata={"help": "'all', or 'analysis' to stop before decoding."})
    method: str = field(default="embedsdg", metadata={"help": "'embedsdg', or 'random' (RandomSDG, same budget)."})
    teacher: str = field(
        default="transformers:smollm2-135m-instruct",
        metadata={"help": "'transformers:<model spec>' or 'openai:<model>@<base_url>[,<base_url>...]'."},
    )
    teacher_concurrency: int = field(default=64, metadata={"help": "Requests in flight (HTTP teachers)."})
    teacher_batch_size: int = field(default=32, metadata={"help": "Batch size of the in-process teacher."})
    teacher_timeout: float = field(default=120.0, metadata={"help": "Seconds per HTTP attempt (HTTP teachers)."})
    teacher_max_retries: int = field(
        default=6, metadata={"help": "Retries after a failed HTTP attempt (5xx, timeout, dropped connection)."}
    )
    max_failed_fraction: float = field(
        default=0.5,
        metadata={"help": "The run fails (non-zero exit) when more than this share of teacher requests fail."},
    )
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Env var holding the HTTP API key."})
    teacher_response_format: str | None = field(
        default=None,
        metadata={
            "help": "Structured output for an 'openai:' teacher: 'json' (the JSON form of an example; guided "
            "decoding on vLLM), 'json_object', or a response_format object as JSON. Not sent to the "
            "self-consistency teacher."
        },
    )
    teacher_extra_body: str | None = field(
        default=None,
        metadata={"help": "Extra request keys for 'openai:' teachers, a JSON object (e.g. '{\"top_k\": 20}')."},
    )
    generate_prompt: str | None = field(
        default=None, metadata={"help": "Prompt template name or .txt path (default: P_g / P_b of the paper)."}
    )
    samples_per_item: int = field(default=1, metadata={"help": "Teacher samples per pair (or per random seed)."})
    temperature: float = field(default=0.7, metadata={"help": "Teacher sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Teacher nucleus sampling."})
    max_tokens: int = field(default=320, metadata={"help": "Teacher completion budget per request."})
    # Quality gates (on the accepted rows, in this order; each sees only the rows the earlier ones passed)
    verify: bool = field(
        default=True, metadata={"help": "Check calculator annotations and the final answer (see answer_format)."}
    )
    answer_format: str = field(
        default="gsm8k", metadata={"help": "'gsm8k' (<<a*b=c>> annotations, #### N) or 'math' (\\boxed{} answers)."}
    )
    dedup: bool = field(
        default=True, metadata={"help": "Drop exact and near duplicates (of the pool and earlier rows)."}
    )
    dedup_threshold: float = field(
        default=0.95, metadata={"help": "Centred cosine of question embeddings at or above which rows are duplicates."}
    )
    decontaminate: str = field(
        default="gsm8k-test",
        metadata={"help": "Eval sets to drop leaked problems of: comma-separated names/files ('none' disables)."},
    )
    decontam_ngram: int = field(default=13, metadata={"help": "Word n-gram length of the overlap check."})
    decontam_threshold: float = field(
        default=0.95, metadata={"help": "Centred cosine to an eval question at or above which a row is a leak."}
    )
    self_consistency: int = field(
        default=0, metadata={"help": "Teacher solutions per question for the majority-vote check (0 disables)."}
    )
    consistency_teacher: str | None = field(
        default=None, metadata={"help": "Teacher of the self-consistency check (default: the generating teacher)."}
    )
    coverage: bool = field(
        default=True, metadata={"help": "Re-embed the kept rows and report how they fill the sparse regions."}
    )
    # Output
    output_dir: str = field(default="outputs/embedsdg-default", metadata={"help": "Where the run writes."})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace a run dir written by another config (never a non-run folder; keeps cache/)."},
    )
    clear_cache: bool = field(
        default=False, metadata={"help": "Delete the teacher request cache (cache/) first: every request is sent."}
    )
    push_to_hub: str | None = field(default=None, metadata={"help": "Push the dataset + card to this Hub repo id."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    report_to: str = field(
        default="none",
        metadata={
            "help": "Track the run: 'none' or 'trackio' (counts, rejects, timings and figures, logged locally under "
            "$TRACKIO_DIR when the run ends; pip install 'embedsdg-hf[trackio]')."
        },
    )
    tracking_project: str = field(default="embedsdg", metadata={"help": "The tracker's project (with report_to)."})

    def __post_init__(self):
        if self.version != RECIPE_VERSION:
            raise ValueError(f"Recipe version {self.version} is not supported; this library reads {RECIPE_VERSION}.")
        from .generation.decode_engines import parse_engine

        parse_engine(self.decode_engine)  # names what is allowed
        if self.n_components not in (2, 3):
            raise ValueError(f"n_components must be 2 or 3 (the grid is 2-D or 3-D), got {self.n_components}.")
        if self.reducer not in REDUCERS:
            raise ValueError(f"reducer must be one of {list(REDUCERS)}, got {self.reducer!r}.")
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
        if self.side_choice not in SIDE_CHOICES:
            raise ValueError(f"side_choice must be one of {list(SIDE_CHOICES)}, got {self.side_choice!r}.")
        if self.selector not in SELECTORS:
            raise ValueError(f"selector must be one of {list(SELECTORS)}, got {self.selector!r}.")
        if self.knn_text not in ("input", "full"):
            raise ValueError(f"knn_text must be 'input' or 'full', got {self.knn_text!r}.")
        if self.knn_pairing not in ("near", "extreme"):
            raise ValueError(f"knn_pairing must be 'near' or 'extreme', got {self.knn_pairing!r}.")
        for name, minimum in (("knn_k", 1), ("knn_suppress", 0), ("knn_hood_k", 1)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)}.")
        if self.knn_dims is not None and self.knn_dims < 1:
            raise ValueError(f"knn_dims must be >= 1 or null (all dims), got {self.knn_dims}.")
        if self.n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1, got {self.n_pairs}.")
        if self.stage not in ("all", "analysis"):
            raise ValueError(f"stage must be 'all' or 'analysis', got {self.stage!r}.")
        if self.method not in ("embedsdg", "random"):
            raise ValueError(f"method must be 'embedsdg' or 'random', got {self.method!r}.")
        if self.answer_format not in ("gsm8k", "math"):
            raise ValueError(f"answer_format must be 'gsm8k' or 'math', got {self.answer_format!r}.")
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
        set_options = [n for n in ("teacher_response_format", "teacher_extra_body") if getattr(self, n) is not None]
        if set_options and not self.teacher.startswith("openai:"):
            raise ValueError(
                f"{' and '.join(set_options)} apply to 'openai:' teachers only; the teacher is {self.teacher!r}."
            )

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
        return asdict(self)

    def fingerprint_dict(self) -> dict:
        """The settings that define the results (not where they go or whether to overwrite)."""
        return results_view(self.to_dict())
