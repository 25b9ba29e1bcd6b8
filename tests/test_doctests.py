"""The docstring examples of ``embedsdg_hf/space/`` run (HOUSE_STYLE: an example that cannot run is rewritten, not
skipped): each module's examples, as ``pytest --doctest-modules embedsdg_hf/space`` runs them."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import embedsdg_hf

SPACE = Path(embedsdg_hf.__file__).parent / "space"
MODULES = sorted(f"embedsdg_hf.space.{p.stem}" for p in SPACE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
