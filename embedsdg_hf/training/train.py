"""LoRA fine-tuning of the student on the synthetic examples (METHOD.md §7, paper §4: 5 epochs of LoRA SFT).

A thin script over TRL: ``TrlParser`` reads :class:`TrainArguments` (ours), ``SFTConfig`` and ``ModelConfig`` from
``--config recipe.yaml`` plus flag overrides; ``SFTTrainer`` trains, with the PEFT config from ``get_peft_config``
and the 4-/8-bit config from ``get_quantization_config``. What this module adds: the student *spec* (a built-in name
such as ``smollm2-135m-instruct`` becomes a local folder), our dataset layouts (``train.jsonl``, a ``save_to_disk``
folder with rejects, a run dir, a Hub id) with row-level validation, loss on the assistant answer only, and an
optional merged copy of the model.

Loss mask: each ``messages`` row becomes a conversational *prompt-completion* row (prompt = every turn before the
final assistant turn, completion = that turn) and ``completion_only_loss`` is on, so TRL sets the labels of every
prompt token (system, user, the assistant header) to -100. ``assistant_only_loss`` is not used: it needs a chat
template with ``{% generation %}`` markers, which SmolLM2's and Granite's templates lack (TRL can patch only the
templates it knows, and neither is among them).

Run it::

    embedsdg train --config recipes/gsm8k-cpu/sft/lora.yaml
    python -m embedsdg_hf.training.train --config recipes/gsm8k-cpu/sft/lora.yaml --max_steps 10
    accelerate launch --config_file recipes/accelerate/cpu.yaml -m embedsdg_hf.training.train \
        --config recipes/gsm8k-cpu/sft/lora.yaml

Writes to ``output_dir``: the adapter and tokenizer (``trainer.save_model``), ``train_results.json`` /
``all_results.json`` (steps, loss, runtime, example counts), ``trainer_state.json`` (the loss log) and, with
``merge: true``, ``output_dir/merged`` (base + adapter merged, loadable with ``AutoModelForCausalLM``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.recipes import RECIPES_DIR
from ..common.validation import check_json_lines, require_columns, require_rows

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser

logger = logging.getLogger(__name__)

__all__ = [
    "ACCELERATE_CONFIGS",
    "TrainArguments",
    "build_train_parser",
    "build_trainer",
    "load_training_data",
    "name_base_model",
    "resolve_accelerate_config",
    "run_train",
]

TRAIN_RECIPE_VERSION = 1
ACCELERATE_DIR = RECIPES_DIR / "accelerate"
ACCELERATE_CONFIGS = ("cpu", "single-gpu", "multi-gpu", "deepspeed-zero2", "deepspeed-zero3", "fsdp")
_DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_RUN_TRAIN_FILE = "train.jsonl"
_RUN_SYNTHETIC_DIR = "synthetic"
_SHOWN_PROBLEMS = 5


@dataclass
class TrainArguments:
    """Our script arguments; TRL's ``SFTConfig`` and ``ModelConfig`` are parsed alongside (same recipe file)."""

    model: str = field(
        metadata={"help": "Student spec: a Hub id, a local model folder, or a built-in name (smollm2-135m-instruct)."}
    )
    dataset: str = field(
        metadata={
            "help": "Training data with a `messages` column: a .jsonl/.json/.parquet/.csv file, a save_to_disk "
            "folder (rows with a reject_reason are dropped), a run output dir (its train.jsonl), or a Hub id."
        }
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset or a DatasetDict folder."})
    adapter: str | None = field(
        default=None,
        metadata={
            "help": "Continue fine-tuning this LoRA adapter folder (e.g. a student already fine-tuned on its data) "
            "instead of starting a fresh one; its LoRA settings win over lora_* keys."
        },
    )
    eval_fraction: float = field(
        default=0.0, metadata={"help": "Share of rows held out for evaluation (0: none), split with `seed`."}
    )
    merge: bool = field(
        default=False, metadata={"help": "Also write output_dir/merged: the base model with the adapter merged in."}
    )
    version: int = field(default=TRAIN_RECIPE_VERSION, metadata={"help": "Training recipe format version."})

    def __post_init__(self):
        if self.version != TRAIN_RECIPE_VERSION:
            raise ValueError(
                f"Training recipe version {self.version} is not supported; this library reads {TRAIN_RECIPE_VERSION}."
            )
        for name in ("model", "dataset"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"`{name}` must be a non-empty string, got {getattr(self, name)!r}.")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}.")


