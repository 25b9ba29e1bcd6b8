"""Push a run to the Hugging Face Hub as one commit: the rows it trains on (config ``default``: ``messages``,
``prompt``/``completion`` and the :data:`TRAINING_COLUMNS` of provenance), every generated row with every column
(config ``all``) and the rows a quality gate dropped (config ``dropped``, only when there are some) as Parquet, a
dataset card built with ``huggingface_hub``'s :class:`~huggingface_hub.DatasetCardData` (with the ``dataset_info``
and ``configs`` blocks ``Dataset.push_to_hub`` would write), the figures, the manifest and the run's recipe.

:func:`stage_run_for_hub` writes that repository into a local folder first (``load_dataset(folder, "dropped")``
reads it as the Hub would); :func:`push_run_to_hub` uploads the folder with ``HfApi.upload_folder``. Nothing staged
names a server URL or an absolute local path (:func:`public_text`): the teacher shows as ``openai:<model>@<url>``,
a local seed pool by its file name.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from importlib import metadata
from pathlib import Path

import yaml

from .common.rundir import load_saved_dataset
from .config import normalize_off
from .run.rundir import RunDir

logger = logging.getLogger(__name__)

PAPER = "https://arxiv.org/abs/2603.22294"
# config name -> (folder in the repo, what it holds); "default" is what `load_dataset(repo_id)` gives
CONFIGS = {
    "default": (
        "data",
        "the rows that passed the parser and every quality gate, in training form (`messages`, TRL's "
        "`prompt`/`completion`) with a few provenance columns: the training set",
    ),
    "all": ("all", "every generated row, with its `reject_reason` (None when the parser accepted it)"),
    "dropped": ("dropped", "the parsed rows a quality gate dropped, with `quality_reason` and each gate's columns"),
}
DEFAULT_LICENSE_NAME = "teacher-and-seed-data-terms"
# The columns of the default (training) config; every column (raw responses, request keys, gate details) is in
# `all`, and the dropped rows with their gates' columns in `dropped`.
TRAINING_COLUMNS = (
    "messages",
    "prompt",
    "completion",
    "question",
    "answer",
    "final_answer",
    "method",
    "region_id",
    "seed_a",
    "seed_b",
    "teacher_model",
    "prompt_version",
)
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"]*[^\s'\".,:;)\]]", re.IGNORECASE)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/-])(?:~|/)[^\s'\"]*/([^\s'\"/]+)")


def public_text(text: str) -> str:
    """``text`` without server URLs (a teacher's base URL: ``<url>``) or absolute local paths (only their last part),
    for what leaves the machine (the Hub card, recipe, manifest and the rows' ``error`` column).

    Example:
        >>> public_text("openai:Qwen/Qwen2.5-7B-Instruct@http://10.0.0.5:8000/v1")
        'openai:Qwen/Qwen2.5-7B-Instruct@<url>'
        >>> public_text("/home/me/data/own.jsonl"), public_text("openai/gsm8k")
        ('own.jsonl', 'openai/gsm8k')
    """
    return _ABSOLUTE_PATH.sub(r"\1", _URL.sub("<url>", text))


def _public(value):
    """``value`` (a manifest, a config) with :func:`public_text` applied to every string in it."""
    if isinstance(value, str):
        return public_text(value)
    if isinstance(value, dict):
        return {key: _public(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_public(item) for item in value]
    return value


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
    decontam = (
        "decontamination is off"
        if normalize_off("decontaminate", config.get("decontaminate", "gsm8k-test")) is None
        else f"decontamination against `{config.get('decontaminate')}` uses {config.get('decontam_ngram')}-gram "
        f"overlap and embedding cosine >= {config.get('decontam_threshold')}"
    )
    lines = [
        "## Quality gates",
        "",
        f"Applied in order, each to the rows the earlier ones kept: {gates or 'none'}. Answers are verified as "
        f"`{config.get('answer_format', 'gsm8k')}`; duplicates are exact (normalised text) or near (centred cosine of "
        f"the student's question embeddings >= {config.get('dedup_threshold')}) against the seed pool and earlier "
        f"rows; {decontam}.",
        "",
    ]
    leaked = quality.get("contaminated") or []
    if leaked:
        lines += [f"{len(leaked)} generated rows leaked evaluation problems and were dropped:", ""]
        lines += [f"- `{row['contaminated_with']}` ({row['contamination_reason']})" for row in leaked[:20]]
        lines.append("")
    return lines


def _repository_url() -> str | None:
    """The package's source repository from its installed metadata (``[project.urls]``), or None when it has none."""
    try:
        urls = metadata.metadata("embedsdg-hf").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("repository", "source", "homepage", "code"):
            return url.strip()
    return None


def _card_data(
    manifest: dict,
    *,
    repo_id: str,
    infos: dict | None,
    license: str,
    license_name: str | None,
    license_link: str | None,
):
    """The card's YAML metadata as ``DatasetCardData``, with the ``configs`` and ``dataset_info`` blocks."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    config, counts = manifest["config"], manifest["counts"]
    tags = list(
        dict.fromkeys(["synthetic", "embedsdg", "math", *(["randomsdg"] if config["method"] == "random" else [])])
    )
    extra: dict = {"tags": tags}
    if license == "other":
        extra["license_name"] = license_name or DEFAULT_LICENSE_NAME
        if license_link:
            extra["license_link"] = license_link
    data = DatasetCardData(
        license=license,
        task_categories=["text-generation"],
        language=["en"],
        size_categories=[_size_category(counts.get("train", counts.get("accepted", 0)))],
        pretty_name=repo_id.split("/")[-1],
        **extra,
    )
    names = list(infos) if infos else ["default"]
    MetadataConfigs(
        {name: {"data_files": [{"split": "train", "path": f"{CONFIGS[name][0]}/train-*"}]} for name in names}
    ).to_dataset_card_data(data)
    if infos:
        DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def make_dataset_card(
    manifest: dict,
    *,
    repo_id: str,
    infos: dict | None = None,
    license: str = "other",
    license_name: str | None = None,
    license_link: str | None = None,
) -> str:
    """The README.md of a pushed run: YAML metadata, what was done, counts, rejects, figures, how to reproduce.

    Built with ``huggingface_hub``'s ``DatasetCardData`` / ``DatasetCard``. ``infos`` (config name ->
    ``datasets.DatasetInfo``, from :func:`stage_run_for_hub`) adds the ``dataset_info`` block and one ``configs``
    entry per config; without it the card lists the ``default`` config only. A licence of ``other`` gets a
    ``license_name`` (default :data:`DEFAULT_LICENSE_NAME`: the teacher's and seed data's terms apply).

    Example:
        >>> manifest = json.load(open("outputs/run/manifest.json"))  # doctest: +SKIP
        >>> card = make_dataset_card(manifest, repo_id="me/gsm8k-embedsdg")  # doctest: +SKIP
    """
    from huggingface_hub import DatasetCard

    manifest = _public(manifest)
    config, counts = manifest["config"], manifest["counts"]
    gen = manifest.get("generation") or {}
    method = config["method"]
    data = _card_data(
        manifest,
        repo_id=repo_id,
        infos=infos,
        license=license,
        license_name=license_name,
        license_link=license_link,
    )
    described = {
        "embedsdg": (
            "EmbedSDG: seed pairs from opposite sides of sparse regions of the student's embedding space, their "
            "token-embedding sequences averaged and decoded by the student, and a teacher LLM writing a new example "
            "from both seeds and the decoded text (prompt P_g)."
        ),
        "random": "RandomSDG baseline: one uniformly sampled seed per example (prompt P_b), same budget as EmbedSDG.",
    }[method]
    rejects = gen.get("rejects_by_reason", {})
    url = _repository_url()
    package = f"[embedsdg-hf]({url})" if url else "embedsdg-hf"
    version = (manifest.get("versions") or {}).get("embedsdg-hf")
    lines = [
        f"# {repo_id.split('/')[-1]}",
        "",
        f"Synthetic fine-tuning data generated with {package}"
        + (f" {version}" if version else "")
        + f", an implementation of EmbedSDG ({PAPER}).",
        "",
        f"**Method**: `{method}`. {described}",
        "",
        f"- Student (embedding space, decoder): `{config['student']}`",
        f"- Teacher: `{config['teacher']}` (temperature {config['temperature']}, top_p {config['top_p']}, "
        f"max_tokens {config['max_tokens']})",
        f"- Seed pool: `{config['seed_pool']}` ({counts.get('pool', '?')} rows)",
        "",
        "## Configs",
        "",
        "| config | rows | what |",
        "|---|---:|---|",
    ]
    shown = list(infos) if infos else ["default"]
    for name in shown:
        rows = infos[name].splits["train"].num_examples if infos else counts.get("train", counts.get("accepted"))
        lines.append(f"| `{name}` | {rows if rows is not None else '?'} | {CONFIGS[name][1]} |")
    lines += [
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'train = load_dataset("{repo_id}", split="train")  # messages + TRL prompt/completion columns',
    ]
    lines += [f'{name} = load_dataset("{repo_id}", "{name}", split="train")' for name in shown if name != "default"]
    lines += [
        "```",
        "",
        f"Plain TRL trains on the answers only (the `prompt`/`completion` columns turn completion-only loss on): "
        f"`trl sft --model_name_or_path <student> --dataset_name {repo_id}`.",
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
    lines.append("")
    lines += _quality_section(config, quality)
    lines += (manifest.get("coverage_text") or {}).get("card", [])  # CoverageReport.text(): the selector's words
    figures = manifest.get("figures") or {}
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}](figures/{file})" for name, file in sorted(figures.items())]
        lines.append("")
    if license == "other":
        lines += [
            "## Licence",
            "",
            f"`{data.license_name}`: the examples were written by the teacher `{config['teacher']}` from seeds of "
            f"`{config['seed_pool']}`; the terms of that model's outputs and of the seed data apply.",
            "",
        ]
    lines += [
        "## Reproduce",
        "",
        "embedsdg-hf is not published on PyPI yet: install it from its source"
        + (f" ({url})" if url else " checkout")
        + " (`pip install -e .`), then:",
        "",
        "```bash",
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
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _training_rows(out: Path):
    """The rows the run trains on: those that passed every quality gate (``quality/``), without embedding columns.
    Runs from before the gates existed have only ``synthetic/``: its accepted rows."""
    from .common.mapping import without_embeddings

    run = RunDir(out)
    if run.quality.exists():
        from .quality.gates import filter_passed

        rows = load_saved_dataset(run.quality).filter(filter_passed)
    else:
        from .generation.generate import filter_accepted

        rows = load_saved_dataset(run.synthetic).filter(filter_accepted)
    return without_embeddings(rows)


def _config_rows(out: Path) -> dict:
    """config name -> its rows (``default``: the training rows; ``all``: every generated row; ``dropped``: the rows
    a quality gate dropped, when the run has gates)."""
    from .common.mapping import without_embeddings

    run = RunDir(out)
    training = _training_rows(out)
    configs = {"default": training.select_columns([c for c in TRAINING_COLUMNS if c in training.column_names])}
    configs["all"] = without_embeddings(load_saved_dataset(run.synthetic))
    if run.quality.exists():
        from .quality.gates import filter_passed

        quality = load_saved_dataset(run.quality)
        configs["dropped"] = without_embeddings(quality.filter(lambda row: not filter_passed(row)))
    return configs


def _public_errors(errors: list) -> dict:
    return {"error": [None if e is None else public_text(e) for e in errors]}


def stage_run_for_hub(
    output_dir: str | Path,
    repo_id: str,
    folder: str | Path,
    *,
    license: str = "other",
    license_name: str | None = None,
    license_link: str | None = None,
) -> Path:
    """Write the dataset repository of a run into ``folder``, as :func:`push_run_to_hub` uploads it.

    ``README.md`` (the card, with a ``dataset_info`` entry per config as ``Dataset.push_to_hub`` computes it),
    ``data/``, ``all/``, ``dropped/`` (one Parquet file each; a config without rows, e.g. ``dropped`` when every
    row passed, is left out), ``figures/``, ``manifest.json``, ``run_config.yaml``. A run with no training rows raises
    ``ValueError``: there is nothing to push.

    Example:
        >>> folder = stage_run_for_hub("outputs/run", "me/gsm8k-embedsdg", "/tmp/repo")  # doctest: +SKIP
        >>> load_dataset(str(folder), "dropped", split="train")  # doctest: +SKIP
    """
    from datasets import DatasetInfo, SplitDict, SplitInfo

    out, folder = Path(output_dir), Path(folder)
    run = RunDir(out)
    manifest = _public(json.loads(run.manifest_file.read_text()))
    if "accepted" not in manifest.get("counts", {}):
        raise ValueError(f"{out} has no generated dataset (stage 'analysis' only?): nothing to push.")
    configs = _config_rows(out)
    if len(configs["default"]) == 0:
        raise ValueError(
            f"{out} has no rows that passed the parser and the quality gates: nothing to train on, so nothing to "
            f"push ({len(configs['all'])} generated rows are in {run.synthetic_jsonl} with their reasons)."
        )
    infos = {}
    for name, rows in configs.items():
        if len(rows) == 0:  # `datasets` cannot load a config without rows: it is left out, and the card says so
            logger.info("Config %r has no rows: not uploaded.", name)
            continue
        rows = rows.flatten_indices()
        if "error" in rows.column_names:  # a failed request's message names the server it tried
            rows = rows.map(_public_errors, batched=True, input_columns="error", desc="Removing URLs from errors")
        path = folder / CONFIGS[name][0] / "train-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(str(path))
        info = DatasetInfo(features=rows.features, splits=SplitDict(), config_name=name)
        info.splits.add(SplitInfo(name="train", num_bytes=rows.data.nbytes, num_examples=len(rows)))
        info.download_size, info.dataset_size = path.stat().st_size, rows.data.nbytes
        info.size_in_bytes = info.download_size + info.dataset_size
        infos[name] = info
    card = make_dataset_card(
        manifest,
        repo_id=repo_id,
        infos=infos,
        license=license,
        license_name=license_name,
        license_link=license_link,
    )
    (folder / "README.md").write_text(card)
    for name in sorted((manifest.get("figures") or {}).values()):
        if not (out / name).is_file():
            raise ValueError(f"{out / name} is listed under 'figures' in {run.manifest_file} but is missing.")
        (folder / "figures").mkdir(exist_ok=True)
        (folder / "figures" / name).write_bytes((out / name).read_bytes())
    (folder / RunDir.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "run_config.yaml").write_text(_recipe(manifest["config"]))
    return folder


def push_run_to_hub(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    license: str = "other",
    license_name: str | None = None,
    license_link: str | None = None,
) -> str:
    """Push a run (three configs, card, figures, manifest, recipe) in one commit; return the repo URL.

    Files of an earlier push under ``data/``, ``all/``, ``dropped/`` and ``figures/`` that this push does not
    rewrite are deleted in the same commit. Raises ``RuntimeError`` with the reason when the Hub cannot be reached
    (offline mode, no network, no token): a push is never reported as done unless the Hub accepted it.
    """
    from huggingface_hub import HfApi, constants

    out = Path(output_dir)
    manifest = json.loads(RunDir(out).manifest_file.read_text())
    if constants.HF_HUB_OFFLINE:
        raise RuntimeError(f"Cannot push to {repo_id!r}: HF_HUB_OFFLINE is set. Unset it to push; nothing was sent.")
    if "accepted" not in manifest.get("counts", {}):
        raise ValueError(f"{out} has no generated dataset (stage 'analysis' only?): nothing to push.")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="embedsdg-hub-") as tmp:
        folder = stage_run_for_hub(
            out, repo_id, tmp, license=license, license_name=license_name, license_link=license_link
        )
        n_rows = manifest["counts"].get("train", "?")
        try:
            url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id,
                repo_type="dataset",
                folder_path=str(folder),
                commit_message=f"embedsdg run ({manifest['config']['method']}): {n_rows} training rows",
                delete_patterns=[f"{folder_name}/*" for folder_name, _ in CONFIGS.values()] + ["figures/*"],
            )
        except Exception as err:  # network/auth errors come from several HTTP stacks; re-raised with the endpoint
            raise RuntimeError(
                f"Could not push to {repo_id!r} at {constants.ENDPOINT}: {type(err).__name__}: {err}"
            ) from err
    logger.info("Pushed %s training rows (+ configs all, dropped) to %s in one commit", n_rows, url)
    return str(url)
