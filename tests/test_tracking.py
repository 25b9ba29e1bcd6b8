"""`report_to: trackio`: the manifest's numbers as metrics, clear errors, and real trackio (local SQLite under a tmp
TRACKIO_DIR, offline) for a pipeline run and, through transformers' integration, for `embedsdg train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedsdg_hf.common.tracking import check_tracker, run_metrics
from embedsdg_hf.config import PipelineConfig, results_diff

REPO = Path(__file__).resolve().parents[1]


def test_run_metrics_flattens_the_manifest_numbers():
    manifest = {
        "config": {"student": "m", "n_pairs": 24},  # config: the run's config, not metrics
        "counts": {"pool": 1000, "synthetic": 24, "accepted": 8, "train": 3},
        "generation": {"rows": 24, "accepted": 8, "rejects_by_reason": {"truncated": 7, "missing_answer": 6}},
        "quality": {"checked": 8, "passed": 3, "gates": {"verification": {"dropped": 4, "reasons": {"bad": 3}}}},
        "coverage": {"embedsdg": {"landed_in_target_share": 0.5, "landed_in_target": 2}},
        "steps": [
            {"step": "embed pool", "rows_in": 1000, "rows_out": 1000, "seconds": 2.5},
            {"step": "decode (reused from decoded/)", "rows_in": 24, "rows_out": 24, "seconds": 0.1},
            {"step": "teacher", "rows_in": 24, "rows_out": None, "seconds": None},
        ],
        "errors": {"first": "HTTP 500 from ..."},
        "wall_seconds": 234.0,
        "status": "failed",
    }
    metrics = run_metrics(manifest)
    assert metrics == {
        "counts/pool": 1000,
        "counts/synthetic": 24,
        "counts/accepted": 8,
        "counts/train": 3,
        "generation/rows": 24,
        "generation/accepted": 8,
        "generation/rejects_by_reason/truncated": 7,
        "generation/rejects_by_reason/missing_answer": 6,
        "quality/checked": 8,
        "quality/passed": 3,
        "quality/gates/verification/dropped": 4,
        "quality/gates/verification/reasons/bad": 3,
        "coverage/embedsdg/landed_in_target_share": 0.5,
        "coverage/embedsdg/landed_in_target": 2,
        "seconds/embed_pool": 2.5,
        "seconds/decode": 0.1,
        "wall_seconds": 234.0,
        "failed": 1,
    }
    assert run_metrics({}) == {}


def test_report_to_is_checked_and_does_not_change_results(monkeypatch):
    with pytest.raises(ValueError, match=r"report_to must be one of \['none', 'trackio'\], got 'wandb'"):
        PipelineConfig(report_to="wandb")
    monkeypatch.setitem(sys.modules, "trackio", None)  # what find_spec sees where trackio is not installed
    with pytest.raises(ValueError, match=r"report_to: trackio needs trackio: pip install 'embedsdg-hf\[trackio\]'"):
        check_tracker("trackio")
    check_tracker("none")
    # Operational, like output_dir: a run dir resumes with tracking switched on.
    assert results_diff(PipelineConfig().to_dict(), {**PipelineConfig().to_dict(), "report_to": "trackio"}) == []
    assert "tracking_project" not in results_diff(PipelineConfig().to_dict(), {"tracking_project": "x"})


def test_sft_recipe_passes_report_to_trackio_through():
    """`embedsdg train` parses TRL's SFTConfig: report_to / project / run_name are its own keys, flags override."""
    from embedsdg_hf.training.train import build_train_parser

    recipe = REPO / "recipes" / "gsm8k-cpu" / "sft" / "lora.yaml"
    flags = ["--report_to", "trackio", "--project", "embedsdg-sft", "--run_name", "lora-check"]
    _, training_args, _ = build_train_parser().parse_args_and_config(["--config", str(recipe), *flags])
    assert training_args.report_to == ["trackio"]
    assert (training_args.project, training_args.run_name) == ("embedsdg-sft", "lora-check")
    assert training_args.trackio_space_id is None  # local only: no Space unless one is named