def resolve_accelerate_config(name_or_path: str | os.PathLike) -> Path:
    """The accelerate config file for a short name (``cpu``, ``multi-gpu`` ...) or an existing file path.

    Example:
        >>> resolve_accelerate_config("cpu").name
        'cpu.yaml'
    """
    name = str(name_or_path)
    if name in ACCELERATE_CONFIGS:
        path = ACCELERATE_DIR / f"{name}.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the accelerate configs ship with the package (embedsdg_hf/recipes/accelerate/); "
                "reinstall embedsdg-hf."
            )
        return path
    if Path(name).expanduser().is_file():
        return Path(name).expanduser()
    raise ValueError(
        f"Unknown accelerate config {name!r}: it is not a file and not one of the names {list(ACCELERATE_CONFIGS)}."
    )


def load_training_data(spec: str, *, split: str = "train") -> Dataset:
    """Load SFT rows from a file, a ``save_to_disk`` folder, a run dir or a Hub id; keep only ``messages``.

    Rows with a non-null ``reject_reason`` are dropped. Every row is checked: it must end with a non-empty assistant
    turn that follows at least one other turn (the prompt); otherwise ``ValueError`` names the bad rows.

    Example:
        >>> ds = load_training_data("outputs/gsm8k-cpu")  # doctest: +SKIP
        >>> ds.column_names  # doctest: +SKIP
        ['messages']
    """
    ds = _load_any(spec, split=split)
    if "reject_reason" in ds.column_names:
        from ..generation.generate import filter_accepted

        before = len(ds)
        ds = ds.filter(filter_accepted, desc="Dropping rejected rows")
        logger.info("Dropped %d of %d rows with a reject_reason from %s", before - len(ds), before, spec)
    _check_messages(ds, source=spec)
    return ds.select_columns(["messages"])


def build_train_parser(prog: str | None = None) -> TrlParser:
    """The ``TrlParser`` over (:class:`TrainArguments`, ``SFTConfig``, ``ModelConfig``) that reads every recipe.

    Without CUDA the defaults become ``use_cpu=True, bf16=False`` (TRL defaults to bf16); a recipe or flag that sets
    them explicitly still wins.
    """
    import torch
    from trl import ModelConfig, SFTConfig, TrlParser

    parser = TrlParser((TrainArguments, SFTConfig, ModelConfig), prog=prog)
    if not torch.cuda.is_available():
        parser.set_defaults(use_cpu=True, bf16=False)
    return parser


