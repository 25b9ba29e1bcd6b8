"""Optional experiment tracking of a generation run: ``report_to: trackio`` in a pipeline recipe.

At the end of a run (finished or failed) the run's manifest goes to `trackio <https://github.com/gradio-app/trackio>`_
as one logged step: the config as the run's config; the counts, rejects by reason, quality drops by gate and reason,
teacher tokens, coverage numbers and per-step seconds as metrics; the figures (density histogram, embedding map,
coverage) as images; the step table (rows in / out, seconds) as a table. trackio is local-first: it writes a SQLite
database under ``$TRACKIO_DIR`` (default ``$HF_HOME/trackio``), ``trackio show`` opens the dashboard, and nothing
leaves the machine unless a Space is configured (``TRACKIO_SPACE_ID``). Training reports through transformers' own
integration instead: ``--report_to trackio`` (with ``--project`` / ``--run_name``) on ``embedsdg train``.

Example:
    >>> metrics = run_metrics({"counts": {"pool": 1000, "train": 3}, "steps": [{"step": "embed", "seconds": 2.5}]})
    >>> metrics["counts/pool"], metrics["seconds/embed"]
    (1000, 2.5)
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from typing import Any

from .options import TRACKERS as _TRACKERS

__all__ = ["TRACKERS", "check_tracker", "log_run", "run_metrics"]

logger = logging.getLogger(__name__)

TRACKERS = _TRACKERS
# The manifest's sections whose numbers become metrics (config, versions and the grid are config, not metrics).
_SECTIONS = ("counts", "windows", "generation", "quality", "coverage")


def check_tracker(report_to: str) -> None:
    """Raise ``ValueError`` unless ``report_to`` is a known tracker whose library is installed.

    Example:
        >>> check_tracker("none")
    """
    if report_to not in TRACKERS:
        raise ValueError(f"report_to must be one of {list(TRACKERS)}, got {report_to!r}.")
    if report_to == "trackio" and importlib.util.find_spec("trackio") is None:
        raise ValueError("report_to: trackio needs trackio: pip install 'embedsdg-hf[trackio]' (or 'trackio>=0.43').")


def _flatten(value: Any, prefix: str, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key is not None:
                _flatten(inner, f"{prefix}/{key}", out)
    elif isinstance(value, bool):
        out[prefix] = int(value)
    elif isinstance(value, (int, float)):
        out[prefix] = value


def _slug(name: str) -> str:
    """A step name as a metric name: ``"decode (reused from decoded/)"`` -> ``"decode"``."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name.split(" (reused", 1)[0]).strip("_")


def run_metrics(manifest: dict[str, Any]) -> dict[str, float]:
    """The numbers of a run's manifest as flat metric names: ``counts/train``, ``generation/rejects_by_reason/
    truncated``, ``quality/gates/verification/dropped``, ``coverage/embedsdg/landed_in_target``, ``seconds/<step>``,
    ``wall_seconds`` and ``failed`` (0 or 1). Missing sections are skipped; text values (error messages) are not
    metrics."""
    metrics: dict[str, float] = {}
    for section in _SECTIONS:
        _flatten(manifest.get(section), section, metrics)
    for step in manifest.get("steps") or []:
        if step.get("seconds") is not None:
            metrics[f"seconds/{_slug(step['step'])}"] = step["seconds"]
    if manifest.get("wall_seconds") is not None:
        metrics["wall_seconds"] = manifest["wall_seconds"]
    if "status" in manifest:
        metrics["failed"] = int(manifest["status"] == "failed")
    return metrics


def log_run(
    manifest: dict[str, Any], run_dir: str | Path, *, report_to: str, project: str, name: str | None = None
) -> None:
    """Log a finished (or failed) run's manifest and figures to ``report_to`` (``"none"``: nothing).

    ``project`` is the tracker's project, ``name`` the run's (default: the run dir's name). Figures are read from the
    paths in ``manifest["figures"]`` (relative ones from ``run_dir``); a missing figure is skipped with a warning.
    """
    check_tracker(report_to)
    if report_to == "none":
        return
    import pandas as pd
    import trackio

    run_dir = Path(run_dir)
    config = {**manifest.get("config", {}), "status": manifest.get("status"), "run_dir": str(run_dir.resolve())}
    trackio.init(project=project, name=name or run_dir.resolve().name, config=config)
    try:
        logged: dict[str, Any] = dict(run_metrics(manifest))
        for key, path in (manifest.get("figures") or {}).items():
            path = Path(path) if Path(path).is_absolute() or Path(path).exists() else run_dir / path
            if path.is_file():
                logged[f"figures/{key}"] = trackio.Image(str(path), caption=path.name)
            else:
                logger.warning("Figure %r (%s) is not there: not sent to trackio", key, path)
        if manifest.get("steps"):
            logged["steps"] = trackio.Table(dataframe=pd.DataFrame(manifest["steps"]))
        trackio.log(logged, step=0)
    finally:
        trackio.finish()
    logger.info("Logged the run to trackio project %r", project)
