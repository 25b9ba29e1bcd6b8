"""The pipeline recipe: a dataclass parsed by ``TrlParser`` from ``--config recipe.yaml`` plus flag overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

RECIPE_VERSION = 1
# Settings that say where results go or how fast they come, not what they are: a run dir may be resumed with
# different values of these.
_NOT_RESULTS = (
    "output_dir",
    "overwrite",
    "push_to_hub",
    "hub_private",
    "teacher_concurrency",
    "api_key_env",
    "decode_batch_size",
    "teacher_batch_size",
    "stage",
    "coverage",
)


def results_view(config: dict) -> dict:
    """The settings of a config dict that define its results (not where they go or how fast they come)."""
    return {k: v for k, v in config.items() if k not in _NOT_RESULTS}


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
    reducer: str = field(default="pca", metadata={"help": "pca, svd or tsne."})
    n_components: int = field(default=2, metadata={"help": "2 or 3 (grid dimensions)."})
    bins: int | None = field(default=20, metadata={"help": "Windows per axis (ignored when window is set)."})
    window: float | None = field(default=None, metadata={"help": "Window size in coordinate units."})
    stride: float | None = field(default=None, metadata={"help": "Window stride (default: the window; plain grid)."})
    threshold: str = field(default="auto", metadata={"help": "Sparse threshold T: an int >= 2, or 'auto'."})
    threshold_quantile: float = field(
        default=0.25, metadata={"help": "Quantile of non-empty window counts for auto T."}
    )
    min_populated_neighbors: float = field(
        default=0.5, metadata={"help": "Share of surrounding windows that must be non-empty (0 disables)."}
    )
    # Pairs
    n_pairs: int = field(default=24, metadata={"help": "Seed pairs to make, sparsest regions first."})
    max_pairs_per_region: int = field(default=4, metadata={"help": "Most pairs taken from one region."})
    seed: int = field(default=0, metadata={"help": "The run's only source of randomness."})
    # Decoding through the student (eq. 6)
    decode_examples: int = field(default=4, metadata={"help": "Few-shot examples in the copy prompt P_d."})
    decode_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Decoding budget (default: 1.25x the longest seed of the batch + 16)."}
    )
    decode_rescale: bool = field(
        default=True, metadata={"help": "Feed the averaged sequence at token scale (False: eq. 4 literally)."}
    )
    decode_batch_size: int = field(default=32, metadata={"help": "Pairs decoded per generate() call."})
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
    teacher_batch_size: int = field(default=8, metadata={"help": "Batch size of the in-process teacher."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Env var holding the HTTP API key."})
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
    overwrite: bool = field(default=False, metadata={"help": "Replace an output dir written by another config."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Push the dataset + card to this Hub repo id."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})

    def __post_init__(self):
        if self.version != RECIPE_VERSION:
            raise ValueError(f"Recipe version {self.version} is not supported; this library reads {RECIPE_VERSION}.")
        from .generation.decode_engines import parse_engine

        parse_engine(self.decode_engine)  # names what is allowed
        if self.n_components not in (2, 3):
            raise ValueError(f"n_components must be 2 or 3 (the grid is 2-D or 3-D), got {self.n_components}.")
        if str(self.threshold) != "auto":
            try:
                self.threshold = str(int(self.threshold))
            except ValueError:
                raise ValueError(f"threshold must be 'auto' or an integer >= 2, got {self.threshold!r}.") from None
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
        if self.self_consistency < 0:
            raise ValueError(f"self_consistency must be >= 0 (0 disables it), got {self.self_consistency}.")

    @property
    def threshold_value(self) -> int | str:
        return "auto" if self.threshold == "auto" else int(self.threshold)

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint_dict(self) -> dict:
        """The settings that define the results (not where they go or whether to overwrite)."""
        return results_view(self.to_dict())
