"""The ablation table and argument checks (the full ablation is a long run: see README / the closing notes)."""

from __future__ import annotations

import pytest

from embedsdg_hf.config import PipelineConfig
from embedsdg_hf.experiments.ablation import _row, arm_config, format_table, run_ablation


def test_table_has_the_base_row_and_one_row_per_method_and_budget():
    results = {"accuracy": 0.04, "ci_low": 0.016, "ci_high": 0.098, "n": 100, "n_no_answer": 3}
    rows = [
        _row("base", 0, None, {**results, "accuracy": 0.02}),
        _row("embedsdg", 8, 3, results),
        _row("random", 8, 0, None),
    ]
    table = format_table(rows, student="smollm2-135m-instruct", eval_data="gsm8k-test", limit=100)
    assert "gsm8k-test (first 100 rows)" in table
    assert "| base (no fine-tuning) |  |  | 2.0% |" in table
    assert "| embedsdg | 8 | 3 | 4.0% | [1.6, 9.8] | 3 |" in table
    assert "| random | 8 | 0 | n/a |" in table


@pytest.mark.parametrize("budgets", [[], [0], [8, -1]])
def test_budgets_must_be_positive(budgets, tmp_path):
    with pytest.raises(ValueError, match="budgets must be positive integers"):
        run_ablation(PipelineConfig(), budgets=budgets, sft_config="x.yaml", output_dir=tmp_path)


def test_random_arm_gets_as_many_seeds_as_embedsdg_made_pairs(tmp_path):
    config = PipelineConfig(n_pairs=7)
    ours = arm_config(config, "embedsdg", 500, None, tmp_path / "embedsdg-500")
    assert (ours.method, ours.n_pairs, ours.output_dir) == ("embedsdg", 500, str(tmp_path / "embedsdg-500"))
    assert arm_config(config, "random", 500, 480, tmp_path / "r").n_pairs == 480  # the pool gave 480 pairs
    assert arm_config(config, "random", 500, 500, tmp_path / "r").n_pairs == 500
    assert arm_config(config, "random", 500, 480, tmp_path / "r").method == "random"
