"""Dedup + decontamination of 100k generated rows against a 400k seed pool: wall time per step and peak memory.

Texts: every row is 3 sentences drawn at random from the sentences of the GSM8K *train* questions (~45 words, like a
real question; practically never repeated), so the near-duplicate search sees realistic, diverse texts. Planted in
the generated set, to check the gates still fire at this scale: 500 exact copies of pool rows (case and punctuation
changed), 500 pool rows with one word changed, and 200 verbatim GSM8K *test* questions.

Each configuration runs in a fresh subprocess that samples its anonymous resident memory (heap, tensors, Arrow
buffers; not the memory-mapped dataset pages) every 20 ms. Memory is bounded by batches: the pool is read, embedded
and searched in batches, so the peak should be the same for a 40k and a 400k pool; the generated rows' vectors are
held in memory (100k x 576 float32 = 230 MB).

Near-duplicate search: ``--search exact ivf`` runs each pool with the exact FAISS flat search and with the IVF index
(``approximate=True``, what ``add_duplicate_flags`` uses from 100k indexed rows on), side by side on the same data:
the ratio of the dedup times and the recall of the planted duplicates are what to read.

    python benchmarks/bench_quality.py [--synthetic 100000] [--pools 40000 400000] [--search exact ivf] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import _Sampler  # noqa: E402  (same RssAnon sampler as the embedding memory benchmark)

RESULTS = Path(__file__).resolve().parent / "results"
GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
PLANTED_EXACT, PLANTED_NEAR, PLANTED_TEST = 500, 500, 200


def _texts(sentences: list[str], n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.sample(sentences, 3)) for _ in range(n)]


def _build(n_synthetic: int, n_pool: int, workdir: Path) -> None:
    import datasets

    rng = random.Random(0)
    train = [json.loads(line)["question"] for line in open(GSM8K / "train.jsonl")]
    test = [json.loads(line)["question"] for line in open(GSM8K / "test.jsonl")]
    sentences = sorted({s.strip() for q in train for s in re.split(r"(?<=[.?!])\s+", q) if len(s.split()) >= 4})
    pool = _texts(sentences, n_pool, rng)
    synthetic = _texts(sentences, n_synthetic - PLANTED_EXACT - PLANTED_NEAR - PLANTED_TEST, rng)
    for row in rng.sample(range(n_pool), PLANTED_EXACT):
        synthetic.append(pool[row].upper().replace(".", " ."))
    for row in rng.sample(range(n_pool), PLANTED_NEAR):
        words = pool[row].split()
        words[len(words) // 2] = "banana"
        synthetic.append(" ".join(words))
    synthetic += rng.sample(test, PLANTED_TEST)
    planted = ["none"] * (len(synthetic) - PLANTED_EXACT - PLANTED_NEAR - PLANTED_TEST)
    planted += ["exact"] * PLANTED_EXACT + ["one-word"] * PLANTED_NEAR + ["test"] * PLANTED_TEST
    order = list(range(len(synthetic)))
    rng.shuffle(order)
    datasets.Dataset.from_dict({"question": pool}).save_to_disk(str(workdir / "pool"))
    datasets.Dataset.from_dict(
        {"question": [synthetic[i] for i in order], "planted": [planted[i] for i in order]}
    ).save_to_disk(str(workdir / "synthetic"))


def _child(workdir: str, search: str) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_CACHE"] = os.path.join(workdir, "cache")
    import datasets

    from embedsdg_hf import add_contamination_flags, add_duplicate_flags, add_embeddings, load_eval_sets
    from embedsdg_hf.common.models import load_input_embeddings, load_tokenizer

    datasets.disable_progress_bars()
    model = "smollm2-135m-instruct"
    pool = datasets.load_from_disk(str(Path(workdir) / "pool"))
    synthetic = datasets.load_from_disk(str(Path(workdir) / "synthetic"))
    eval_sets = load_eval_sets("gsm8k-test")
    load_tokenizer(model)
    load_input_embeddings(model)
    sampler = _Sampler()
    baseline = sampler.peak
    sampler.start()
    seconds = {}
    start = time.perf_counter()
    embed = {"model": model, "text_template": "{question}", "column": "question_embedding"}
    pool = add_embeddings(pool, count_column="question_embedding_tokens", **embed)
    synthetic = add_embeddings(synthetic, count_column="question_embedding_tokens", **embed)
    seconds["embed pool + generated"] = time.perf_counter() - start
    start = time.perf_counter()
    flagged = add_duplicate_flags(synthetic, pool, model=model, approximate=search == "ivf")
    seconds["dedup (exact + near, vs pool and within)"] = time.perf_counter() - start
    start = time.perf_counter()
    flagged = add_contamination_flags(flagged, eval_sets, model=model)
    seconds["decontaminate vs GSM8K test (13-gram + NN)"] = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    table = flagged.with_format("arrow")
    reasons, caught = {}, {}
    expected = {"exact": "duplicate_reason", "one-word": "duplicate_reason", "test": "contamination_reason"}
    for column in ("duplicate_reason", "contamination_reason"):
        for value in table[column].to_pylist():
            if value is not None:
                reasons[value] = reasons.get(value, 0) + 1
    for kind, duplicate, leak in zip(
        table["planted"].to_pylist(),
        table["duplicate_reason"].to_pylist(),
        table["contamination_reason"].to_pylist(),
    ):
        if kind != "none":
            hit = (duplicate if expected[kind] == "duplicate_reason" else leak) is not None
            caught[kind] = caught.get(kind, 0) + hit
    print(
        json.dumps(
            {
                "seconds": {k: round(v, 1) for k, v in seconds.items()},
                "flags": reasons,
                "planted_caught": caught,
                "anon_mb_before": round(baseline),
                "anon_mb_peak": round(sampler.peak),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--pools", type=int, nargs="+", default=[40_000, 400_000])
    parser.add_argument("--search", nargs="+", choices=["exact", "ivf"], default=["exact", "ivf"])
    parser.add_argument("--out", default="quality.json", help="File name under benchmarks/results/.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.search[0])
        return
    runs = []
    for n_pool in args.pools:
        with tempfile.TemporaryDirectory() as tmp:
            _build(args.synthetic, n_pool, Path(tmp))
            for search in args.search:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", tmp, "--search", search],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                last = json.loads(out.strip().splitlines()[-1])
                result = {"synthetic": args.synthetic, "pool": n_pool, "search": search, **last}
                runs.append(result)
                print(json.dumps(result), flush=True)
    print(
        f"\n{os.cpu_count()} CPU cores; planted: {PLANTED_EXACT} exact, {PLANTED_NEAR} one-word, {PLANTED_TEST} test"
    )
    steps = list(runs[0]["seconds"])
    print("| generated | pool | search | " + " | ".join(steps) + " | total s | peak anon MB (before) |")
    print("|---:|---:|---|" + "---:|" * (len(steps) + 2))
    for r in runs:
        total = sum(r["seconds"].values())
        cells = " | ".join(f"{r['seconds'][s]:.1f}" for s in steps)
        memory = f"{r['anon_mb_peak']} ({r['anon_mb_before']})"
        print(f"| {r['synthetic']:,} | {r['pool']:,} | {r['search']} | {cells} | {total:.1f} | {memory} |")
    planted = {"exact": PLANTED_EXACT, "one-word": PLANTED_NEAR, "test": PLANTED_TEST}
    for r in runs:
        r["planted_recall"] = {k: round(v / planted[k], 4) for k, v in r["planted_caught"].items()}
        print(f"pool {r['pool']:,} {r['search']}: flags {r['flags']}; planted recall {r['planted_recall']}")
    dedup = steps[1]
    for n_pool in args.pools:
        by = {r["search"]: r for r in runs if r["pool"] == n_pool}
        if {"exact", "ivf"} <= set(by):
            speedup = by["exact"]["seconds"][dedup] / by["ivf"]["seconds"][dedup]
            same = by["exact"]["flags"] == by["ivf"]["flags"]
            print(f"pool {n_pool:,}: dedup exact / ivf = {speedup:.1f}x; identical flag counts: {same}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps({"cpu_count": os.cpu_count(), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
