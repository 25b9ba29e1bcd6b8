"""Options are Literal types whose choices live in one place (common/options.py, the selectors' registry): ``--help``
lists them, a bad value is one line naming the setting, the value and the choices (CLI, YAML and Python alike),
and each off switch has one spelling (older ones still read)."""

from __future__ import annotations

import json

import pytest

from embedsdg_hf.cli import main
from embedsdg_hf.common import options
from embedsdg_hf.config import OFF, PipelineConfig, normalize_off, option_choices, results_diff
from embedsdg_hf.quality.selectors import SELECTORS
from embedsdg_hf.run.rundir import RunDir

OPTIONS = {
    "weights": options.WEIGHTS,
    "reducer": options.REDUCERS,
    "side_choice": options.SIDE_CHOICES,
    "knn_pairing": options.KNN_PAIRINGS,
    "knn_text": options.KNN_TEXTS,
    "method": options.METHODS,
    "answer_format": options.ANSWER_FORMATS,
    "stage": options.RUN_STAGES,
    "report_to": options.TRACKERS,
}


def test_every_option_takes_its_choices_from_the_module_that_implements_it():
    from embedsdg_hf.common.answers import KINDS
    from embedsdg_hf.common.tracking import TRACKERS
    from embedsdg_hf.generation.generate import METHODS
    from embedsdg_hf.space.embed import WEIGHTS
    from embedsdg_hf.space.knn_regions import PAIRINGS
    from embedsdg_hf.space.pairs import SIDE_CHOICES
    from embedsdg_hf.space.reduce import METHODS as REDUCERS

    for name, choices in OPTIONS.items():
        assert option_choices(name) == choices, name
    assert option_choices("selector") == tuple(SELECTORS)
    assert (WEIGHTS, REDUCERS, SIDE_CHOICES, PAIRINGS, KINDS, TRACKERS) == (
        options.WEIGHTS,
        options.REDUCERS,
        options.SIDE_CHOICES,
        options.KNN_PAIRINGS,
        options.ANSWER_FORMATS,
        options.TRACKERS,
    )
    assert METHODS == options.METHODS  # generation/generate.py keeps its own tuple: the same values


@pytest.mark.parametrize("name", [*OPTIONS, "selector"])
def test_a_bad_option_names_the_setting_the_value_and_the_choices(name):
    with pytest.raises(ValueError) as err:
        PipelineConfig(**{name: "bogus"})
    assert str(err.value) == f"{name} must be one of {list(option_choices(name))}, got 'bogus'."


def test_a_selector_registered_in_python_is_accepted():
    from embedsdg_hf.quality.selectors import GridSelector

    SELECTORS["grid-again"] = GridSelector
    try:
        assert PipelineConfig(selector="grid-again").selector == "grid-again"
    finally:
        del SELECTORS["grid-again"]


def test_run_help_lists_the_choices_and_a_bad_flag_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for name, choices in {**OPTIONS, "selector": tuple(SELECTORS)}.items():
        assert f"--{name} {{{','.join(choices)}}}" in text, name
    assert main(["run", "--selector", "bogus", "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "embedsdg run: error: argument --selector: invalid choice: 'bogus' (choose from 'grid', 'knn', 'rarity')"
    )
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("weights: nope\n")
    assert main(["run", "--config", str(recipe), "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "embedsdg run: error: weights must be one of ['mask', 'mean', 'attention'], got 'nope'."
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("off", [None, False, "", "none", "None", " NONE "])
def test_every_spelling_of_off_reads_as_the_one_spelling(off):
    assert PipelineConfig(decontaminate=off).decontaminate is None
    assert normalize_off("report_to", off) == "none" == OFF["report_to"]


def test_a_run_dir_written_with_an_old_spelling_of_off_resumes(tmp_path):
    """A run_config.json with ``decontaminate: "none"`` (before null was the one spelling) is the same config."""
    saved = PipelineConfig(decontaminate="none").to_dict()
    assert saved["decontaminate"] is None
    saved["decontaminate"] = "none"  # as main at d8078db wrote it
    assert results_diff(saved, PipelineConfig(decontaminate=None).to_dict()) == []
    assert results_diff(saved, PipelineConfig().to_dict()) == ["decontaminate"]
    (tmp_path / "run_config.json").write_text(json.dumps(saved))
    assert RunDir(tmp_path).config().decontaminate is None
