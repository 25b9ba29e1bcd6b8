"""Quality gates in sequence, unit level (apply_gate / add_quality_reason / summarize_quality) and through a whole
``run_pipeline`` whose teacher is a real HTTP server on 127.0.0.1 answering with planted examples."""

from __future__ import annotations

import json

import datasets
import pytest
from _servers import FaultyOpenAIServer, ok

from embedsdg_hf.config import PipelineConfig
from embedsdg_hf.hub import make_dataset_card
from embedsdg_hf.pipeline import run_pipeline
from embedsdg_hf.quality.gates import add_quality_reason, apply_gate, filter_passed, summarize_quality
from embedsdg_hf.report import format_summary


def _flag_odd(ds: datasets.Dataset) -> datasets.Dataset:
    return ds.add_column("verify_reason", ["odd" if x % 2 else None for x in ds["x"]])


def _flag_multiple_of_three(ds: datasets.Dataset) -> datasets.Dataset:
    seen.append(list(ds["x"]))
    return ds.add_column("duplicate_reason", ["three" if x % 3 == 0 else None for x in ds["x"]])


seen: list[list[int]] = []


def test_each_gate_sees_only_the_rows_the_earlier_ones_passed() -> None:
    seen.clear()
    ds = datasets.Dataset.from_dict({"x": list(range(10))})
    checked = apply_gate(apply_gate(ds, _flag_odd), _flag_multiple_of_three)
    assert seen == [[0, 2, 4, 6, 8]]
    assert checked["duplicate_reason"] == ["three", None, None, None, None, None, "three", None, None, None]
    checked = add_quality_reason(checked)
    assert checked["quality_reason"] == ["three", "odd", None, "odd", None, "odd", "three", "odd", None, "odd"]
    assert [r["x"] for r in checked.filter(filter_passed)] == [2, 4, 8]
    assert summarize_quality(checked) == {
        "checked": 10,
        "passed": 3,
        "gates": {
            "verification": {"checked": 10, "dropped": 5, "reasons": {"odd": 5}},
            "deduplication": {"checked": 5, "dropped": 2, "reasons": {"three": 2}},
        },
    }


def _example(question: str, answer: str, final: str) -> str:
    return f"### Question\n{question}\n### Answer\n{answer}\n### <final_answer>\n{final}\n"


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory, gsm8k_rows, gsm8k_train_file, student):
    """A RandomSDG run of 6 requests; the server answers, in order, with planted examples, then the votes."""
    tmp = tmp_path_factory.mktemp("gated")
    pool_file = tmp / "pool.jsonl"
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows[:150]))
    test_question = json.loads(gsm8k_train_file.with_name("test.jsonl").read_text().splitlines()[7])["question"]
    new = _example(
        "A baker fills 3 trays with 4 rolls each and sells 5 rolls. How many rolls are left?",
        "She bakes 3*4=<<3*4=12>>12 rolls.\nShe has 12-5=<<12-5=7>>7 left.\n#### 7",
        "7",
    )
    responses = [
        new,  # kept
        _example("A farmer has 3 pens of 4 goats. How many goats?", "3*4=<<3*4=13>>13 goats.\n#### 13", "13"),
        _example(test_question, "The answer is 2+2=<<2+2=4>>4.\n#### 4", "4"),  # leaked test question
        _example(gsm8k_rows[0]["question"], gsm8k_rows[0]["answer"], "72"),  # a pool row, copied
        new.replace("A baker", "a BAKER"),  # the first example again
        _example(
            "Tom reads 15 pages a day for 6 days, then 10 more pages. How many pages did he read?",
            "He reads 15*6=<<15*6=90>>90 pages, then 90+10=<<90+10=100>>100 in all.\n#### 100",
            "100",
        ),  # kept
    ]
    # then the self-consistency check (k=3, in row order) of the two rows that pass the other gates
    votes = ["Step by step.\n#### 7"] * 3 + ["12 pages.\n#### 99", "#### 99", "I think it is 100.\n#### 100"]
    with FaultyOpenAIServer() as server:
        server.script(*(ok(text) for text in responses + votes))
        config = PipelineConfig(
            seed_pool=str(pool_file),
            method="random",
            n_pairs=6,
            teacher=f"openai:faulty-model@{server.base_url}",
            teacher_concurrency=1,
            self_consistency=3,
            output_dir=str(tmp / "run"),
        )
        manifest = run_pipeline(config)
    return manifest, tmp / "run", test_question


def test_planted_rows_are_dropped_by_the_right_gate(gated_run, gsm8k_rows) -> None:
    manifest, out, test_question = gated_run
    quality = manifest["quality"]
    assert quality["checked"] == 6 and quality["passed"] == 1
    assert quality["gates"]["verification"] == {"checked": 6, "dropped": 1, "reasons": {"bad_arithmetic": 1}}
    assert quality["gates"]["deduplication"] == {"checked": 5, "dropped": 2, "reasons": {"exact_duplicate": 2}}
    assert quality["gates"]["decontamination"] == {"checked": 3, "dropped": 1, "reasons": {"ngram_overlap": 1}}
    assert [row["contaminated_with"] for row in quality["contaminated"]] == ["gsm8k-test:7"]
    assert quality["gates"]["self-consistency"] == {"checked": 2, "dropped": 1, "reasons": {"consistency_mismatch": 1}}
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [row["final_answer"] for row in train] == ["7"]
    assert train[0]["consistency_answers"] == ["7", "7", "7"]
    assert manifest["counts"]["train"] == 1
    assert not any(key.endswith("embedding") for key in train[0])
    dropped = {
        json.loads(line)["question"]: json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()
    }
    assert dropped[test_question]["quality_reason"] == "ngram_overlap"
    copied = dropped[gsm8k_rows[0]["question"]]
    assert (copied["duplicate_source"], copied["duplicate_row"]) == ("pool", 0)
    outvoted = next(row for row in dropped.values() if row["final_answer"] == "100")
    assert outvoted["consistency_majority"] == "99" and outvoted["quality_reason"] == "consistency_mismatch"
    assert len(dropped) == 5


def test_summary_and_card_show_the_counts(gated_run) -> None:
    manifest, _, _ = gated_run
    summary = format_summary(manifest)
    assert "verification: 1 of 6 dropped (bad_arithmetic: 1)" in summary
    assert "deduplication: 2 of 5 dropped (exact_duplicate: 2)" in summary
    assert "self-consistency: 1 of 2 dropped (consistency_mismatch: 1)" in summary
    assert "-> 1 row(s) kept for training" in summary
    assert "leaked: row 2 ~ gsm8k-test:7 (ngram_overlap" in summary
    card = make_dataset_card(manifest, repo_id="me/test")
    assert "| dropped by verification: bad_arithmetic | 1 |" in card
    assert "| dropped by decontamination: ngram_overlap | 1 |" in card
    assert "| **kept (train split)** | 1 |" in card and "`gsm8k-test:7` (ngram_overlap)" in card
