"""The default run's two generation steps, ``generate`` on whole prompts vs the shared-prefix engine, side by side.

Target (issue #12): decoding through the student >= 2x faster with the shared-prefix engine
(:mod:`embedsdg_hf.generation.shared_prefix`, the default) than with ``generate(inputs_embeds=...)`` on every pair's
whole copy prompt (``add_decoded_text(shared_prefix=False)``), with greedy tokens identical; the in-process teacher
the same way. The workload is the default ``embedsdg run`` itself: its 24 pairs (k-NN selection on the 1,000
built-in problems, run with ``stage: analysis``), the default decoding budget, then its 24 teacher prompts.

- decoding: ``shared_prefix=False`` (``generate``, one batch of 24) vs ``True``, alternating, ``--repeats`` times;
- teacher: ``generate`` on the whole left-padded prompts in batches of 8 (the in-process teacher before the engine)
  vs :class:`TransformersTeacher` (engine, batches of 32), greedy with the default ``max_tokens`` so both do the
  same work, then once each with the default sampling (the demo's own setting; the texts then differ by design).

Identity is a float32 property (``tests/test_shared_prefix.py``). In the student's bf16 any two kernels round
differently, so agreement is reported next to a noise floor: ``generate`` on the same pairs in one batch of 24 vs
three batches of 8 (``--noise-floor``).

    python benchmarks/bench_decode.py [--repeats 1] [--noise-floor] [--skip-teacher]
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
RESULTS = Path(__file__).resolve().parent / "results"


def agreement(a: list[str], b: list[str]) -> int:
    return sum(x == y for x, y in zip(a, b))


def default_pairs():
    """The default run's pool and interpolated pairs (``embedsdg run --stage analysis``)."""
    from datasets import load_from_disk

    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.pipeline import run_pipeline

    out = Path(tempfile.mkdtemp(prefix="bench-decode-")) / "run"
    run_pipeline(PipelineConfig(output_dir=str(out), stage="analysis"))
    return PipelineConfig(), load_from_disk(out / "pool"), load_from_disk(out / "pairs")


def generate_teacher_class():
    """The in-process teacher as it was before the engine: ``model.generate`` on left-padded whole prompts."""
    import torch

    from embedsdg_hf.common.models import cut_at_stop, stop_token_ids
    from embedsdg_hf.generation.teachers import TeacherResponse, TransformersTeacher

    class GenerateTeacher(TransformersTeacher):
        def _generate_batch(self, model, tokenizer, batch, ids, shared, sampling):
            prompts = [self.prompt_text(tokenizer, request) for request in batch]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            kwargs = {"max_new_tokens": sampling.max_tokens, "pad_token_id": tokenizer.pad_token_id}
            if sampling.temperature == 0:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
                torch.manual_seed(batch[0].seed)
            with torch.inference_mode():
                output = model.generate(**inputs, **kwargs)
            stops = stop_token_ids(model, tokenizer)
            responses = []
            for row, prompt, request in zip(output[:, inputs["input_ids"].shape[1] :].tolist(), ids, batch):
                kept, reason = cut_at_stop(row, stops)
                responses.append(TeacherResponse(text=tokenizer.decode(kept, skip_special_tokens=True),
                                                 finish_reason=reason, prompt_tokens=len(prompt),
                                                 completion_tokens=len(kept), model=self.model,
                                                 prefill_applied=bool(request.prefill)))  # fmt: skip
            return responses

    return GenerateTeacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--noise-floor", action="store_true", help="also decode with generate in batches of 8")
    parser.add_argument("--skip-teacher", action="store_true")
    args = parser.parse_args()

    import torch
    from datasets import disable_caching

    from embedsdg_hf import add_decoded_text, make_synthetic_dataset
    from embedsdg_hf.common.models import load_student
    from embedsdg_hf.generation.teachers import SamplingParams, TransformersTeacher

    config, pool, pairs = default_pairs()
    disable_caching()  # a benchmark: every map really runs
    load_student(config.student)
    common = dict(model=config.student, text_template=config.text_template, seed=config.seed)
    paths = {"generate, whole prompt": False, "shared-prefix engine": True}
    times = {name: [] for name in paths}
    texts = {}
    for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both paths alike
        for name, shared in paths.items():
            start = time.perf_counter()
            out = add_decoded_text(pairs, pool, shared_prefix=shared, batch_size=len(pairs), **common)
            times[name].append(time.perf_counter() - start)
            texts[name] = out["decoded_text"]
            decoded = out
    med = {name: statistics.median(t) for name, t in times.items()}
    old, new = paths
    result = {
        "workload": f"the default embedsdg run's {len(pairs)} pairs, default per-pair budget, student bf16",
        "decode_seconds": {k: [round(x, 1) for x in v] for k, v in times.items()},
        "decode_speedup": round(med[old] / med[new], 2),
        "decode_identical_texts_bf16": f"{agreement(texts[old], texts[new])}/{len(pairs)}",
    }
    print(f"| decoding {len(pairs)} pairs | seconds (median of {args.repeats}) |\n|---|---:|")
    for name in paths:
        print(f"| {name} | {med[name]:.1f} |")
    print(f"speed-up {result['decode_speedup']}x; identical texts (bf16): {result['decode_identical_texts_bf16']}")
    if args.noise_floor:
        batched = add_decoded_text(pairs, pool, shared_prefix=False, batch_size=8, **common)["decoded_text"]
        result["noise_floor_generate_batch24_vs_batch8_bf16"] = f"{agreement(texts[old], batched)}/{len(pairs)}"
        print(f"noise floor: generate in one batch of 24 vs batches of 8: {agreement(texts[old], batched)} identical")

    if not args.skip_teacher:
        teachers = {
            "generate, whole prompts, batch 8": generate_teacher_class()(config.student, batch_size=8),
            "shared-prefix engine, batch 32": TransformersTeacher(config.student, batch_size=32),
        }
        settings = {
            "greedy": SamplingParams(temperature=0, top_p=1.0, max_tokens=config.max_tokens),
            "default sampling": SamplingParams(temperature=config.temperature, top_p=config.top_p,
                                               max_tokens=config.max_tokens),
        }  # fmt: skip
        teacher_result = {}
        for label, sampling in settings.items():
            outputs = {}
            for name, teacher in teachers.items():
                start = time.perf_counter()
                synthetic = make_synthetic_dataset(pool, decoded, teacher=teacher, sampling=sampling, seed=config.seed)
                seconds = time.perf_counter() - start
                outputs[name] = synthetic["raw_response"]
                tokens = sum(synthetic["completion_tokens"])
                teacher_result[f"{label}: {name}"] = {"seconds": round(seconds, 1), "completion_tokens": tokens}
                print(f"teacher, {label}, {name}: {seconds:.1f} s, {tokens} tokens, {tokens / seconds:.1f} tok/s")
            a, b = outputs.values()
            teacher_result[f"{label}: identical responses (bf16)"] = f"{agreement(a, b)}/{len(a)}"
            first, second = (
                teacher_result[f"{label}: {list(teachers)[0]}"],
                teacher_result[f"{label}: {list(teachers)[1]}"],
            )
            teacher_result[f"{label}: speed-up"] = round(first["seconds"] / second["seconds"], 2)
            print(f"teacher, {label}: speed-up {teacher_result[f'{label}: speed-up']}x, identical {agreement(a, b)}")
        result["teacher"] = teacher_result
    result.update(torch_threads=torch.get_num_threads(), load_average=os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decode.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
