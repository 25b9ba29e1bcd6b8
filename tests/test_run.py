"""run/: one owner of the run-dir paths (RunDir) and of the stages (which settings each reads, what each saves)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from embedsdg_hf.common.rundir import write_json_atomic
from embedsdg_hf.config import OPERATIONAL, PipelineConfig
from embedsdg_hf.config import STAGES as STAGE_NAMES
from embedsdg_hf.run.rundir import RUN_OUTPUTS, RunDir, clear_run_outputs
from embedsdg_hf.run.stages import STAGES, stage, still_valid

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_name_a_run_dir_holds_is_a_run_output_and_a_path_of_run_dir(tmp_path):
    names = {k: v for k, v in vars(RunDir).items() if k.isupper() and isinstance(v, str)}
    assert set(names.values()) == set(RUN_OUTPUTS)  # one list: the names RunDir owns are what a run may delete
    run = RunDir(tmp_path)
    assert run.train == tmp_path / "train.jsonl" and run.config_file == tmp_path / "run_config.json"
    assert run.decoded_part(32, 64) == tmp_path / "decoded" / "part-000032-000064"
    assert {"knn_space.npz", "rarity.json", "grid.json"} <= set(RunDir.outputs())  # the selectors' fitted parts


def test_clear_run_outputs_deletes_only_what_a_run_writes(tmp_path):
    for name in ("train.jsonl", "notes.txt", ".pool.tmp", "knn_space.npz"):
        (tmp_path / name).write_text("x")
    (tmp_path / "pool").mkdir()
    deleted = clear_run_outputs(tmp_path, extra=RunDir.outputs())
    assert deleted == [".pool.tmp", "knn_space.npz", "pool", "train.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_run_config_reads_back_as_the_config_that_wrote_it(tmp_path):
    config = PipelineConfig(
        selector="grid", n_pairs=7, threshold=5, weights="mask", output_dir=str(tmp_path), knn_pairing="extreme"
    )
    run = RunDir(tmp_path)
    write_json_atomic(run.config_file, config.to_dict())
    back = run.config()
    assert isinstance(back, PipelineConfig) and back.to_dict() == config.to_dict()
    assert run.embedding().kwargs() == {
        "model": "smollm2-135m-instruct",
        "text_template": "{question}\n{answer}",
        "weights": "mask",
        "max_length": None,
    }


def test_a_run_config_written_by_main_at_d8078db_still_reads_back(tmp_path):
    saved = json.loads((FIXTURES / "run_config_d8078db.json").read_text())
    (tmp_path / "run_config.json").write_text(json.dumps(saved))
    config = RunDir(tmp_path).config()
    assert config.selector == "grid" and config.threshold == "5" and config.teacher_extra_body == {"top_k": 20}
    assert config.teacher == saved["teacher"]  # the redacted URL reads back as written
    assert {k: v for k, v in config.to_dict().items() if k in saved} == saved


def test_another_versions_run_config_reads_back_with_defaults(tmp_path):
    saved = PipelineConfig().to_dict()
    del saved["knn_k"]  # written before the key existed: its default
    saved["weights"] = None  # an older "the default"
    saved["a_future_key"] = 3  # written by a later version: left out
    (tmp_path / "run_config.json").write_text(json.dumps(saved))
    config = RunDir(tmp_path).config()
    assert config.knn_k == PipelineConfig().knn_k and config.weights == "mean"


def test_a_bad_run_config_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run_config.json"):
        RunDir(tmp_path).config()
    (tmp_path / "run_config.json").write_text("{")
    with pytest.raises(ValueError, match="run_config.json"):
        RunDir(tmp_path).config()
    (tmp_path / "run_config.json").write_text(json.dumps({"n_pairs": 0}))
    with pytest.raises(ValueError, match=r"run_config.json.*n_pairs must be >= 1"):
        RunDir(tmp_path).config()


def test_stages_are_the_config_stages_and_every_field_is_in_one():
    assert tuple(s.name for s in STAGES) == STAGE_NAMES
    staged = [name for s in STAGES for name in s.fields]
    operational = [f.name for f in fields(PipelineConfig) if f.metadata.get("stage") == OPERATIONAL]
    assert sorted(staged + operational) == sorted(f.name for f in fields(PipelineConfig))
    assert len(staged) == len(set(staged))


def test_a_teacher_setting_keeps_analysis_and_decoding():
    kept = still_valid(["teacher_response_format"])  # issue 23: it once threw away the embeddings and decodings
    assert {"pool", "reducer", "regions", "pairs", "decoded"} <= set(kept)
    assert still_valid(["seed_pool"]) == ()  # the pool itself: nothing is kept
    assert still_valid(["not_a_setting"]) == ()  # another version's key: nothing is kept
    assert set(stage("decode").outputs) >= {"regions", "pairs", "knn_space.npz"}
    with pytest.raises(ValueError, match="the stages are"):
        stage("training")
