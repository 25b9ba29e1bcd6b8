"""The decode engine with and without packed bf16 linear layers (generation/packed_linear.py), side by side.

The workload is the default ``embedsdg run``'s own: its 24 pairs decoded through the student, then its 24 teacher
requests with the in-process teacher's default constraints (calculator, grammar) and the default sampling, one
attempt each. Both settings run alternately ``--repeats`` times, so drift on a shared machine hits both alike; the
texts must be identical (the same oneDNN kernel, only the weight layout is prepared once).

    python benchmarks/bench_packed_linear.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path

from bench_decode import default_pairs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch
    from datasets import disable_caching

    from embedsdg_hf import add_decoded_text, make_synthetic_dataset
    from embedsdg_hf.common.models import load_student
    from embedsdg_hf.generation import shared_prefix
    from embedsdg_hf.generation.packed_linear import packed_linears
    from embedsdg_hf.generation.teachers import SamplingParams, TransformersTeacher

    config, pool, pairs = default_pairs()
    disable_caching()
    load_student(config.student)
    decoding = config.teacher_decoding()
    sampling = SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens)
    settings = {"unpacked": lambda model: contextlib.nullcontext(0), "packed": packed_linears}
    times = {name: {"decode": [], "teacher": []} for name in settings}
    texts = {}
    for _ in range(args.repeats):
        for name, context in settings.items():
            shared_prefix.packed_linears = context
            start = time.perf_counter()
            decoded = add_decoded_text(
                pairs, pool, model=config.student, text_template=config.text_template, seed=config.seed,
                batch_size=len(pairs),
            )  # fmt: skip
            middle = time.perf_counter()
            teacher = TransformersTeacher(
                config.student, calculator=decoding["calculator"], grammar=decoding["grammar"]
            )
            synthetic = make_synthetic_dataset(pool, decoded, teacher=teacher, sampling=sampling, seed=config.seed)
            end = time.perf_counter()
            times[name]["decode"].append(middle - start)
            times[name]["teacher"].append(end - middle)
            texts[name] = (decoded["decoded_text"], synthetic["raw_response"])
    shared_prefix.packed_linears = packed_linears
    med = {name: {step: statistics.median(t) for step, t in steps.items()} for name, steps in times.items()}
    result = {
        "workload": f"the default embedsdg run's {len(pairs)} pairs: decoding, then the in-process teacher "
        f"(calculator={decoding['calculator']}, grammar={decoding['grammar']}, one attempt, default sampling)",
        "seconds": {name: {step: [round(x, 1) for x in t] for step, t in s.items()} for name, s in times.items()},
        "speedup": {step: round(med["unpacked"][step] / med["packed"][step], 2) for step in ("decode", "teacher")},
        "identical_texts": texts["unpacked"] == texts["packed"],
        "torch_threads": torch.get_num_threads(),
        "load_average_after": os.getloadavg(),
    }
    print("| step | unpacked s | packed s | speed-up |\n|---|---:|---:|---:|")
    for step in ("decode", "teacher"):
        print(f"| {step} | {med['unpacked'][step]:.1f} | {med['packed'][step]:.1f} | {result['speedup'][step]}x |")
    print(f"identical texts: {result['identical_texts']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "packed_linear.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
