"""A user's own pool, whose columns are not question/answer, through ``embedsdg validate`` and ``embedsdg run`` as a
user calls them: the real console script, the real built-in student, a real teacher server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _servers import FaultyOpenAIServer, ok

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = "{problem}\n{solution}"


def _embedsdg(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "embedsdg_hf.cli", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def own_pool(tmp_path_factory, gsm8k_rows) -> Path:
    """150 GSM8K rows as ``problem`` / ``solution`` (no ``question`` or ``answer`` column anywhere)."""
    path = tmp_path_factory.mktemp("own") / "own.jsonl"
    rows = [{"problem": r["question"], "solution": r["answer"], "source": "gsm8k"} for r in gsm8k_rows[:150]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _example(question: str, answer: str, final: str) -> str:
    return f"### Question\n{question}\n### Answer\n{answer}\n### <final_answer>\n{final}\n"


NEW = [
    _example(
        "A baker fills 3 trays with 4 rolls each and sells 5 rolls. How many rolls are left?",
        "She bakes 3*4=<<3*4=12>>12 rolls.\nShe has 12-5=<<12-5=7>>7 left.\n#### 7",
        "7",
    ),
    _example(
        "Tom reads 15 pages a day for 6 days, then 10 more pages. How many pages did he read?",
        "He reads 15*6=<<15*6=90>>90 pages, then 90+10=<<90+10=100>>100 in all.\n#### 100",
        "100",
    ),
    _example(
        "A garden has 7 rows of 8 tulips. 6 tulips wilt. How many tulips are still fine?",
        "There are 7*8=<<7*8=56>>56 tulips.\n56-6=<<56-6=50>>50 are fine.\n#### 50",
        "50",
    ),
]


def test_own_columns_run_end_to_end_with_default_gates_and_coverage(own_pool, student, tmp_path):
    """Embedding, decoding few-shots, generation, dedup against the pool and coverage all read the user's columns;
    the run ends with rc 0 and a manifest (it used to fail in coverage, after the teacher was paid)."""
    out = tmp_path / "run"
    with FaultyOpenAIServer() as server:
        server.script(*(ok(text) for text in NEW))
        done = _embedsdg(
            "run",
            "--seed_pool", str(own_pool),
            "--text_template", TEMPLATE,
            "--n_pairs", "3",
            "--decode_max_new_tokens", "16",
            "--teacher", f"openai:faulty-model@{server.base_url}",
            "--teacher_concurrency", "1",
            "--output_dir", str(out),
        )  # fmt: skip
        prompts = [r.body["messages"][0]["content"] for r in server.chat_requests]
    assert done.returncode == 0, done.stderr[-3000:]
    # one progress bar per stage; the bookkeeping (saving, JSON export, picking rows, loading weights) shows none
    assert "Embedding with smollm2-135m-instruct" in done.stderr and "Teacher requests" in done.stderr
    for internal in ("Saving the dataset", "Creating json from Arrow", "Generating train split", "Loading weights"):
        assert internal not in done.stderr, internal
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["config"]["text_template"] == TEMPLATE
    assert manifest["counts"]["train"] == 3 and manifest["coverage"]  # every gate ran and kept the new rows
    assert set(manifest["quality"]["gates"]) >= {"verification", "deduplication", "decontamination"}
    coverage = json.loads((out / "coverage.json").read_text())
    assert coverage["methods"]["embedsdg"]["synthetic_points"] == 3
    # the teacher saw the user's rows: each prompt holds the text of both seeds of its pair
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    pool = [json.loads(line) for line in own_pool.read_text().splitlines()]
    assert len(prompts) == 3
    for prompt, pair in zip(prompts, pairs):
        assert pool[pair["seed_a"]]["problem"] in prompt and pool[pair["seed_b"]]["solution"] in prompt
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert sorted(row["final_answer"] for row in train) == ["100", "50", "7"]
    from datasets import load_dataset

    # what `trl sft --dataset_name <run dir>` loads: train.jsonl alone (the run dir's README.md says so)
    loaded = load_dataset(str(out), split="train")
    assert len(loaded) == 3 and {"prompt", "completion", "messages"} <= set(loaded.column_names)


def test_validate_names_a_template_column_the_pool_lacks(own_pool):
    """One template feeds embedding, the decoding few-shots, generation (its two fields are the seed's input and
    output), dedup (its first field) and coverage: validate checks it against the pool before any of them runs."""
    good = _embedsdg("validate", "--seed_pool", str(own_pool), "--text_template", TEMPLATE, "--pool_size", "8")
    assert "[ok] seed pool + text template" in good.stdout and "[ok] prompts render" in good.stdout, good.stdout
    for template, missing in (("{question}\n{solution}", "question"), ("{problem}\n{answer}", "answer")):
        bad = _embedsdg("validate", "--seed_pool", str(own_pool), "--text_template", template, "--pool_size", "8")
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        line = next(x for x in bad.stdout.splitlines() if x.startswith("[FAIL] seed pool + text template"))
        assert repr(missing) in line and "problem" in line, line  # names the column and the ones there are
    three = _embedsdg("validate", "--seed_pool", str(own_pool), "--text_template", "{problem} {solution} {source}")
    assert "[FAIL] seed pool + text template" in three.stdout and "exactly two columns" in three.stdout


def test_quiet_progress_restores_the_switches_it_found():
    import datasets
    from transformers.utils import logging as hf_logging

    from embedsdg_hf.common.progress import quiet_progress

    for before in (True, False):
        (datasets.enable_progress_bars if before else datasets.disable_progress_bars)()
        with pytest.raises(RuntimeError), quiet_progress():
            assert datasets.are_progress_bars_disabled() and not hf_logging.is_progress_bar_enabled()
            raise RuntimeError("a step failed")
        assert datasets.are_progress_bars_disabled() is not before and hf_logging.is_progress_bar_enabled()
    datasets.enable_progress_bars()