def build_trainer(
    train_dataset: Dataset,
    *,
    model: str,
    training_args: SFTConfig,
    model_args: ModelConfig,
    eval_dataset: Dataset | None = None,
    adapter: str | os.PathLike | None = None,
) -> SFTTrainer:
    """An ``SFTTrainer`` for a student spec and ``messages`` rows, with the loss on the final assistant turn only.

    ``training_args`` is completed in place as TRL's own ``sft`` script does (``model_init_kwargs`` from
    ``model_args``; ``completion_only_loss`` set to True unless given). With ``adapter`` (a PEFT folder made for
    ``model``), that adapter is loaded trainable and trained further; ``model_args``' LoRA settings are then unused.

    Example:
        >>> from trl import ModelConfig, SFTConfig
        >>> trainer = build_trainer(load_training_data("outputs/gsm8k-cpu"), model="smollm2-135m-instruct",
        ...                         training_args=SFTConfig("out", use_cpu=True, bf16=False),
        ...                         model_args=ModelConfig(use_peft=True))  # doctest: +SKIP
    """
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    from ..common.models import resolve_model

    path = resolve_model(model)
    if model_args.model_name_or_path not in (None, model, path):
        raise ValueError(
            f"Both `model` ({model!r}) and `model_name_or_path` ({model_args.model_name_or_path!r}) are set; "
            "set only `model` (a spec: Hub id, local folder or built-in name)."
        )
    tokenizer = _load_tokenizer(path, model_args, trust_remote_code=training_args.trust_remote_code)
    model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    training_args.model_init_kwargs = {**model_init_kwargs, **(training_args.model_init_kwargs or {})}
    if training_args.completion_only_loss is None:
        training_args.completion_only_loss = True
    elif not training_args.completion_only_loss:
        logger.warning("completion_only_loss=False: the loss covers the prompt (user turn) tokens too.")
    if not model_args.use_peft and adapter is None:
        logger.warning("use_peft is false: this is a full fine-tune of %s, not LoRA.", model)
    splits = {"train": train_dataset, "eval": eval_dataset}
    prepared = {
        name: _to_prompt_completion(ds, source=f"{name} dataset") for name, ds in splits.items() if ds is not None
    }
    student, peft_config = path, get_peft_config(model_args)
    if adapter is not None:
        student, peft_config = _trainable_adapter(path, model, Path(adapter), training_args.model_init_kwargs), None
    return SFTTrainer(
        model=student,
        args=training_args,
        train_dataset=prepared["train"],
        eval_dataset=prepared.get("eval"),
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=get_quantization_config(model_args),
    )


def _trainable_adapter(path: str, model: str, adapter: Path, init_kwargs: dict[str, Any]):
    """The base model at ``path`` with the LoRA ``adapter`` on top, its LoRA weights trainable."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from .evaluate import check_adapter

    check_adapter(adapter, model)
    kwargs = {key: value for key, value in init_kwargs.items() if value is not None}
    base = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return PeftModel.from_pretrained(base, str(adapter), is_trainable=True)


def run_train(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Train from ``--config recipe.yaml`` + flag overrides (``embedsdg train`` / ``python -m
    embedsdg_hf.training.train``).

    Returns 0 on success, 2 for an invalid recipe or dataset (the reason is printed).

    Example:
        >>> run_train(["--config", "recipes/gsm8k-cpu/sft/lora.yaml", "--max_steps", "10"])  # doctest: +SKIP
        0
    """
    from ..common.models import resolve_model

    prog = prog or "embedsdg train"
    try:
        script_args, training_args, model_args = build_train_parser(prog).parse_args_and_config(argv)
        data = load_training_data(script_args.dataset, split=script_args.dataset_split)
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    train_data, eval_data = data, None
    if script_args.eval_fraction > 0:
        parts = data.train_test_split(test_size=script_args.eval_fraction, seed=training_args.seed)
        train_data, eval_data = parts["train"], parts["test"]
    try:
        trainer = build_trainer(
            train_data,
            model=script_args.model,
            training_args=training_args,
            model_args=model_args,
            eval_dataset=eval_data,
            adapter=script_args.adapter,
        )
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    model_path = resolve_model(script_args.model)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    elapsed = time.perf_counter() - start
    output_dir = Path(training_args.output_dir)
    trainer.save_model(str(output_dir))  # the adapter (or full model) and the tokenizer
    if trainer.is_world_process_zero():
        name_base_model(output_dir, script_args.model)
    steps = trainer.state.global_step
    metrics: dict[str, Any] = {
        **result.metrics,
        "global_step": steps,
        "seconds_per_step": elapsed / max(steps, 1),
        "train_examples": len(train_data),
        "eval_examples": 0 if eval_data is None else len(eval_data),
        "model": script_args.model,
        "model_path": model_path,
        "dataset": script_args.dataset,
        "adapter_dir": str(output_dir) if model_args.use_peft else None,
    }
    if eval_data is not None:
        trainer.save_metrics("eval", trainer.evaluate())
    merged = _maybe_merge(trainer, script_args, model_args, model_path=model_path, output_dir=output_dir)
    if merged is not None:
        metrics["merged_dir"] = str(merged)
    metrics = {key: value for key, value in metrics.items() if value is not None}  # log_metrics cannot print None
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    trainer.accelerator.wait_for_everyone()
    return 0


