"""The testbed's training half: its plan checks, the arm summary's arithmetic, and one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest

from embedsdg_hf.experiments.student_report import render_training, summarize_arms
from embedsdg_hf.experiments.student_testbed import StudentPlan


def test_plan_checks_name_the_bad_value():
    with pytest.raises(ValueError, match="pattern must be one of"):
        StudentPlan(pattern="nope")
    with pytest.raises(ValueError, match="n must be at least 34"):
        StudentPlan(n=10)
    with pytest.raises(ValueError, match="budgets must be >= 1"):
        StudentPlan(budgets=(0,))
    with pytest.raises(ValueError, match="accuracy_per_family"):
        StudentPlan(test_per_family=3, accuracy_per_family=4)
    assert set(StudentPlan().rare) <= set(json.loads(json.dumps(list(StudentPlan().rare))))


def _arm(loss_rare: float, loss: float, rows: int = 10) -> dict:
    entry = {"mean": None}
    return {
        "rows": rows,
        "rare_seed_share": 0.5,
        "loss": {**entry, "mean": loss},
        "loss_rare": {**entry, "mean": loss_rare},
        "loss_common": {**entry, "mean": loss},
        "data": {"gate_drops": {"verification": 1, "deduplication": 2}, "train_rows": rows},
    }


def test_summary_is_the_mean_over_seeds_and_the_paired_difference():
    arms = [
        {"budget": 8, "seed": s, "n_rows": 10, "arms": {"embedsdg": _arm(e, 1.0), "random": _arm(r, 1.1)}}
        for s, (e, r) in enumerate([(0.5, 0.9), (0.7, 0.8), (0.6, 1.0)])
    ]
    summary = summarize_arms(arms)
    by = {s["method"]: s for s in summary}
    assert by["embedsdg"]["loss_rare"]["mean"] == pytest.approx(0.6)
    assert by["random"]["loss_rare"]["mean"] == pytest.approx(0.9)
    diff = by["embedsdg - random"]["loss_rare"]
    assert diff["mean"] == pytest.approx(-0.3)
    assert (diff["min"], diff["max"]) == (pytest.approx(-0.4), pytest.approx(-0.1))
    assert diff["ci_low"] < -0.3 < diff["ci_high"]  # a t interval over the three paired seeds
    assert by["embedsdg"]["gate_drops"] == {"verification": 1.0, "deduplication": 2.0}
    assert by["embedsdg"]["accuracy"] is None  # never scored: said as '-', not 0
    text = render_training({"plan": StudentPlan().__dict__ | {"budgets": [8]}, "summary": summary})
    assert "| 8 | embedsdg - random |" in text and "In progress" in text


@pytest.mark.slow
def test_tiny_training_testbed_runs_resumes_and_refuses_another_plan(student, tmp_path, capsys):
    """The whole training half at toy size (1 SFT step each): every step's file, the report, and a rerun that
    reuses every step (no training) and refuses a changed plan."""
    from embedsdg_hf.experiments.student_testbed import run_student_testbed

    plan = StudentPlan(
        n=40, test_per_family=2, accuracy_per_family=1, budgets=(2,), seeds=(0,), llm_teacher=None,
        max_new_tokens=32, extra={"sft": {"max_steps": 1}},
    )  # fmt: skip
    lines: list[str] = []
    report = run_student_testbed(tmp_path, plan, progress=lines.append)
    root = tmp_path / "training"
    assert report["complete"] and (root / "training.md").is_file() and (root / "arms.png").is_file()
    steps = sorted(p.stem for p in (root / "steps").glob("*.json"))
    assert steps == sorted(
        ["data", "score-base", "sm", "score-sm", "weakness-vs-density"]
        + [f"{k}-family-{m}-b2-s0" for k in ("data", "train") for m in ("embedsdg", "random")]
    )
    pair = report["arms"][0]
    assert pair["n_rows"] == min(2, *(a["data"]["train_rows"] for a in pair["arms"].values()))
    assert all(a["rows"] == pair["n_rows"] for a in pair["arms"].values())  # equal rows in both arms
    assert report["sm"]["loss"]["n"] == 34 and report["density"]["per_family"]["answer_loss"]["n"] == 17
    text = (root / "training.md").read_text()
    assert "EmbedSDG vs RandomSDG" in text and "Pearson" in text and "In progress" not in text
    lines.clear()
    run_student_testbed(tmp_path, plan, progress=lines.append)
    assert all("running" not in line for line in lines), lines  # everything reused
    with pytest.raises(FileExistsError, match="another plan"):
        run_student_testbed(tmp_path, StudentPlan(n=40, test_per_family=2, accuracy_per_family=1, budgets=(3,)))
