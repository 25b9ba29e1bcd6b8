"""The `embedsdg` console script as a user runs it: a real subprocess, real model, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from embedsdg_hf.config import PipelineConfig

REPO = Path(__file__).resolve().parents[1]


def _embedsdg(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "embedsdg_hf.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_help_imports_nothing_heavy():
    heavy = "{'torch', 'datasets', 'transformers'}"
    code = f"import sys, embedsdg_hf.cli as c; c.build_parser(); print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "make-pool" in _embedsdg("--help").stdout


def test_every_recipe_parses():
    from trl import TrlParser

    recipes = sorted(REPO.glob("recipes/*/pipeline.yaml"))
    assert recipes
    for recipe in recipes:
        (config,) = TrlParser((PipelineConfig,)).parse_args_and_config(["--config", str(recipe)])
        assert config.to_dict().keys() >= yaml.safe_load(recipe.read_text()).keys()


def test_default_recipe_is_what_run_does_without_a_config():
    from trl import TrlParser

    (config,) = TrlParser((PipelineConfig,)).parse_args_and_config(
        ["--config", str(REPO / "recipes/default/pipeline.yaml")]
    )
    assert config == PipelineConfig()


def test_unknown_recipe_key_and_bad_values_are_named(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("version: 1\nn_pair: 10\n")
    out = _embedsdg("run", "--config", str(recipe))
    assert out.returncode == 2 and "n_pair" in out.stderr and "Traceback" not in out.stderr
    out = _embedsdg("run", "--n_components", "4")
    assert out.returncode == 2 and "n_components must be 2 or 3" in out.stderr


@pytest.mark.slow
def test_run_writes_a_reproducible_analysis(student, tmp_path):
    out_dir = tmp_path / "run"
    args = ["run", "--stage", "analysis", "--pool_size", "400", "--n_pairs", "12", "--output_dir", str(out_dir)]
    done = _embedsdg(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| embed | 400 | 400 |" in done.stdout and "seed pairs" in done.stdout
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["counts"]["pool"] == 400 and manifest["counts"]["pairs"] == 12
    assert manifest["config"]["seed"] == 0 and manifest["versions"]["datasets"]
    # the default selector (rarity) saves its fitted spec; no grid is fitted (issue 22 item 4)
    assert not (out_dir / "grid.json").exists() and not any("grid" in step["step"] for step in manifest["steps"])
    for name in ("density_histogram.png", "embedding_map.png", "rarity.json", "reducer/reducer.json", "pairs.jsonl"):
        assert (out_dir / name).stat().st_size > 0, name
    assert (out_dir / "density_histogram.png").read_bytes()[:4] == b"\x89PNG"

    from datasets import load_from_disk

    pairs = load_from_disk(str(out_dir / "pairs"))
    assert {"seed_a", "seed_b", "interp_coords", "interp_in_region", "seed_input_ids_a"} <= set(pairs.column_names)

    # Same config again: allowed, same pairs. Another config into the same dir: refused, then --overwrite.
    assert _embedsdg(*args).returncode == 0
    assert load_from_disk(str(out_dir / "pairs"))["seed_a"] == pairs["seed_a"]
    refused = _embedsdg("run", "--stage", "analysis", "--pool_size", "300", "--output_dir", str(out_dir))
    assert refused.returncode == 2 and "another config" in refused.stderr and "pool_size" in refused.stderr
    assert "Traceback" not in refused.stderr
    overwrite = ["--pool_size", "300", "--n_pairs", "4", "--output_dir", str(out_dir), "--overwrite", "true"]
    assert _embedsdg("run", "--stage", "analysis", *overwrite).returncode == 0


def test_make_pool_writes_jsonl(tmp_path):
    target = tmp_path / "pool.jsonl"
    assert _embedsdg("make-pool", "--n", "25", "--output", str(target)).returncode == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 25 and rows[0]["answer"].splitlines()[-1].startswith("#### ")


TINY = [
    "--pool_size",
    "150",
    "--n_pairs",
    "3",
    "--decode_max_new_tokens",
    "32",
    "--max_tokens",
    "96",
    "--teacher_batch_size",
    "4",
]


@pytest.mark.slow
def test_run_end_to_end_with_the_built_in_teacher_then_resume_and_random(student, tmp_path):
    out_dir = tmp_path / "e2e"
    done = _embedsdg("run", *TINY, "--output_dir", str(out_dir))
    manifest = json.loads((out_dir / "manifest.json").read_text())
    # The 135M built-in teacher may get no row through the gates: then the run says so and exits 1, not 0.
    assert done.returncode == (0 if manifest["counts"]["train"] else 1), done.stderr[-3000:]
    assert manifest["status"] == ("ok" if manifest["counts"]["train"] else "failed")
    if not manifest["counts"]["train"]:
        assert "embedsdg run: failed: No row survived" in done.stderr
    assert "| decode through the student | 3 | 3 |" in done.stdout
    assert "| generate with the teacher (embedsdg) | 3 | 3 |" in done.stdout and "parse rate" in done.stdout
    manifest = json.loads((out_dir / "manifest.json").read_text())
    gen = manifest["generation"]
    assert gen["rows"] == 3 and gen["accepted"] + sum(gen["rejects_by_reason"].values()) == 3
    assert gen["completion_tokens"] > 0 and gen["from_cache"] == 0
    from datasets import load_from_disk

    synthetic = load_from_disk(str(out_dir / "synthetic"))
    assert set(synthetic["method"]) == {"embedsdg"} and all(synthetic["decoded_text"])
    assert manifest["quality"]["checked"] == gen["accepted"]  # the gates ran on the accepted rows
    train_file = out_dir / "train.jsonl"  # none when no row passed (an empty JSON-lines file does not load)
    assert len(train_file.read_text().splitlines() if train_file.exists() else []) == manifest["counts"]["train"]
    assert manifest["counts"]["train"] == manifest["quality"]["passed"]
    assert "quality gates on the" in done.stdout

    again = _embedsdg("run", *TINY, "--output_dir", str(out_dir))  # the same command: everything from the cache
    assert again.returncode == done.returncode, again.stderr[-3000:]
    assert json.loads((out_dir / "manifest.json").read_text())["generation"]["from_cache"] == 3
    assert load_from_disk(str(out_dir / "synthetic"))["raw_response"] == synthetic["raw_response"]

    random_dir = tmp_path / "random"
    baseline = _embedsdg("run", *TINY, "--method", "random", "--output_dir", str(random_dir))
    assert baseline.returncode in (0, 1) and "Traceback" not in baseline.stderr, baseline.stderr[-3000:]
    rows = load_from_disk(str(random_dir / "synthetic"))
    assert len(rows) == 3 and set(rows["method"]) == {"random"} and set(rows["seed_b"]) == {-1}


def test_validate_reports_each_check(student, tmp_path):
    ok = _embedsdg("validate", "--pool_size", "20")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[ok] seed pool + text template" in ok.stdout and "[ok] teacher reachable" in ok.stdout
    bad = _embedsdg("validate", "--teacher", "openai:some-model@http://127.0.0.1:9/v1", "--text_template", "{q}")
    assert bad.returncode == 1
    assert "[FAIL] seed pool + text template" in bad.stdout and "'{q}'" in bad.stdout
    assert "[FAIL] teacher reachable" in bad.stdout and "127.0.0.1:9" in bad.stdout


def test_bad_selection_settings_are_refused_by_run_and_validate():
    for key, value, message in (
        ("reducer", "lda", "reducer must be one of ['pca', 'svd', 'tsne', 'umap']"),
        ("threshold", "1", "threshold must be 'auto', 'quantile' or an integer >= 2"),
        ("threshold_fraction", 0.0, "threshold_fraction must be in (0, 1]"),
        ("threshold_quantile", 1.5, "threshold_quantile must be in [0, 1]"),
        ("side_choice", "far", "side_choice must be one of ['random', 'nearest']"),
        ("max_pairs_per_region", 0, "max_pairs_per_region must be >= 1"),
        ("min_populated_neighbors", 2.0, "min_populated_neighbors must be a fraction in [0, 1]"),
    ):
        with pytest.raises(ValueError) as err:
            PipelineConfig(**{key: value})
        assert message in str(err.value)
    for command in ("run", "validate"):  # the CLI reports them in one line (argparse's choices), without a traceback
        out = _embedsdg(command, "--side_choice", "far")
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "--side_choice" in out.stderr and "'far'" in out.stderr and "'random', 'nearest'" in out.stderr
    assert PipelineConfig(threshold="quantile").threshold_value == "quantile"
    assert PipelineConfig(threshold="10").threshold_value == 10


@pytest.mark.slow
def test_analyze_reuses_the_run_space(student, gsm8k_train_file, tmp_path):
    """`analyze --run-dir`: the run's pool, student, template (question + answer), weights and reducer."""
    from datasets import Dataset, load_dataset

    run_dir = tmp_path / "run"
    args = ["--stage", "analysis", "--seed_pool", str(gsm8k_train_file), "--pool_size", "300", "--n_pairs", "4"]
    done = _embedsdg("run", *args, "--output_dir", str(run_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    test_file = gsm8k_train_file.parent / "test.jsonl"
    rows = load_dataset("json", data_files=str(test_file), split="train").select(range(60))
    predictions = Dataset.from_dict(
        {"question": rows["question"], "reference": ["0"] * 60, "correct": [i % 3 == 0 for i in range(60)]}
    )
    predictions.save_to_disk(str(tmp_path / "predictions"))
    common = ["analyze", "--predictions", str(tmp_path / "predictions"), "--bins", "3", "--min-examples", "2"]
    out = _embedsdg(
        *common, "--run-dir", str(run_dir), "--eval-data", str(test_file), "--output-dir", str(tmp_path / "a")
    )
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["space"]["text_template"] == "{question}\n{answer}" == stats["space"]["scored_template"]
    assert stats["space"]["weights"] == "mean" and stats["reducer"] == "pca" and stats["n_components"] == 2
    # without the worked answers the run's template cannot be filled: a clear error, no traceback
    bad = _embedsdg(*common, "--run-dir", str(run_dir), "--output-dir", str(tmp_path / "b"))
    assert bad.returncode == 2 and "answer" in bad.stderr and "Traceback" not in bad.stderr
    both = _embedsdg(*common, "--run-dir", str(run_dir), "--model", "x", "--output-dir", str(tmp_path / "c"))
    assert both.returncode == 2 and "--model comes from --run-dir" in both.stderr