def _load_any(spec: str, *, split: str) -> Dataset:
    """A ``Dataset`` from any of the accepted forms (see :func:`load_training_data`)."""
    from datasets import DatasetDict, load_dataset

    from ..common.rundir import load_saved_dataset

    path = Path(spec).expanduser()
    if path.is_dir() and (path / _RUN_TRAIN_FILE).is_file():
        path = path / _RUN_TRAIN_FILE  # a run output dir: its accepted rows
    elif path.is_dir() and (path / "quality").is_dir():
        raise ValueError(
            f"Run dir {str(path)!r} has no {_RUN_TRAIN_FILE}: no row passed the quality gates, so there is nothing "
            "to train on. dropped.jsonl and synthetic.jsonl there say why each row was dropped."
        )
    elif path.is_dir() and (path / _RUN_SYNTHETIC_DIR).is_dir():
        path = path / _RUN_SYNTHETIC_DIR  # a run dir without train.jsonl: all rows, rejects dropped later
    if path.is_file():
        builder = _DATA_FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"Cannot read {str(path)!r}: expected one of {sorted(_DATA_FILE_BUILDERS)}.")
        if path.suffix.lower() == ".jsonl" or path.stat().st_size == 0:
            hint = (
                " An empty train.jsonl (older runs wrote one when no row passed): see dropped.jsonl and "
                "synthetic.jsonl next to it for why. There is nothing to train on."
            )
            check_json_lines(path, what="training data", hint=hint if path.name == _RUN_TRAIN_FILE else "")
        return load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        if not any((path / name).is_file() for name in ("state.json", "dataset_dict.json")):
            raise ValueError(
                f"{str(path)!r} is a folder but neither a save_to_disk dataset nor a run output dir "
                f"(no {_RUN_TRAIN_FILE}, no {_RUN_SYNTHETIC_DIR}/)."
            )
        ds = load_saved_dataset(path)
        if isinstance(ds, DatasetDict):
            if split not in ds:
                raise ValueError(f"{str(path)!r} has no split {split!r}; splits: {list(ds)}.")
            ds = ds[split]
        return ds
    looks_local = spec.startswith((".", "/", "~")) or path.suffix.lower() in _DATA_FILE_BUILDERS
    if looks_local or (path.parent != Path(".") and path.parent.is_dir()):
        raise ValueError(f"Training data {spec!r} does not exist (expected a file, a folder or a Hub id).")
    return load_dataset(spec, split=split)  # a Hub id


def _row_problem(messages: list[dict] | None) -> str | None:
    """Why a ``messages`` row cannot be trained on, or None."""
    if not messages:
        return "no messages"
    roles = [m.get("role") for m in messages]
    if "assistant" not in roles:
        return f"no assistant turn (roles: {roles})"
    if roles[-1] != "assistant":
        return f"the last turn is {roles[-1]!r}, not the assistant answer (roles: {roles})"
    if len(messages) < 2:
        return "no prompt before the assistant turn"
    if not (messages[-1].get("content") or "").strip():
        return "empty assistant turn"
    return None


