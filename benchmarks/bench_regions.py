"""Benchmark: fit_grid + find_sparse_regions + make_seed_pairs on uniform random 3-D coords.

Targets: total < 10 s on 1M points; time(1M) / time(100k) <= 12 (the steps are O(n + windows), FAISS is O(n) per
query). The threshold is the 10% quantile of non-empty window counts so that there are enough regions for the pairs.

Usage:
    python benchmarks/bench_regions.py --sizes 100000 1000000 --repeats 3

Prints a Markdown table and writes ``benchmarks/results/regions.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import datasets
import faiss
import numpy as np
import pyarrow as pa

from embedsdg_hf.space.pairs import make_seed_pairs
from embedsdg_hf.space.regions import find_sparse_regions, fit_grid

STEPS = ("fit_grid", "find_sparse_regions", "make_seed_pairs")
RESULTS = Path(__file__).parent / "results" / "regions.json"


def make_dataset(n: int, k: int = 3, seed: int = 0) -> datasets.Dataset:
    """Uniform random points in [0, 1]^k as a ``coords`` column of fixed-length float32 lists (built via Arrow)."""
    values = np.random.default_rng(seed).random((n, k), dtype=np.float32)
    features = datasets.Features({"coords": datasets.List(datasets.Value("float32"), length=k)})
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), k)
    return datasets.Dataset.from_dict({"coords": column}, features=features)


def run_once(ds: datasets.Dataset, *, bins: int, quantile: float, n_pairs: int) -> tuple[dict[str, float], dict]:
    """Time each step once; return the timings and what was produced."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    grid = fit_grid(ds, bins=bins, threshold="quantile", quantile=quantile)
    times["fit_grid"] = time.perf_counter() - start
    start = time.perf_counter()
    regions = find_sparse_regions(ds, grid)
    times["find_sparse_regions"] = time.perf_counter() - start
    start = time.perf_counter()
    pairs = make_seed_pairs(ds, regions, n_pairs=n_pairs)
    times["make_seed_pairs"] = time.perf_counter() - start
    times["total"] = sum(times[s] for s in STEPS)
    info = {
        "threshold": grid.threshold,
        "regions": len(regions),
        "pairs": len(pairs),
        "pool_seeds": int(sum(s == "pool" for s in pairs["source_a"]) + sum(s == "pool" for s in pairs["source_b"])),
    }
    return times, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bins", type=int, default=50)
    parser.add_argument("--quantile", type=float, default=0.10)
    parser.add_argument("--n-pairs", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()  # a benchmark script, not library code

    rows = []
    for n in args.sizes:
        ds = make_dataset(n)
        runs = [
            run_once(ds, bins=args.bins, quantile=args.quantile, n_pairs=args.n_pairs) for _ in range(args.repeats)
        ]
        median = {key: statistics.median(r[0][key] for r in runs) for key in (*STEPS, "total")}
        rows.append({"n": n, "median_s": median, **runs[-1][1]})

    header = "| n | " + " | ".join(f"{s} (s)" for s in (*STEPS, "total")) + " | T | regions | pairs | pool seeds |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        times = " | ".join(f"{row['median_s'][s]:.3f}" for s in (*STEPS, "total"))
        counts = f"{row['threshold']} | {row['regions']:,} | {row['pairs']:,} | {row['pool_seeds']}"
        print(f"| {row['n']:,} | {times} | {counts} |")
    ratio = None
    if len(rows) >= 2:
        ratio = rows[-1]["median_s"]["total"] / rows[0]["median_s"]["total"]
        print(f"\ntime({rows[-1]['n']:,}) / time({rows[0]['n']:,}) = {ratio:.2f}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "regions",
        "settings": {"bins": args.bins, "quantile": args.quantile, "n_pairs": args.n_pairs, "repeats": args.repeats},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "numpy": np.__version__,
            "datasets": datasets.__version__,
        },
        "results": rows,
        "ratio_total_largest_over_smallest": ratio,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
