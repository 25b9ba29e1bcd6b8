"""Coverage of a run dir: read what ``embedsdg run`` wrote, compute
the run's selector's coverage (:meth:`~embedsdg_hf.quality.selectors.Selector.coverage`), write
``coverage.{json,md,png}``.

Reading run dirs (which files, which settings must match between compared runs) lives here; the numbers themselves
are computed in :mod:`embedsdg_hf.analysis` (``coverage``, ``knn_coverage``, ``rarity_coverage``) from datasets and
arrays alone. Run-dir paths and the saved config come from :class:`~embedsdg_hf.run.rundir.RunDir`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from ..analysis.coverage import EMBEDDING_KEYS, CoverageReport
from ..common.progress import quiet_progress
from ..common.validation import template_fields
from ..config import PipelineConfig
from ..quality.selectors import EmbeddingSettings, SelectionContext, get_selector
from .rundir import RunDir

__all__ = ["coverage_from_run"]

logger = logging.getLogger(__name__)


def _need(path: Path, made_by: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist: {made_by}")
    return path


_ANALYSIS = (
    "`embedsdg run` writes it (EmbedSDG method, any stage), e.g. "
    "`embedsdg run --config recipes/gsm8k-cpu/pipeline.yaml --output_dir DIR`."
)
_TRAIN = (
    "`embedsdg run` writes it once teacher generation finishes (--stage all, the default; --stage analysis stops "
    "before)."
)


def _read_train(run: RunDir, text_template: str):
    """The run's accepted rows with their ``question`` / ``answer`` under the pool's column names (the template's
    two fields, e.g. ``problem`` / ``solution``), so that they are embedded with the pool's own template."""
    from datasets import Dataset, load_dataset

    path = _need(run.train, _TRAIN)
    if not path.read_text(encoding="utf-8").strip():  # no accepted rows: coverage_report reports zero points
        return Dataset.from_dict({})
    with quiet_progress():
        rows = load_dataset("json", data_files=str(path), split="train")
    names = dict(zip(("question", "answer"), template_fields(text_template)))
    keep = [c for c in ("region_id", "method") if c not in names.values()] + list(names)
    return rows.select_columns([c for c in keep if c in rows.column_names]).rename_columns(
        {old: new for old, new in names.items() if old != new and old in rows.column_names}
    )


def coverage_from_run(
    run_dir: str | Path,
    *,
    compare: Mapping[str, str | Path] | None = None,
    output_dir: str | Path | None = None,
) -> CoverageReport:
    """Coverage of an EmbedSDG run's accepted rows, compared with other runs' (e.g. RandomSDG, same budget).

    Reads ``run_config.json``, ``pool/``, ``regions/``, ``reducer/``, ``train.jsonl`` and the selector's fitted parts
    (its ``saved_files``: ``grid.json``, ``knn_space.npz``) from ``run_dir``, and ``run_config.json`` + ``train.jsonl``
    from every compared run dir, which must share the run's student, text template, weights and max length (otherwise
    its rows would belong to another embedding space). The run's ``selector`` (:mod:`~embedsdg_hf.quality.selectors`)
    decides what a region is: a grid window (:func:`coverage_report`) or a k-NN ball in the selector's density space,
    on the text it embedded (``knn_text``; :func:`knn_coverage_report`).
    Writes ``coverage.json`` (:meth:`CoverageReport.to_dict`), ``coverage.md`` and ``coverage.png`` into
    ``output_dir`` (default: ``run_dir``).

    Args:
        run_dir: an ``embedsdg run`` output dir of the EmbedSDG method.
        compare: ``{name: run dir}`` of other runs, e.g. ``{"random": "outputs/random-500"}``.
        output_dir: where the three files go (default: ``run_dir``).

    Example:
        >>> compare = {"random": "outputs/random-500"}
        >>> report = coverage_from_run("outputs/embedsdg-500", compare=compare)  # doctest: +SKIP
        >>> report.summary["random"]["landed_in_targeted_regions_share"]  # doctest: +SKIP
    """
    from datasets import load_from_disk

    from ..space.reduce import Reducer

    run = RunDir(run_dir)
    config = run.config()
    if config.method != "embedsdg":
        raise ValueError(
            f"{str(run.path)!r} is a {config.method!r} run: it has no sparse regions of its own. Give the EmbedSDG "
            f"run dir and compare this one with it "
            f"(`embedsdg coverage EMBEDSDG_DIR --compare {config.method}={run.path}`)."
        )
    # a run dir from before selectors were a setting has none saved: it was the grid's
    selector = get_selector(run.config_dict().get("selector", "grid")).from_config(config)
    for name in (RunDir.POOL, RunDir.REGIONS, RunDir.REDUCER, *selector.saved_files):
        _need(run / name, _ANALYSIS)
    synthetic = {"embedsdg": _read_train(run, config.text_template)}
    runs = {"embedsdg": {"run_dir": str(run.path), "budget": _budget(config)}}
    for name, other_dir in (compare or {}).items():
        if name in synthetic:
            raise ValueError(f"Compared run name {name!r} is taken by the run itself; choose another, e.g. 'random'.")
        other = RunDir(other_dir)
        other_config = other.config()
        differ = [k for k in EMBEDDING_KEYS if getattr(other_config, k) != getattr(config, k)]
        if differ:
            detail = ", ".join(f"{k}={getattr(other_config, k)!r} vs {getattr(config, k)!r}" for k in differ)
            raise ValueError(
                f"Cannot compare {name}={str(other.path)!r} with {str(run.path)!r}: it used another embedding setup "
                f"({detail}), so its rows would live in another embedding space. Compare runs with the same student "
                "and text template."
            )
        if _budget(other_config) != _budget(config) or other_config.seed_pool != config.seed_pool:
            logger.warning(
                "%s (%s) has budget %s and seed pool %r; %s has budget %s and seed pool %r: not the same budget/pool.",
                name, other.path, _budget(other_config), other_config.seed_pool, run.path, _budget(config),
                config.seed_pool,
            )  # fmt: skip
        synthetic[name] = _read_train(other, config.text_template)
        runs[name] = {"run_dir": str(other.path), "budget": _budget(other_config)}

    pool = load_from_disk(str(run.pool))
    regions = load_from_disk(str(run.regions))
    reducer = Reducer.load(run.reducer)
    ctx = SelectionContext(
        pool=pool, embedding=EmbeddingSettings.from_config(config), reducer=reducer, run_dir=run.path
    )
    report = selector.coverage(ctx, regions, synthetic)
    for name, info in runs.items():
        info["accepted_rows"] = report.methods[name]["synthetic_points"]
    report.settings["runs"] = runs
    as_json, as_markdown, figure = run.coverage_files(output_dir)
    as_json.parent.mkdir(parents=True, exist_ok=True)
    as_json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    as_markdown.write_text(report.to_markdown() + "\n", encoding="utf-8")
    report.plot(figure)
    return report


def _budget(config: PipelineConfig) -> int | None:
    """Teacher requests a run made: ``n_pairs`` items x ``samples_per_item`` (the same for both methods)."""
    if config.n_pairs is None:
        return None
    return int(config.n_pairs) * int(config.samples_per_item or 1)
