"""The pipeline recipe: a dataclass parsed by ``TrlParser`` from ``--config recipe.yaml`` plus flag overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

RECIPE_VERSION = 1


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
    n_pairs: int = field(default=32, metadata={"help": "Seed pairs to make, sparsest regions first."})
    max_pairs_per_region: int = field(default=4, metadata={"help": "Most pairs taken from one region."})
    seed: int = field(default=0, metadata={"help": "The run's only source of randomness."})
    # Output
    output_dir: str = field(default="outputs/embedsdg-default", metadata={"help": "Where the run writes."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an output dir written by another config."})

    def __post_init__(self):
        if self.version != RECIPE_VERSION:
            raise ValueError(f"Recipe version {self.version} is not supported; this library reads {RECIPE_VERSION}.")
        if self.n_components not in (2, 3):
            raise ValueError(f"n_components must be 2 or 3 (the grid is 2-D or 3-D), got {self.n_components}.")
        if str(self.threshold) != "auto":
            try:
                self.threshold = str(int(self.threshold))
            except ValueError:
                raise ValueError(f"threshold must be 'auto' or an integer >= 2, got {self.threshold!r}.") from None
        if self.n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1, got {self.n_pairs}.")

    @property
    def threshold_value(self) -> int | str:
        return "auto" if self.threshold == "auto" else int(self.threshold)

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint_dict(self) -> dict:
        """The settings that define the results (not where they go or whether to overwrite)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("output_dir", "overwrite")}
