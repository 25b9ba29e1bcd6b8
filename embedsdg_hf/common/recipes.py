"""The recipes that ship with the package: pipeline recipes, TRL SFT recipes and accelerate configs.

In a git checkout ``embedsdg_hf/recipes`` is a link to the repository's ``recipes/`` folder; a wheel carries the
files themselves, so ``embedsdg recipes copy`` and ``embedsdg train --accelerate cpu`` work without a checkout.

Example:
    >>> sorted(list_recipes())[:2]  # doctest: +SKIP
    ['accelerate/cpu.yaml', 'accelerate/deepspeed-zero2.yaml']
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["RECIPES_DIR", "copy_recipes", "list_recipes"]

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


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
    return [dst for _, dst in targets]
