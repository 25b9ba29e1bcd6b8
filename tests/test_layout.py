"""The package layout reads like the paper's Figure 1, and imports only go one way.

common <- data <- space <- generation <- quality / analysis <- training <- run / experiments / top level
``analysis`` (coverage, density vs accuracy) measures a run: neither a quality gate nor training; a selector (quality)
may ask it for its coverage, and it imports nothing from quality.
``plots`` sits at the top of the tree but is a leaf: it imports nothing from the package, so every stage may draw.
``run/`` (the run dir's paths, the stages) reads the config back, so it ranks with the pipeline.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import embedsdg_hf

PACKAGE = Path(embedsdg_hf.__file__).parent
TOP = 6  # pipeline, cli, config, hub, report, validate, experiments/, run/
RANK = {
    "common": 0,
    "plots": 0,
    "data": 1,
    "space": 2,
    "generation": 3,
    "quality": 4,
    "analysis": 4,
    "training": 5,
    "run": TOP,
}


def _stage(parts: tuple[str, ...]) -> int:
    """Rank of a module given its dotted parts below ``embedsdg_hf``."""
    if not parts:
        return TOP  # the package itself (lazy public API)
    return RANK.get(parts[0], TOP)


def _imports(path: Path) -> list[tuple[tuple[str, ...], int]]:
    """(target module parts below embedsdg_hf, line) for every package import in ``path``, top-level or nested."""
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = (*base, *(node.module.split(".") if node.module else ()))
            elif node.module and node.module.split(".")[0] == "embedsdg_hf":
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            if node.module is None:  # `from . import x`: x may be a submodule
                for alias in node.names:
                    found.append(((*target, alias.name), node.lineno))
            else:
                found.append((target, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "embedsdg_hf":
                    found.append((tuple(alias.name.split(".")[1:]), node.lineno))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_later_stage(path):
    own = _stage(path.relative_to(PACKAGE).with_suffix("").parts)
    late = [
        f"line {line}: {'.'.join(target) or 'embedsdg_hf'} (stage {_stage(target)} > {own})"
        for target, line in _imports(path)
        if _stage(target) > own
    ]
    assert not late, f"{path.relative_to(PACKAGE)} imports against the grain: {late}"


def test_every_stage_is_a_folder_and_the_top_level_is_small():
    for stage in ("common", "data", "space", "generation", "quality", "analysis", "training", "experiments", "run"):
        assert (PACKAGE / stage / "__init__.py").is_file(), stage
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == [
        "__init__.py",
        "cli.py",
        "config.py",
        "hub.py",
        "pipeline.py",
        "plots.py",
        "report.py",
        "validate.py",
    ]


def test_public_api_stays_flat():
    for name in embedsdg_hf.__all__:
        assert getattr(embedsdg_hf, name) is not None, name


def test_run_dir_paths_and_stages_have_one_owner():
    """run/rundir.py owns the run-dir names, run/stages.py the stages; the pipeline keeps no list of its own."""
    pipeline = (PACKAGE / "pipeline.py").read_text(encoding="utf-8")
    for hand_kept in ("_STAGE_OUTPUTS", '"run_config.json"', '"manifest.json"', '"train.jsonl"', '/ "pool"'):
        assert hand_kept not in pipeline, hand_kept
    assert (PACKAGE / "run" / "rundir.py").is_file() and (PACKAGE / "run" / "stages.py").is_file()
