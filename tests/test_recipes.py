"""The recipes ship with the package: `embedsdg recipes list|copy`, and a wheel in a fresh venv resolves them."""

from __future__ import annotations

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
