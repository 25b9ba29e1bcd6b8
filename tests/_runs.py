"""A small run dir laid out as `embedsdg run` writes it, from real GSM8K rows, for tests of what reads run dirs
(plain TRL, the Hub push). The teacher replays GSM8K solutions in the teacher's reply format: a fake only in that
it is not a model; every step after it (parser, gates, exports) is the real one."""

from __future__ import annotations

import json
from pathlib import Path


class GSM8KReplayTeacher:
    """Answers request i with GSM8K row i in the reply format (prefill applied); ``wrong`` rows get a wrong final
    answer, so the verification gate drops them."""

    def __init__(self, rows: list[dict], wrong: tuple[int, ...] = ()):
        self.rows, self.wrong = rows, set(wrong)

    def identity(self) -> dict:
        return {"backend": "gsm8k-replay", "model": "gsm8k"}

    def generate(self, requests, on_result, *, progress=True):
        from embedsdg_hf.generation.teachers.base import TeacherResponse

        for index, _ in enumerate(requests):
            row = self.rows[index]
            solution, final = row["answer"].rsplit("####", 1)
            final = str(int(final.strip().replace(",", "")) + 1) if index in self.wrong else final.strip()
            text = f"{row['question']}\n### Answer\n{solution.strip()}\n### <final_answer>\n{final}\n"
            on_result(index, TeacherResponse(text, "stop", prefill_applied=True))


def write_run_dir(run: Path, gsm8k_rows: list[dict], *, n: int = 4, wrong: tuple[int, ...] = ()) -> Path:
    """synthetic/ + synthetic.jsonl, quality/ (verification gate) + dropped.jsonl, train.jsonl, manifest.json,
    cache/, pool/ and a figure, for a RandomSDG run of ``n`` examples over 8 pool rows."""
    from datasets import Dataset

    from embedsdg_hf.common.mapping import without_embeddings
    from embedsdg_hf.generation.generate import filter_accepted, make_synthetic_dataset, summarize_generation
    from embedsdg_hf.quality.gates import add_quality_reason, apply_gate, filter_passed, summarize_quality
    from embedsdg_hf.quality.verify import add_verification

    pool = Dataset.from_list(gsm8k_rows[:8])
    teacher = GSM8KReplayTeacher(gsm8k_rows[100:], wrong=wrong)
    synthetic = make_synthetic_dataset(pool, teacher=teacher, method="random", n_samples=n, cache_dir=run / "cache")
    pool.save_to_disk(str(run / "pool"))
    synthetic.save_to_disk(str(run / "synthetic"))
    synthetic.to_json(str(run / "synthetic.jsonl"))
    quality = add_quality_reason(apply_gate(synthetic.filter(filter_accepted), add_verification))
    quality.save_to_disk(str(run / "quality"))
    train = quality.filter(filter_passed)
    without_embeddings(train).to_json(str(run / "train.jsonl"))
    without_embeddings(quality.filter(lambda row: not filter_passed(row))).to_json(str(run / "dropped.jsonl"))
    (run / "embedding_map.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    config = {
        "method": "random",
        "student": "smollm2-135m-instruct",
        "teacher": "gsm8k-replay",
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 320,
        "seed_pool": "gsm8k",
        "answer_format": "gsm8k",
        "push_to_hub": "me/x",
        "overwrite": False,
    }
    generation = summarize_generation(synthetic)
    counts = {"pool": len(pool), "synthetic": len(synthetic), "accepted": generation["accepted"], "train": len(train)}
    manifest = {
        "config": config,
        "counts": counts,
        "generation": generation,
        "quality": summarize_quality(quality),
        "figures": {"map": "embedding_map.png"},
        "versions": {"datasets": "5.2.0", "embedsdg-hf": "0.1.0.dev0"},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


#: Gates that need no model (dedup, decontamination and coverage embed rows): off in the CLI fault tests.
QUICK = ["--dedup", "false", "--decontaminate", "none", "--coverage", "false"]


def random_run_args(pool, out, teacher_url: str, *extra: str) -> list[str]:
    """``embedsdg run`` arguments of a RandomSDG run (no student work) on ``pool`` against ``teacher_url``: the
    teacher and the run dir are the only things these runs exercise."""
    return [
        "run",
        "--method",
        "random",
        "--seed_pool",
        str(pool),
        "--n_pairs",
        "4",
        "--teacher",
        f"openai:m@{teacher_url}",
        "--output_dir",
        str(out),
        *QUICK,
        *extra,
    ]
