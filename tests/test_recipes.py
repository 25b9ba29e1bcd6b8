"""The recipes ship with the package: `embedsdg recipes list|copy`, and a wheel in a fresh venv resolves them."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from embedsdg_hf.common.recipes import RECIPES_DIR, copy_recipes, list_recipes

REPO = Path(__file__).resolve().parents[1]


def test_the_packaged_folder_is_the_repository_recipes():
    assert RECIPES_DIR.resolve() == (REPO / "recipes").resolve()
    shipped = set(list_recipes())
    assert {"accelerate/cpu.yaml", "default/pipeline.yaml", "gsm8k-cpu/sft/lora.yaml"} <= shipped
    assert shipped == {str(p.relative_to(REPO / "recipes")) for p in (REPO / "recipes").rglob("*.yaml")} | {
        str(p.relative_to(REPO / "recipes")) for p in (REPO / "recipes").rglob("*.md")
    }


def test_copy_one_recipe_and_refuse_to_overwrite(tmp_path):
    written = copy_recipes(tmp_path, "gsm8k-cpu")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "gsm8k-cpu/README.md",
        "gsm8k-cpu/pipeline.yaml",
        "gsm8k-cpu/sft/lora.yaml",
    ]
    assert (tmp_path / "gsm8k-cpu/sft/lora.yaml").read_text() == (REPO / "recipes/gsm8k-cpu/sft/lora.yaml").read_text()
    with pytest.raises(FileExistsError, match="gsm8k-cpu/README.md exists"):
        copy_recipes(tmp_path, "gsm8k-cpu")
    assert copy_recipes(tmp_path, "gsm8k-cpu", overwrite=True) == written
    with pytest.raises(ValueError, match="No shipped recipe 'nope'.*gsm8k-cpu"):
        copy_recipes(tmp_path, "nope")


def test_cli_recipes_list_and_copy(tmp_path):
    cli = [sys.executable, "-m", "embedsdg_hf.cli", "recipes"]
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, check=True).stdout
    assert "accelerate/cpu.yaml" in listed and "default/pipeline.yaml" in listed
    subprocess.run([*cli, "copy", "default", "--to", str(tmp_path)], capture_output=True, text=True, check=True)
    assert (tmp_path / "default" / "pipeline.yaml").is_file()
    again = subprocess.run([*cli, "copy", "default", "--to", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_ships_recipes_and_resolves_accelerate_cpu(tmp_path):
    """Build the wheel, install it (no deps) into a new venv, and resolve `--accelerate cpu` outside the checkout."""
    dist = tmp_path / "dist"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # pip must not see a checkout as installed
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        env=clean,
    )
    (wheel,) = dist.glob("embedsdg_hf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in list_recipes():
        assert f"embedsdg_hf/recipes/{recipe}" in names, recipe
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True, env=clean
    )
    # The wheel's own files, with this venv's dependencies on the path (not the checkout: cwd is elsewhere).
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "HF_HUB_OFFLINE": "1"}
    code = (
        "import embedsdg_hf, sys; from embedsdg_hf.training.train import resolve_accelerate_config; "
        "print(embedsdg_hf.__file__); print(resolve_accelerate_config('cpu'))"
    )
    out = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    package_file, cpu_yaml = out.stdout.split()
    assert Path(package_file).is_relative_to(venv), package_file
    assert Path(cpu_yaml).is_relative_to(venv) and Path(cpu_yaml).name == "cpu.yaml"
    assert Path(cpu_yaml).read_text() == (REPO / "recipes" / "accelerate" / "cpu.yaml").read_text()
    listed = subprocess.run(
        [python, "-m", "embedsdg_hf.cli", "recipes", "list"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "gsm8k-cpu/sft/lora.yaml" in listed.stdout, listed.stderr


def _embedsdg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "embedsdg_hf.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_a_copied_recipe_validates_from_any_folder(tmp_path, student):
    """`embedsdg recipes copy` then `validate` from another folder: the recipe's relative seed pool (relative to its
    own folder in the checkout) is written as an absolute path in the copy and read from there."""
    copy_recipes(tmp_path / "mine", "gsm8k-cpu")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    recipe = tmp_path / "mine" / "gsm8k-cpu" / "pipeline.yaml"
    assert "seed_pool: /" in recipe.read_text() and "# relative to this file" in recipe.read_text()  # comments kept
    done = _embedsdg("validate", "--config", str(recipe), "--pool_size", "8", cwd=elsewhere)
    assert "[ok] seed pool + text template" in done.stdout and "gsm8k/train.jsonl" in done.stdout, done.stdout
    # the shipped recipe itself also validates from any folder: its path is relative to its own folder
    shipped = _embedsdg(
        "validate", "--config", str(REPO / "recipes/gsm8k-cpu/pipeline.yaml"), "--pool_size", "8", cwd=elsewhere
    )
    assert "[ok] seed pool + text template" in shipped.stdout, shipped.stdout


def test_relative_recipe_paths_are_read_from_the_recipe_folder_unless_a_flag_sets_them(tmp_path, gsm8k_rows):
    from trl import TrlParser

    from embedsdg_hf.common.recipes import INPUT_PATH_KEYS, resolve_recipe_paths
    from embedsdg_hf.config import PipelineConfig

    assert set(INPUT_PATH_KEYS) <= {f.name for f in dataclasses.fields(PipelineConfig)}

    (tmp_path / "r" / "data").mkdir(parents=True)
    (tmp_path / "r" / "data" / "own.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows[:4]))
    recipe = tmp_path / "r" / "pipeline.yaml"
    recipe.write_text("version: 1\nseed_pool: data/own.jsonl\ndecontaminate: gsm8k-test,data/own.jsonl\n")
    for argv, pool in (
        ([], str(tmp_path / "r" / "data" / "own.jsonl")),
        (["--seed_pool", "data/x.jsonl"], "data/x.jsonl"),
    ):
        argv = ["--config", str(recipe), *argv]
        (config,) = TrlParser((PipelineConfig,)).parse_args_and_config(argv)
        config = resolve_recipe_paths(config, argv)
        assert config.seed_pool == pool  # a flag is relative to the current directory, as a shell user expects
        assert config.decontaminate == f"gsm8k-test,{tmp_path / 'r' / 'data' / 'own.jsonl'}"
        assert config.student == "smollm2-135m-instruct" and config.output_dir == "outputs/embedsdg-default"


def test_the_single_gpu_recipe_dry_runs(tmp_path, gsm8k_train_file, student):
    """recipes/gsm8k-1gpu (a 7B teacher on vLLM, a 1.5B student, one GPU): parsed as shipped, then `validate` with
    only what needs the Hub or a GPU swapped for local parts (GSM8K file, built-in student, a 127.0.0.1 server
    standing in for vLLM); its SFT recipe is the single-GPU bf16 LoRA."""
    import yaml
    from _servers import FaultyOpenAIServer
    from trl import TrlParser

    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.training.train import build_train_parser

    recipe = REPO / "recipes" / "gsm8k-1gpu" / "pipeline.yaml"
    (config,) = TrlParser((PipelineConfig,)).parse_args_and_config(["--config", str(recipe)])
    assert config.student == "Qwen/Qwen2.5-1.5B-Instruct" and config.teacher.startswith("openai:Qwen/Qwen2.5-7B")
    sft = REPO / "recipes" / "gsm8k-1gpu" / "sft" / "lora.yaml"
    args, training, model = build_train_parser().parse_args_and_config(["--config", str(sft), "--bf16", "false"])
    assert args.model == config.student and model.use_peft and yaml.safe_load(sft.read_text())["bf16"] is True
    assert "single-gpu.yaml" in sft.read_text() and "single-gpu.yaml" in (recipe.parent / "README.md").read_text()
    with FaultyOpenAIServer() as server:
        done = _embedsdg(
            "validate", "--config", str(recipe), "--pool_size", "8",
            "--seed_pool", str(gsm8k_train_file), "--student", student,
            "--teacher", f"openai:Qwen/Qwen2.5-7B-Instruct@{server.base_url}",
            cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("[ok]") == 5 and "generate_embedsdg_v1" in done.stdout, done.stdout  # + decontamination
