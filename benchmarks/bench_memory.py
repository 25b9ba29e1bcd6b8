"""Peak memory of add_embeddings grows with the batch, not with the row count.

Each size runs in a fresh subprocess: the parent writes a synthetic word-problem pool with ``save_to_disk``; the
child loads it memory-mapped, loads the model, then embeds (results stream to the on-disk cache) while a thread
samples the process's *anonymous* resident memory (``RssAnon``: heap, tensors, Arrow buffers; file-backed pages of
the memory-mapped dataset are excluded, as the kernel can drop them at will). Target (issue #2): the peak is set
by the batch, so 400k rows peak about where a small pool does.

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
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _anon_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class _Sampler(threading.Thread):
    """Samples RssAnon every 20 ms and keeps the maximum."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = _anon_mb(), threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, _anon_mb())
            time.sleep(0.02)


def _child(rows: int, batch_size: int, workdir: str) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_CACHE"] = os.path.join(workdir, "cache")
    import datasets

    from embedsdg_hf import add_embeddings
    from embedsdg_hf.common.models import load_input_embeddings, load_tokenizer

    datasets.disable_progress_bars()
    ds = datasets.load_from_disk(str(Path(workdir) / f"pool-{rows}"))  # written by the parent; memory-mapped
    load_tokenizer("smollm2-135m-instruct")
    load_input_embeddings("smollm2-135m-instruct")
    baseline = _anon_mb()
    sampler = _Sampler()
    sampler.start()
    start = time.perf_counter()
    out = add_embeddings(ds, model="smollm2-135m-instruct", batch_size=batch_size)
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    on_disk = sum(Path(f["filename"]).stat().st_size for f in out.cache_files) / 2**20
    record = {
        "rows": rows,
        "batch_size": batch_size,
        "anon_before_mb": round(baseline, 1),
        "anon_peak_mb": round(sampler.peak, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "embed_seconds": round(seconds, 1),
        "output_on_disk_mb": round(on_disk, 1),
    }
    print(json.dumps(record))


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
            make_word_problems(size, seed=0).save_to_disk(str(Path(workdir) / f"pool-{size}"))
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
    print(f"add_embeddings memory by pool size (batch_size={args.batch_size}; fresh process each)\n")
    print(
        "| rows | anon. memory before (MB) | anon. peak while embedding (MB) | growth (MB) | max RSS incl. mapped "
        "file pages (MB) | embed s | output on disk (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        growth = r["anon_peak_mb"] - r["anon_before_mb"]
        print(
            f"| {r['rows']:,} | {r['anon_before_mb']:.0f} | {r['anon_peak_mb']:.0f} | {growth:.0f} | "
            f"{r['max_rss_mb']:.0f} | {r['embed_seconds']:.1f} | {r['output_on_disk_mb']:.0f} |"
        )
    small, large = rows[0], rows[-1]
    ratio = large["anon_peak_mb"] / small["anon_peak_mb"]
    print(
        f"\nanonymous peak({large['rows']:,}) / peak({small['rows']:,}) = {ratio:.2f} "
        f"for {large['rows'] / small['rows']:.0f}x the rows"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps({"runs": rows, "peak_ratio": round(ratio, 3)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