def _check_messages(ds: Dataset, *, source: str) -> None:
    """Raise ``ValueError`` naming the column or the rows (count + first few) that cannot be trained on."""
    require_columns(ds, ["messages"], what=f"training dataset ({source})")
    require_rows(ds, what=f"training dataset ({source})", step="training")
    problems: list[tuple[int, str]] = []
    index = 0
    for batch in ds.select_columns(["messages"]).iter(batch_size=1000):
        for messages in batch["messages"]:
            problem = _row_problem(messages)
            if problem is not None:
                problems.append((index, problem))
            index += 1
    if problems:
        shown = "; ".join(f"row {i}: {p}" for i, p in problems[:_SHOWN_PROBLEMS])
        raise ValueError(
            f"{len(problems)} of {len(ds)} rows of the training dataset ({source}) cannot be trained on "
            f"(each needs a prompt then a non-empty final assistant turn): {shown}"
            + (" ..." if len(problems) > _SHOWN_PROBLEMS else ".")
        )


def _split_last_turn(example: dict[str, Any]) -> dict[str, Any]:
    messages = example["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _to_prompt_completion(ds: Dataset, *, source: str) -> Dataset:
    """``messages`` -> conversational ``prompt`` (all turns but the last) / ``completion`` (the assistant answer)."""
    _check_messages(ds, source=source)
    return ds.map(
        _split_last_turn, remove_columns=ds.column_names, desc="Splitting messages into prompt and completion"
    )


def _load_tokenizer(path: str, model_args: ModelConfig, *, trust_remote_code: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=trust_remote_code
    )
    if tokenizer.chat_template is None:
        raise ValueError(f"The tokenizer of {path!r} has no chat template; conversational SFT needs one.")
    if tokenizer.pad_token is None:
        logger.info("%s has no pad token: using the EOS token %r", path, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def name_base_model(output_dir: str | os.PathLike, model: str) -> str | None:
    """Make the adapter in ``output_dir`` name its base model by Hub id: ``base_model_name_or_path`` in
    ``adapter_config.json``, the card's ``base_model`` and its ``base_model:adapter:...`` tag (PEFT writes the local
    folder it loaded, e.g. the built-in student's cache path, which loads nowhere else). Returns the id written, or
    None when there is no Hub id (a local folder): then the folder is left as it is.

    Example:
        >>> name_base_model("outputs/gsm8k-cpu/sft-lora", "smollm2-135m-instruct")  # doctest: +SKIP
        'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    from huggingface_hub import ModelCard

    from ..common.models import hub_id

    folder, repo = Path(output_dir), hub_id(model)
    config_file, readme = folder / "adapter_config.json", folder / "README.md"
    if repo is None or not (config_file.is_file() or readme.is_file()):
        return None
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = repo
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if readme.is_file():
        card = ModelCard.load(readme)
        card.data.base_model = repo
        tags = card.data.tags or []
        card.data.tags = [f"base_model:adapter:{repo}" if t.startswith("base_model:adapter:") else t for t in tags]
        card.save(readme)
    return repo


def _maybe_merge(
    trainer: SFTTrainer, script_args: TrainArguments, model_args: ModelConfig, *, model_path: str, output_dir: Path
) -> Path | None:
    """With ``merge``, reload the base unquantized, merge the saved adapter into it and save ``output_dir/merged``."""
    if not script_args.merge:
        return None
    if not model_args.use_peft:
        logger.warning("merge=true is ignored: use_peft is false, so output_dir already holds the full model.")
        return None
    trainer.accelerator.wait_for_everyone()
    target = output_dir / "merged"
    if trainer.is_world_process_zero():
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        # From the saved adapter onto a fresh base: also right for QLoRA (the 4-bit base is not merged into).
        base = AutoModelForCausalLM.from_pretrained(
            model_path,
            dtype=model_args.dtype,
            revision=model_args.model_revision,
            trust_remote_code=trainer.args.trust_remote_code,
        )
        merged = PeftModel.from_pretrained(base, str(output_dir)).merge_and_unload()
        merged.save_pretrained(str(target))
        trainer.processing_class.save_pretrained(str(target))
        logger.info("Merged model written to %s", target)
    return target


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_train(prog="python -m embedsdg_hf.training.train"))
