"""The ``rarity`` selector's analysis stage (views + sparsity + pairs) on large built-in pools (issue 21, item 6).

Sparsity is measured against a fixed-size random reference sample of the pool (``reference_size``, default 8000
rows), so the k-NN step costs n x reference instead of n x n. With ``--exact-check`` the selection is repeated with
the whole pool as the reference (the same fitted spec and views: only the neighbour search differs) and the overlap
of the chosen centres is reported (the exact run is O(n^2): about half an hour at 400k rows here, in blocks of
~256 MB). Rows measured now replace the
rows of the same size in ``benchmarks/results/selection_scale.json``; the other sizes' rows stay, each with its date.

    python benchmarks/bench_selection_scale.py --rows 100000 400000 [--exact-check 20000] [--pairs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m-instruct"


def _pool(n: int):
    """``n`` built-in questions with random 2-D map coordinates (the map is not timed; only the boxes use it)."""
    import datasets
    import numpy as np

    from embedsdg_hf.data.word_problems import make_word_problems

    questions = make_word_problems(n, seed=0)["question"]
    coords = np.random.default_rng(0).random((n, 2), dtype=np.float32)
    features = datasets.Features(
        {"question": datasets.Value("string"), "coords": datasets.List(datasets.Value("float32"), length=2)}
    )
    return datasets.Dataset.from_dict({"question": questions, "coords": coords}, features=features)


def _select(pool, n_pairs: int):
    """The default analysis, timed: fit (views and the pool's shape), sparsity, regions and pairs."""
    from embedsdg_hf.space.rarity import fit_with_views, rarity_selection

    t0 = time.perf_counter()
    spec, views = fit_with_views(pool["question"], model=MODEL)
    chosen = rarity_selection(pool, n_pairs=n_pairs, model=MODEL, spec=spec, fitted_views=views)
    return time.perf_counter() - t0, chosen.regions, spec, views


def _exact_select(pool, n_pairs: int, spec: dict, views: dict):
    """The same fitted spec and views, with the whole pool as the reference (so only the neighbour search differs),
    timed. The lexical view's reference is made dense up to 4 GB here (the library's limit is 1 GB, which a 400k-row
    reference of a 755-word vocabulary passes): as a sparse product the exact check at 400k rows would take hours
    instead of about half an hour. The approximate run makes its 8,000-row reference dense too, so both compute the
    lexical similarities the same way."""
    import copy

    from embedsdg_hf.space import rarity

    exact = copy.deepcopy(spec)
    exact["settings"]["reference_size"] = len(pool)
    limit = rarity._DENSE_REFERENCE_BYTES
    rarity._DENSE_REFERENCE_BYTES = 4 << 30
    try:
        t0 = time.perf_counter()
        chosen = rarity.rarity_selection(pool, n_pairs=n_pairs, model=MODEL, spec=exact, fitted_views=views)
        return time.perf_counter() - t0, chosen.regions
    finally:
        rarity._DENSE_REFERENCE_BYTES = limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 400_000])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--exact-check", type=int, nargs="*", default=[], help="Sizes also run with reference = pool.")
    args = parser.parse_args()
    results = []
    for n in sorted(set(args.rows) | set(args.exact_check)):
        pool = _pool(n)
        seconds, regions, spec, views = _select(pool, args.pairs)
        row = {
            "rows": n,
            "seconds": round(seconds, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "load": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        if n in args.exact_check:
            exact_seconds, exact = _exact_select(pool, args.pairs, spec, views)
            a, b = set(regions["centre"]), set(exact["centre"])
            row.update(
                {
                    "exact_seconds": round(exact_seconds, 1),
                    "exact_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                    "centre_overlap": round(len(a & b) / len(b), 3),
                }
            )
        print(json.dumps(row), flush=True)
        results.append(row)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "selection_scale.json"
    measured = {row["rows"] for row in results}
    kept = [row for row in json.loads(path.read_text()) if row["rows"] not in measured] if path.exists() else []
    path.write_text(json.dumps(sorted(kept + results, key=lambda row: row["rows"]), indent=2))


if __name__ == "__main__":
    main()
