"""Selection fidelity on GSM8K train: threshold T, regions, pairs per budget and interpolations in their region.

For 2-D PCA, 3-D PCA and 2-D t-SNE of the 7,473 GSM8K train rows (SmolLM2-135M-Instruct token embeddings, mean
weights, template ``{question}\\n{answer}``; default grid: 20 windows per axis, ``min_populated_neighbors=0.5``,
``max_pairs_per_region=4``, ``side_choice="random"``, seed 0) it measures, side by side in one run:

- *before* (the old defaults): ``threshold="quantile"`` (0.25), regions below T only, pairs capped at regions x 4;
  for t-SNE also the old coordinates (``transform`` of the fitted rows instead of the fitted map);
- *after*: ``threshold="auto"`` (0.25 x the typical window), :func:`make_budget_pairs` (T raised step by step
  until the budget is met), t-SNE rows at their fitted coordinates.

For budgets 500 / 1000 / 4500: pairs made, regions used, how far T was raised, and the share of interpolations that
land in their region. With mean weights the pooled interpolation ``avg x 1^m`` is exactly the midpoint of the two
seeds' pooled embeddings (METHOD.md §4), so interpolations are placed from ``(e_a + e_b) / 2`` with the fitted
reducer, as ``add_interpolations`` does, without decoding anything.

Usage:
    python benchmarks/bench_selection.py [--pool /work/shared/data/gsm8k/train.jsonl] [--skip-tsne]

Prints a Markdown table and writes ``benchmarks/results/selection.json``. t-SNE takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

from embedsdg_hf.space.embed import add_embeddings
from embedsdg_hf.space.pairs import make_budget_pairs, make_seed_pairs
from embedsdg_hf.space.reduce import fit_reducer
from embedsdg_hf.space.regions import find_sparse_regions, fit_grid, summarize_windows

RESULTS = Path(__file__).parent / "results" / "selection.json"
BUDGETS = (500, 1000, 4500)


def coords_dataset(coords: np.ndarray) -> datasets.Dataset:
    k = coords.shape[1]
    features = datasets.Features({"coords": datasets.List(datasets.Value("float32"), length=k)})
    column = pa.FixedSizeListArray.from_arrays(pa.array(coords.astype(np.float32).ravel()), k)
    return datasets.Dataset.from_dict({"coords": column}, features=features)


def in_region_share(pairs: datasets.Dataset, embeddings: np.ndarray, reducer) -> float | None:
    """Share of the pairs whose interpolation (the midpoint of the seeds' pooled embeddings) lands in its region."""
    if len(pairs) == 0:
        return None
    a, b = np.asarray(pairs["seed_a"]), np.asarray(pairs["seed_b"])
    mid = reducer.transform((embeddings[a].astype(np.float64) + embeddings[b]) / 2)
    lower, upper = np.asarray(pairs["region_lower"]), np.asarray(pairs["region_upper"])
    return float(np.mean(np.all((mid >= lower) & (mid <= upper), axis=1)))


def selection(coords: np.ndarray, embeddings: np.ndarray, reducer, *, rule: str, budgets, bins: int) -> dict:
    """T, regions and, per budget, pairs and interpolations in region, with the old (``rule="quantile"``, capped)
    or the new (``rule="auto"``, budget met by raising T) selection."""
    ds = coords_dataset(coords)
    grid = fit_grid(ds, bins=bins, threshold=rule)
    windows = summarize_windows(ds, grid)
    row = {"T": grid.threshold, "threshold_rule": grid.threshold_rule, **{k: windows[k] for k in windows}}
    row["budgets"] = {}
    for budget in budgets:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a shortfall is what is measured here
            if rule == "quantile":
                regions = find_sparse_regions(ds, grid)
                pairs = make_seed_pairs(ds, regions, n_pairs=budget) if len(regions) else None
            else:
                regions, pairs = make_budget_pairs(ds, grid, n_pairs=budget)
        seconds = time.perf_counter() - start
        if pairs is None:
            row["budgets"][budget] = {"pairs": 0, "regions_used": 0}
            continue
        levels = np.asarray(pairs["region_level"])
        row["budgets"][budget] = {
            "pairs": len(pairs),
            "regions_used": len(set(pairs["region_id"])),
            "regions_walked": len(regions),
            "pairs_past_T": int(np.sum(levels > 0)),
            "max_T_reached": int(grid.threshold + levels.max()),
            "mean_region_count": round(float(np.mean(pairs["region_count"])), 2),
            "interp_in_region": in_region_share(pairs, embeddings, reducer),
            "seconds": round(seconds, 3),
        }
    return row


def tsne_drift(fitted: np.ndarray, transformed: np.ndarray, bins: int) -> dict:
    """How far ``transform`` moves the fitted rows: share moved by more than a window diagonal, kNN overlap."""
    import faiss

    span = fitted.max(axis=0) - fitted.min(axis=0)
    diagonal = float(np.linalg.norm(span / bins))
    moved = np.linalg.norm(fitted - transformed, axis=1)

    def knn(x):
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(np.ascontiguousarray(x, dtype=np.float32))
        return index.search(np.ascontiguousarray(x, dtype=np.float32), 11)[1][:, 1:]

    a, b = knn(fitted), knn(transformed)
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b, strict=True)])
    return {"moved_more_than_window_diagonal": float(np.mean(moved > diagonal)), "knn10_overlap": float(overlap)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="/work/shared/data/gsm8k/train.jsonl")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--skip-tsne", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()  # a benchmark script, not library code

    pool = datasets.load_dataset("json", data_files=args.pool, split="train")
    start = time.perf_counter()
    pool = add_embeddings(pool, model=args.model, weights="mean")
    x = np.asarray(pool.with_format("numpy")["embedding"], dtype=np.float32)
    print(f"Embedded {len(x):,} rows in {time.perf_counter() - start:.1f} s")
    emb = coords_dataset(x).rename_column("coords", "embedding")

    results = {}
    spaces = [("pca-2d", "pca", 2), ("pca-3d", "pca", 3)] + ([] if args.skip_tsne else [("tsne-2d", "tsne", 2)])
    for name, method, k in spaces:
        start = time.perf_counter()
        reducer = fit_reducer(emb, method=method, n_components=k, seed=0)
        fit_seconds = time.perf_counter() - start
        coords = reducer.project(x)  # fitted coordinates for the rows it was fitted on
        entry = {"fit_seconds": round(fit_seconds, 1)}
        entry["before"] = selection(coords, x, reducer, rule="quantile", budgets=args.budgets, bins=args.bins)
        entry["after"] = selection(coords, x, reducer, rule="auto", budgets=args.budgets, bins=args.bins)
        if method == "tsne":
            old = reducer.transform(x)  # the old add_coords: fitted rows placed again as new points
            entry["transform_drift"] = tsne_drift(coords, old, args.bins)
            entry["before_old_coords"] = selection(
                old, x, reducer, rule="quantile", budgets=args.budgets, bins=args.bins
            )
            entry["after_old_coords"] = selection(old, x, reducer, rule="auto", budgets=args.budgets, bins=args.bins)
        results[name] = entry
        print(f"{name}: done in {time.perf_counter() - start:.0f} s")

    print(
        "\n| space | selection | T | regions (< T) | removed by neighbour rule | "
        + " | ".join(f"pairs @{b} | in region @{b}" for b in args.budgets)
        + " |"
    )
    print("|---|---|---:|---:|---:|" + "---:|---:|" * len(args.budgets))
    for name, entry in results.items():
        for label in ("before", "after", "before_old_coords", "after_old_coords"):
            if label not in entry:
                continue
            row = entry[label]
            cells = []
            for b in args.budgets:
                got = row["budgets"][b]
                share = got.get("interp_in_region")
                cells.append(f"{got['pairs']} | {'' if share is None else f'{100 * share:.0f}%'}")
            print(
                f"| {name} | {label} | {row['T']} | {row['regions']} | {row['removed_by_neighbor_rule']} | "
                + " | ".join(cells)
                + " |"
            )

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "selection",
        "settings": {
            "pool": args.pool,
            "rows": len(x),
            "model": args.model,
            "weights": "mean",
            "bins": args.bins,
            "min_populated_neighbors": 0.5,
            "max_pairs_per_region": 4,
            "side_choice": "random",
            "seed": 0,
            "budgets": args.budgets,
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__},
        "results": results,
    }
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
