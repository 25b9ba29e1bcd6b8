"""Decoding from ``inputs_embeds`` vs ``generate(input_ids)`` at batch 32 on equal shapes, in one run.

Target (issue #3): throughput of the inputs_embeds path >= 0.9x the input_ids path. Both paths generate exactly
``--new-tokens`` tokens (min_new_tokens = max_new_tokens) from the same left-padded batch of real copy prompts.

    python benchmarks/bench_decode.py [--batch 32] [--new-tokens 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from embedsdg_hf.common.models import load_student
    from embedsdg_hf.data.word_problems import make_word_problems
    from embedsdg_hf.generation.decode import build_copy_prompt

    model, tokenizer = load_student(args.model)
    problems = make_word_problems(args.batch + 4, seed=0)
    before, after = build_copy_prompt(args.model, problems["question"][:4])
    ids = [before + tokenizer(q, add_special_tokens=False)["input_ids"] + after for q in problems["question"][4:]]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, width - len(seq) :] = torch.tensor(seq)
        mask[row, width - len(seq) :] = 1
    with torch.inference_mode():
        embeds = model.get_input_embeddings()(input_ids)
    common = {
        "attention_mask": mask,
        "max_new_tokens": args.new_tokens,
        "min_new_tokens": args.new_tokens,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": tokenizer.pad_token_id,
    }
    paths = {"input_ids": {"input_ids": input_ids}, "inputs_embeds": {"inputs_embeds": embeds}}
    times = {name: [] for name in paths}
    outputs = {}
    with torch.inference_mode():
        model.generate(**paths["input_ids"], **{**common, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both paths alike
            for name, inputs in paths.items():
                start = time.perf_counter()
                out = model.generate(**inputs, **common)
                times[name].append(time.perf_counter() - start)
                outputs[name] = out[:, -args.new_tokens :]
    same = torch.equal(outputs["input_ids"], outputs["inputs_embeds"])
    tokens = args.batch * args.new_tokens
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["input_ids"] / med["inputs_embeds"]
    print(
        f"batch {args.batch}, prompt {width} tokens (left-padded), {args.new_tokens} new tokens each, "
        f"median of {args.repeats}, torch threads {torch.get_num_threads()}\n"
    )
    print("| path | seconds | new tokens/s |")
    print("|---|---:|---:|")
    for name in paths:
        print(f"| generate({name}=...) | {med[name]:.2f} | {tokens / med[name]:.0f} |")
    print(f"\nthroughput inputs_embeds / input_ids = {ratio:.3f} (target >= 0.9); identical tokens: {same}")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "batch": args.batch,
        "prompt_tokens": width,
        "new_tokens": args.new_tokens,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "tokens_per_s": {k: round(tokens / v, 1) for k, v in med.items()},
        "throughput_ratio": round(ratio, 3),
        "identical_tokens": same,
    }
    (RESULTS / "decode.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
