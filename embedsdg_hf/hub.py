"""Push a run's synthetic dataset to the Hugging Face Hub with a dataset card (method, config, counts, figures)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

PAPER = "https://arxiv.org/abs/2603.22294"


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def _recipe(config: dict) -> str:
    """The run's config as a recipe YAML (without the push/overwrite switches)."""
    return yaml.safe_dump({k: v for k, v in config.items() if k not in ("push_to_hub", "overwrite")}, sort_keys=False)


def _quality_section(config: dict, quality: dict) -> list[str]:
    if not quality:
        return []
    gates = ", ".join(
        f"{gate} ({n['checked']} checked, {n['dropped']} dropped)" for gate, n in quality["gates"].items()
    )
    lines = [
        "## Quality gates",
        "",
        f"Applied in order, each to the rows the earlier ones kept: {gates or 'none'}. Answers are verified as "
        f"`{config.get('answer_format', 'gsm8k')}`; duplicates are exact (normalised text) or near (centred cosine of "
        f"the student's question embeddings >= {config.get('dedup_threshold')}) against the seed pool and earlier "
        f"rows; decontamination against `{config.get('decontaminate')}` uses {config.get('decontam_ngram')}-gram "
        f"overlap and embedding cosine >= {config.get('decontam_threshold')}.",
        "",
    ]
    leaked = quality.get("contaminated") or []
    if leaked:
        lines += [f"{len(leaked)} generated rows leaked evaluation problems and were dropped:", ""]
        lines += [f"- `{row['contaminated_with']}` ({row['contamination_reason']})" for row in leaked[:20]]
        lines.append("")
    return lines


def _coverage_section(coverage: dict) -> list[str]:
    if not coverage:
        return []
    lines = [
        "## Coverage of the sparse regions",
        "",
        "| method | kept rows | in their target region | in a targeted region | regions reaching T | "
        "occupancy entropy (normalised) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for method, n in coverage.items():
        target = "n/a" if n.get("landed_in_target_share") is None else f"{n['landed_in_target']}/{n['aimed_rows']}"
        lines.append(
            f"| {method} | {n['synthetic_points']} | {target} | {n['landed_in_targeted_regions']} | "
            f"{n['regions_reaching_threshold']}/{n['targeted_regions']} | "
            f"{n['entropy_before_normalised']:.3f} -> {n['entropy_after_normalised']:.3f} |"
        )
    return [*lines, ""]


def make_dataset_card(manifest: dict, *, repo_id: str) -> str:
    """The README.md of a pushed run: YAML metadata, what was done, counts, rejects, figures, how to reproduce.

    Example:
        >>> manifest = json.load(open("outputs/run/manifest.json"))  # doctest: +SKIP
        >>> card = make_dataset_card(manifest, repo_id="me/gsm8k-embedsdg")  # doctest: +SKIP
    """
    config, counts = manifest["config"], manifest["counts"]
    gen = manifest.get("generation") or {}
    method = config["method"]
    metadata = {
        "license": "other",
        "task_categories": ["text-generation"],
        "language": ["en"],
        "tags": ["synthetic", "embedsdg", "math", method],
        "size_categories": [_size_category(counts.get("train", counts.get("accepted", 0)))],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    }
    described = {
        "embedsdg": (
            "EmbedSDG: seed pairs from opposite sides of sparse regions of the student's embedding space, their "
            "token-embedding sequences averaged and decoded by the student, and a teacher LLM writing a new example "
            "from both seeds and the decoded text (prompt P_g)."
        ),
        "random": "RandomSDG baseline: one uniformly sampled seed per example (prompt P_b), same budget as EmbedSDG.",
    }[method]
    rejects = gen.get("rejects_by_reason", {})
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).strip(),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"Synthetic fine-tuning data generated with [embedsdg-hf](https://github.com/) ({PAPER}).",
        "",
        f"**Method**: `{method}`. {described}",
        "",
        f"- Student (embedding space, decoder): `{config['student']}`",
        f"- Teacher: `{config['teacher']}` (temperature {config['temperature']}, top_p {config['top_p']}, "
        f"max_tokens {config['max_tokens']})",
        f"- Seed pool: `{config['seed_pool']}` ({counts.get('pool', '?')} rows)",
        "",
        "## Counts",
        "",
        "| what | rows |",
        "|---|---:|",
    ]
    for key in ("pool", "regions", "pairs", "synthetic", "accepted"):
        if key in counts:
            lines.append(f"| {key} | {counts[key]} |")
    for reason, n in sorted(rejects.items()):
        lines.append(f"| rejected by the parser: {reason} | {n} |")
    quality = manifest.get("quality") or {}
    for gate, numbers in quality.get("gates", {}).items():
        for reason, n in sorted(numbers["reasons"].items()):
            lines.append(f"| dropped by {gate}: {reason} | {n} |")
    if "train" in counts:
        lines.append(f"| **kept (train split)** | {counts['train']} |")
    if gen:
        lines += [
            "",
            f"Teacher tokens: {gen.get('prompt_tokens', 0):,} prompt, {gen.get('completion_tokens', 0):,} completion.",
        ]
    lines += [
        "",
        "Only rows that parsed and passed every quality gate are in the `train` split; every row, with its "
        "`reject_reason`, is in the run's `synthetic.jsonl`, and the dropped rows, with their reasons, in "
        "`dropped.jsonl`.",
        "",
    ]
    lines += _quality_section(config, quality)
    lines += _coverage_section(manifest.get("coverage") or {})
    figures = manifest.get("figures") or {}
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}](figures/{file})" for name, file in sorted(figures.items())]
        lines.append("")
    lines += [
        "## Reproduce",
        "",
        "```bash",
        "pip install embedsdg-hf",
        "embedsdg run --config run_config.yaml",
        "```",
        "",
        "```yaml",
        _recipe(config).strip(),
        "```",
        "",
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items() if v) + ".",
        "",
    ]
    return "\n".join(lines)