def _in_subprocess(code: str, trackio_dir: Path, timeout: int = 1800) -> dict:
    """Run ``code`` in a fresh interpreter with TRACKIO_DIR set (trackio reads it once, at import); it prints JSON."""
    env = {**os.environ, "TRACKIO_DIR": str(trackio_dir), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_READ_BACK = """
from trackio.sqlite_storage import SQLiteStorage
logs = SQLiteStorage.get_logs(project, run)
config = SQLiteStorage.get_run_config(project, run)
print(json.dumps({"runs": SQLiteStorage.get_runs(project), "logs": logs, "config": config}, default=str))
"""


@pytest.mark.slow
def test_pipeline_run_reports_to_real_trackio(student, gsm8k_rows, tmp_path):
    pytest.importorskip("trackio")
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(row) + "\n" for row in gsm8k_rows[:120]))
    out = tmp_path / "run"
    code = f"""
import json, torch
torch.set_num_threads(1)
from embedsdg_hf.config import PipelineConfig
from embedsdg_hf.pipeline import run_pipeline
config = PipelineConfig(seed_pool={str(pool)!r}, student={student!r}, stage="analysis", n_pairs=4, bins=6,
                        output_dir={str(out)!r}, report_to="trackio", tracking_project="embedsdg-test")
manifest = run_pipeline(config)
project, run = "embedsdg-test", "run"
{_READ_BACK}"""
    trackio_dir = tmp_path / "trackio"
    got = _in_subprocess(code, trackio_dir)
    manifest = json.loads((out / "manifest.json").read_text())

    assert got["runs"] == ["run"] and len(got["logs"]) == 1
    logged = got["logs"][0]
    assert logged["step"] == 0
    assert logged["counts/pool"] == manifest["counts"]["pool"] == 120
    assert logged["failed"] == 0 and logged["wall_seconds"] == manifest["wall_seconds"]
    assert {k for k in logged if k.startswith("seconds/")} >= {"seconds/load_seed_pool"}
    for figure in ("density", "map"):  # the figures as trackio images, copied into TRACKIO_DIR's media
        image = logged[f"figures/{figure}"]
        assert image["_type"] == "trackio.image"
        assert (trackio_dir / "media").is_dir() and list((trackio_dir / "media").rglob(Path(image["file_path"]).name))
    assert logged["steps"]["_type"] == "trackio.table"
    assert got["config"]["student"] == student and got["config"]["status"] == "ok"
    assert got["config"]["run_dir"] == str(out.resolve())
    assert list(trackio_dir.glob("*.db")), "trackio wrote its local SQLite database under TRACKIO_DIR"


@pytest.mark.slow
def test_embedsdg_train_reports_to_real_trackio(student, gsm8k_rows, tmp_path):
    pytest.importorskip("trackio")
    data = tmp_path / "train.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]}
        for r in gsm8k_rows[:8]
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = [
        "--config", str(REPO / "recipes/gsm8k-cpu/sft/lora.yaml"), "--dataset", str(data),
        "--output_dir", str(tmp_path / "sft"), "--max_steps", "2", "--logging_steps", "1",
        "--per_device_train_batch_size", "4", "--max_length", "128", "--merge", "false", "--disable_tqdm", "true",
        "--report_to", "trackio", "--project", "embedsdg-sft-test", "--run_name", "lora-check",
    ]  # fmt: skip
    code = f"""
import json, torch
torch.set_num_threads(1)
from embedsdg_hf.training.train import run_train
assert run_train({argv!r}) == 0
project, run = "embedsdg-sft-test", "lora-check"
{_READ_BACK}"""
    got = _in_subprocess(code, tmp_path / "trackio")
    assert got["runs"] == ["lora-check"]
    losses = [log["train/loss"] for log in got["logs"] if "train/loss" in log]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert got["config"]["num_train_epochs"] == 5 and "lora-check" in json.dumps(got["config"])
