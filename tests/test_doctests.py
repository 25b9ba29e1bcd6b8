"""The docstring examples of the whole package run (HOUSE_STYLE: an example that cannot run is rewritten, not
skipped): each module's examples, as ``pytest --doctest-modules embedsdg_hf`` runs them. Examples that load a model
or reach a server are marked ``# doctest: +SKIP`` in the docstring itself; the rest run here (the whole package in
a few seconds)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import embedsdg_hf

MODULES = sorted(["embedsdg_hf", *(m.name for m in pkgutil.walk_packages(embedsdg_hf.__path__, "embedsdg_hf."))])
#: Modules whose examples do not run yet, with why. Every entry is a defect to fix, not a place to park one.
KNOWN_BROKEN: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(m, marks=pytest.mark.xfail(reason=KNOWN_BROKEN[m], strict=True)) if m in KNOWN_BROKEN else m
        for m in MODULES
    ],
)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file by a relative name writes it here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"


def test_the_package_has_examples_that_run():
    """Not all skipped: most modules' examples really run (a +SKIP needs a model or a server)."""
    finder, run, skipped = doctest.DocTestFinder(), 0, 0
    for name in MODULES:
        for test in finder.find(importlib.import_module(name)):
            for example in test.examples:
                skipped += bool(example.options.get(doctest.SKIP))
                run += not example.options.get(doctest.SKIP)
    assert run > 2 * skipped, (run, skipped)
