"""The recipes that ship with the package: pipeline recipes, TRL SFT recipes and accelerate configs.

In a git checkout ``embedsdg_hf/recipes`` is a link to the repository's ``recipes/`` folder; a wheel carries the
files themselves, so ``embedsdg recipes copy`` and ``embedsdg train --accelerate cpu`` work without a checkout.

Example:
    >>> sorted(list_recipes())[:2]
    ['accelerate/cpu.yaml', 'accelerate/deepspeed-zero2.yaml']
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

__all__ = ["INPUT_PATH_KEYS", "RECIPES_DIR", "copy_recipes", "list_recipes", "resolve_recipe_paths"]

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
# The pipeline recipe keys (``PipelineConfig`` fields) that may name a local file or folder to read (comma-separated
# for ``decontaminate``): in a recipe, a relative one is relative to the recipe file's folder.
INPUT_PATH_KEYS = ("seed_pool", "student", "generate_prompt", "decontaminate")


def list_recipes() -> list[str]:
    """Every shipped recipe file (YAML and README), as a path relative to the recipes folder."""
    if not RECIPES_DIR.is_dir():
        raise FileNotFoundError(f"The packaged recipes folder {RECIPES_DIR} is missing: reinstall embedsdg-hf.")
    return sorted(
        str(p.relative_to(RECIPES_DIR)) for p in RECIPES_DIR.rglob("*") if p.is_file() and p.suffix in (".yaml", ".md")
    )


def copy_recipes(destination: str | Path, name: str | None = None, *, overwrite: bool = False) -> list[Path]:
    """Copy the shipped recipes (all, or the folder / file ``name``) into ``destination``; return the files written.

    Existing files are never replaced unless ``overwrite`` is True (the error names the first one).
    """
    files = list_recipes()
    if name is not None:
        name = name.strip("/")
        files = [f for f in files if f == name or f.startswith(name + "/")]
        if not files:
            folders = sorted({f.split("/")[0] for f in list_recipes()})
            raise ValueError(f"No shipped recipe {name!r}; there are: {folders} (`embedsdg recipes list` shows all).")
    destination = Path(destination)
    targets = [(RECIPES_DIR / f, destination / f) for f in files]
    existing = [str(dst) for _, dst in targets if dst.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} exists ({len(existing)} file(s) would be replaced); pass overwrite=True "
            "(`--overwrite`) or choose another destination."
        )
    for src, dst in targets:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        if src.name == "pipeline.yaml":
            dst.write_text(_absolute_paths(src.read_text(encoding="utf-8"), src.parent), encoding="utf-8")
    return [dst for _, dst in targets]


def _resolved(value: str, folder: Path) -> str:
    """``value`` (comma-separated items) with each relative item that exists under ``folder`` made absolute."""
    items = []
    for item in value.split(","):
        name = item.strip()
        if name and not Path(name).expanduser().is_absolute() and (folder / name).exists():
            item = str((folder / name).resolve())
        items.append(item)
    return ",".join(items)


def _absolute_paths(text: str, folder: Path) -> str:
    """A recipe's text with its relative input paths (relative to ``folder``, its own folder) made absolute, so that
    the copy works wherever it is put; comments and layout are kept."""
    keys = "|".join(map(re.escape, INPUT_PATH_KEYS))
    line = re.compile(rf"^(?P<key>{keys}):(?P<gap>[ \t]*)(?P<value>[^\s#\"']+)(?P<rest>.*)$", re.MULTILINE)
    return line.sub(lambda m: f"{m['key']}:{m['gap']}{_resolved(m['value'], folder)}{m['rest']}", text)


def resolve_recipe_paths(config, argv: list[str]):
    """Make the relative input paths a recipe gives (:data:`INPUT_PATH_KEYS`: ``seed_pool``,
    ``student``, ``generate_prompt``, ``decontaminate``) relative to the recipe file's folder, as the recipe's author
    wrote them, rather than to the current directory. A path that does not exist there, or a value a command-line
    flag set, is left as it is (read from the current directory). Returns ``config``.

    Example:
        >>> config = resolve_recipe_paths(config, ["--config", "recipes/gsm8k-cpu/pipeline.yaml"])  # doctest: +SKIP
        >>> config.seed_pool  # doctest: +SKIP
        '/work/shared/data/gsm8k/train.jsonl'
    """
    import yaml

    recipe = next((argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"), None)
    recipe = recipe or next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")), None)
    if recipe is None or not Path(recipe).is_file():
        return config
    given = yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {}
    folder = Path(recipe).resolve().parent
    for key in INPUT_PATH_KEYS:
        value = given.get(key)
        if isinstance(value, str) and getattr(config, key) == value:  # from the recipe, not overridden by a flag
            setattr(config, key, _resolved(value, folder))
    return config