def _training_rows(out: Path, load_from_disk):
    """The rows the run trains on: those that passed every quality gate (``quality/``), without embedding columns.
    Runs from before the gates existed have only ``synthetic/``: its accepted rows."""
    from .common.mapping import without_embeddings

    if (out / "quality").exists():
        from .quality.gates import filter_passed

        rows = load_from_disk(str(out / "quality")).filter(filter_passed)
    else:
        from .generation.generate import filter_accepted

        rows = load_from_disk(str(out / "synthetic")).filter(filter_accepted)
    return without_embeddings(rows)


def push_run_to_hub(output_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Push the rows a run trains on (``train`` split), its card, figures and manifest; return the repo URL.

    Raises ``RuntimeError`` with the reason when the Hub cannot be reached (offline mode, no network, no token):
    a push is never reported as done unless the Hub accepted it.
    """
    from datasets import load_from_disk
    from huggingface_hub import HfApi, constants

    out = Path(output_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    if constants.HF_HUB_OFFLINE:
        raise RuntimeError(f"Cannot push to {repo_id!r}: HF_HUB_OFFLINE is set. Unset it to push; nothing was sent.")
    if "accepted" not in manifest.get("counts", {}):
        raise ValueError(f"{out} has no generated dataset (stage 'analysis' only?): nothing to push.")
    train = _training_rows(out, load_from_disk)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        train.push_to_hub(repo_id, split="train", private=private, token=token)
        api.upload_file(
            path_or_fileobj=make_dataset_card(manifest, repo_id=repo_id).encode(),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="dataset",
        )
        for name in sorted((manifest.get("figures") or {}).values()):
            api.upload_file(
                path_or_fileobj=str(out / name), path_in_repo=f"figures/{name}", repo_id=repo_id, repo_type="dataset"
            )
        api.upload_file(
            path_or_fileobj=str(out / "manifest.json"),
            path_in_repo="manifest.json",
            repo_id=repo_id,
            repo_type="dataset",
        )
        api.upload_file(
            path_or_fileobj=_recipe(manifest["config"]).encode(),
            path_in_repo="run_config.yaml",
            repo_id=repo_id,
            repo_type="dataset",
        )
    except Exception as err:  # network/auth errors come from several HTTP stacks; re-raised with the endpoint
        raise RuntimeError(
            f"Could not push to {repo_id!r} at {constants.ENDPOINT}: {type(err).__name__}: {err}"
        ) from err
    logger.info("Pushed %d rows to %s", len(train), url)
    return str(url)
