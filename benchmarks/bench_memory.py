"""Peak memory of add_embeddings grows with the batch, not with the row count.

Each size runs in a fresh subprocess: a synthetic word-problem pool is written to Parquet, loaded memory-mapped,
embedded (results stream to the on-disk cache), and the process's peak RSS is read after the model is loaded
and after embedding. Target (issue #2): peak on 400k rows close to peak on a small pool at the same batch size.

    python benchmarks/bench_memory.py [--sizes 25000 400000] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(rows: int, batch_size: int, workdir: str) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_CACHE"] = os.path.join(workdir, "cache")
    import datasets

    from embedsdg_hf import add_embeddings
    from embedsdg_hf.models import load_input_embeddings, load_tokenizer

    datasets.disable_progress_bars()
    parquet = Path(workdir) / f"pool-{rows}.parquet"  # written by the parent: pool generation is not measured
    load_tokenizer("smollm2-135m-instruct")
    load_input_embeddings("smollm2-135m-instruct")
    ds = datasets.load_dataset("parquet", data_files=str(parquet), split="train")
    baseline = _peak_mb()
    start = time.perf_counter()
    out = add_embeddings(ds, model="smollm2-135m-instruct", batch_size=batch_size)
    seconds = time.perf_counter() - start
    on_disk = sum(Path(f["filename"]).stat().st_size for f in out.cache_files) / 2**20
    print(
        json.dumps(
            {
                "rows": rows,
                "batch_size": batch_size,
                "peak_before_mb": round(baseline, 1),
                "peak_after_mb": round(_peak_mb(), 1),
                "embed_seconds": round(seconds, 1),
                "output_on_disk_mb": round(on_disk, 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 400_000])
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.batch_size, args.workdir)
        return

    from embedsdg_hf import make_word_problems

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as workdir:
        for size in args.sizes:
            make_word_problems(size, seed=0).to_parquet(str(Path(workdir) / f"pool-{size}.parquet"))
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(size),
                "--batch-size",
                str(args.batch_size),
                "--workdir",
                workdir,
            ]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"add_embeddings peak RSS by pool size (batch_size={args.batch_size}; fresh process each)\n")
    print(
        "| rows | peak RSS after model + data load (MB) | peak RSS after embedding (MB) | growth (MB) | embed s "
        "| output on disk (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        growth = r["peak_after_mb"] - r["peak_before_mb"]
        print(
            f"| {r['rows']:,} | {r['peak_before_mb']:.0f} | {r['peak_after_mb']:.0f} | {growth:.0f} | "
            f"{r['embed_seconds']:.1f} | {r['output_on_disk_mb']:.0f} |"
        )
    small, large = rows[0], rows[-1]
    ratio = large["peak_after_mb"] / small["peak_after_mb"]
    print(
        f"\npeak({large['rows']:,}) / peak({small['rows']:,}) = {ratio:.2f} "
        f"for {large['rows'] / small['rows']:.0f}x the rows"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps({"runs": rows, "peak_ratio": round(ratio, 3)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
