"""``weights="attention"`` embedding: the previous path vs the current one, side by side on the same GSM8K rows.

Previous path (reproduced here): batches of 16 rows sorted by length, the bf16 student with eager attention and
``output_attentions=True`` (every layer's attention map kept), the full model including the LM head. Current path
(``add_embeddings(weights="attention")``): the same model, batches of <= 8192 padded tokens, the forward stopped by
a hook right after the chosen layer's attention (no later layers, no LM head, no other maps). Target (issue #12):
several times faster. Also reports the largest difference of the two paths' pooled vectors (batching only).

    python benchmarks/bench_attention.py [--rows 64] [--layer -1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "train.jsonl"
RESULTS = Path(__file__).resolve().parent / "results"


def _previous(spec, ids):
    import numpy as np
    import torch

    from embedsdg_hf.common.models import load_student

    model, tokenizer = load_student(spec.model, attn_implementation="eager")
    weights = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), 16):
        chunk = order[start : start + 16]
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        with torch.inference_mode():
            out = model(input_ids=input_ids, attention_mask=mask, output_attentions=True)
        attention = out.attentions[spec.attention_layer].float().mean(dim=1)
        for row, i in enumerate(chunk):
            m = len(ids[i])
            received = attention[row, :m, :m].sum(dim=0) / torch.arange(m, 0, -1, dtype=torch.float32)
            weights[i] = (received / received.sum()).numpy().astype(np.float32)
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--layer", type=int, default=-1)
    args = parser.parse_args()

    import numpy as np
    import torch

    from embedsdg_hf.common.models import load_student
    from embedsdg_hf.space.embed import EmbeddingSpec, _attention_weights, pool, tokenize_and_weigh

    rows = [json.loads(line) for _, line in zip(range(args.rows), open(GSM8K))]
    texts = [f"{r['question']}\n{r['answer']}" for r in rows]
    spec = EmbeddingSpec.create(args.model, weights="attention", attention_layer=args.layer)
    ids = tokenize_and_weigh(EmbeddingSpec.create(args.model, weights="mask"), texts)[0]
    load_student(args.model, attn_implementation="eager")
    _attention_weights(spec, ids[:2])  # warm-up both
    _previous(spec, ids[:2])
    times, weights = {}, {}
    for name, fn in (("previous", _previous), ("current", _attention_weights)):
        start = time.perf_counter()
        weights[name] = fn(spec, ids)
        times[name] = time.perf_counter() - start
    vectors = {name: pool(spec, ids, w) for name, w in weights.items()}
    diff = float(np.abs(vectors["previous"] - vectors["current"]).max() / np.abs(vectors["previous"]).max())
    tokens = sum(map(len, ids))
    ratio = times["previous"] / times["current"]
    print(f"{args.rows} GSM8K rows, {tokens} tokens, layer {args.layer}, torch threads {torch.get_num_threads()}")
    print("| path | seconds | tokens/s |\n|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} | {tokens / t:.0f} |")
    print(f"\ncurrent / previous throughput = {ratio:.2f}x; max relative difference of pooled vectors = {diff:.2e}")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "rows": args.rows,
        "tokens": tokens,
        "layer": args.layer,
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "speedup": round(ratio, 2),
        "max_relative_difference": diff,
    }
    (RESULTS / f"attention_layer{args.layer}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
