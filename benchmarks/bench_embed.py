"""add_embeddings (default weights) on all of GSM8K train vs the tokenizer alone vs a naive forward pass.

Target (issue #2): wall time of add_embeddings <= 2x the tokenizer alone on the same texts, same run.
The naive approach (one transformer forward pass per example, mean-pooled last hidden state) is timed on a
sample and extrapolated; the ratio is reported both on the sample and extrapolated to the full set.

    python benchmarks/bench_embed.py [--repeats 3] [--naive-sample 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="bench-embed-"))

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "train.jsonl"
RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(GSM8K))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-sample", type=int, default=40)
    args = parser.parse_args()

    import datasets
    import torch

    from embedsdg_hf import add_embeddings
    from embedsdg_hf.common.models import load_input_embeddings, load_student, load_tokenizer

    datasets.disable_progress_bars()
    ds = datasets.load_dataset("json", data_files=args.data, split="train")
    texts = [q + "\n" + a for q, a in zip(ds["question"], ds["answer"])]

    start = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    load_input_embeddings(args.model)
    cold_load = time.perf_counter() - start
    n_tokens = sum(len(x) for x in tokenizer(texts)["input_ids"])

    t_tok, tok_runs = _median_time(lambda: tokenizer(texts), args.repeats)
    t_emb, emb_runs = _median_time(
        lambda: add_embeddings(ds, model=args.model, load_from_cache_file=False), args.repeats
    )

    # Naive: a forward pass per example, mean-pooled last hidden state, on a sample.
    model, _ = load_student(args.model)
    sample = texts[: args.naive_sample]

    def naive():
        with torch.inference_mode():
            for text in sample:
                ids = tokenizer(text, return_tensors="pt")
                model(**ids, output_hidden_states=True).hidden_states[-1].mean(1)

    t_naive, _ = _median_time(naive, 1)
    sample_ds = ds.select(range(args.naive_sample))
    t_ours_sample, _ = _median_time(
        lambda: add_embeddings(sample_ds, model=args.model, load_from_cache_file=False), args.repeats
    )
    naive_full = t_naive / len(sample) * len(texts)

    result = {
        "rows": len(texts),
        "tokens": n_tokens,
        "torch_threads": torch.get_num_threads(),
        "cold_load_s": round(cold_load, 3),
        "tokenizer_alone_s": round(t_tok, 3),
        "tokenizer_runs_s": [round(x, 3) for x in tok_runs],
        "add_embeddings_s": round(t_emb, 3),
        "add_embeddings_runs_s": [round(x, 3) for x in emb_runs],
        "ratio_vs_tokenizer": round(t_emb / t_tok, 3),
        "target_ratio_vs_tokenizer": 2.0,
        "naive_sample_rows": len(sample),
        "naive_sample_s": round(t_naive, 3),
        "ours_sample_s": round(t_ours_sample, 3),
        "speedup_vs_naive_on_sample": round(t_naive / t_ours_sample, 1),
        "naive_extrapolated_full_s": round(naive_full, 1),
        "speedup_vs_naive_full": round(naive_full / t_emb, 1),
    }
    print(f"GSM8K train: {len(texts)} rows, {n_tokens:,} tokens; model {args.model}; medians of {args.repeats}\n")
    print("| what | seconds |")
    print("|---|---:|")
    print(f"| load tokenizer + embedding matrix (once, cold) | {cold_load:.2f} |")
    print(f"| tokenizer alone, all texts | {t_tok:.2f} |")
    print(f"| add_embeddings (mean weights), all rows | {t_emb:.2f} |")
    print(f"| naive forward pass + mean pool, {len(sample)} rows | {t_naive:.2f} |")
    print(f"| add_embeddings, same {len(sample)} rows | {t_ours_sample:.3f} |")
    print(f"| naive, extrapolated to all rows | {naive_full:.0f} |")
    print(f"\nadd_embeddings / tokenizer alone = {result['ratio_vs_tokenizer']:.2f} (target <= 2.0)")
    print(
        f"speed-up vs naive: {result['speedup_vs_naive_on_sample']}x on the sample, "
        f"{result['speedup_vs_naive_full']}x extrapolated to all rows"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
