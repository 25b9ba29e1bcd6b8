"""The ``rarity`` selector's k-th-neighbour step (``space/rarity._kth_largest``: a partition at the largest k, then
one at the other ks within the top slice it leaves, a thread per available core) against the two ways it was done
before, kept here as baselines: one partition at every k over the whole row (the same threads; the code of the
fifth session of 2026-12-06) and the partition at the largest k followed by a sort of the top (before it). Side by
side in one run, on the block shapes the selection uses: 2,048 rows against the default 8,000-row reference, and
83 / 256 rows against a 400k-row pool (the exact check and ``refine``), float32 similarities as the views give.
ks = 0.5/1/2/4/8% of the reference. All must give the same values (checked); the ratios are the speed-ups.

    python benchmarks/bench_kth.py [--repeats 3]

Prints one JSON line per shape and writes ``benchmarks/results/kth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from embedsdg_hf.space.rarity import _cores, _kth_largest, _over_rows

RESULTS = Path(__file__).resolve().parent / "results" / "kth.json"
SHAPES = ((2048, 8000), (83, 400_000), (256, 400_000))
FRACTIONS = (0.005, 0.01, 0.02, 0.04, 0.08)


def partition_then_sort(sims: np.ndarray, ks: list[int]) -> np.ndarray:
    """The baseline: partition at the largest k, sort the top, read every k."""
    k = max(ks)
    top = -np.sort(np.partition(-sims, k - 1, axis=1)[:, :k], axis=1)
    return top[:, np.asarray(ks) - 1]


def one_partition(sims: np.ndarray, ks: list[int]) -> np.ndarray:
    """The first baseline: one partition at every k over the whole row, rows split over the same threads."""
    kth = np.asarray(ks) - 1
    return _over_rows(lambda chunk: -np.partition(chunk, kth, axis=1)[:, kth], np.negative(sims, out=sims))


def best_of(fn, sims: np.ndarray, ks: list[int], repeats: int) -> tuple[float, np.ndarray]:
    times = []
    for _ in range(repeats):
        scratch = sims.copy()  # _kth_largest works in place on its block, as in the selection
        t0 = time.perf_counter()
        out = fn(scratch, ks)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n_rows, n_ref in SHAPES:
        ks = sorted({round(f * n_ref) for f in FRACTIONS})
        sims = rng.random((n_rows, n_ref), dtype=np.float32)  # cosine similarities, float32 as in the selection
        sims[:, : n_ref // 100] = 0.5  # ties, as identical texts give
        t_sort, by_sort = best_of(partition_then_sort, sims, ks, args.repeats)
        t_one, by_one = best_of(one_partition, sims, ks, args.repeats)
        t_new, new = best_of(_kth_largest, sims, ks, args.repeats)
        if not (np.array_equal(by_sort, new) and np.array_equal(by_one, new)):
            raise SystemExit(f"bench_kth: the three give different values on a {n_rows} x {n_ref} block.")
        row = {
            "block": f"{n_rows} x {n_ref}",
            "partition_then_sort_s": round(t_sort, 4),
            "one_partition_s": round(t_one, 4),
            "two_partitions_s": round(t_new, 4),
            "threads": min(_cores(), 8),
            "ratio_vs_one_partition": round(t_one / t_new, 2),
            "ratio_vs_partition_then_sort": round(t_sort / t_new, 2),
            "load": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
