"""Tests for the targeting testbed (experiments/testbed.py): planted pools, the shares/lift report on a constructed
pool with a known answer, the rendered tables and the `embedsdg testbed` command."""

from __future__ import annotations

from collections import Counter

import datasets
import numpy as np
import pytest

from embedsdg_hf.experiments.testbed import (
    PATTERNS,
    TUNE_PATTERNS,
    family_shares,
    make_testbed_pool,
    measure_targeting,
    render_targeting,
)


def test_family_shares_known_answer() -> None:
    families = ["common"] * 90 + ["rare"] * 10  # the rare family is 10% of the pool
    result = family_shares(families, {"embedsdg": [95, 96, 97, 0], "random": [0, 1, 2, 3]}, rare_families=["rare"])
    assert result["shares"]["pool"] == {"common": 0.9, "rare": 0.1}
    assert result["shares"]["embedsdg"] == {"common": 0.25, "rare": 0.75}
    assert result["lift"] == {"embedsdg": pytest.approx(7.5), "random": 0.0}
    assert result["rare_hit"] == {"embedsdg": 1, "random": 0}
    with pytest.raises(ValueError, match="None of the rare families"):
        family_shares(families, {"x": [0]}, rare_families=["absent"])
    with pytest.raises(ValueError, match="outside the pool"):
        family_shares(families, {"x": [100]}, rare_families=["rare"])


def test_make_testbed_pool_plants_the_share() -> None:
    pool = make_testbed_pool(1000, rare_families=["ages", "savings"], rare_share=0.02, seed=1)
    counts = Counter(pool["problem_type"])
    assert counts["ages"] == counts["savings"] == 20
    assert sum(counts.values()) == 1000
    with pytest.raises(ValueError, match="rare_families"):
        make_testbed_pool(100, rare_families=["nope"])
    with pytest.raises(ValueError, match="must lie in"):
        make_testbed_pool(100, rare_families=["ages"], rare_share=1.5)


def test_patterns_are_fixed_and_tuning_patterns_named() -> None:
    names = [p.name for p in PATTERNS]
    assert set(TUNE_PATTERNS) < set(names) and len(set(names)) == len(names)
    # the patterns the research note used (numpy's seeded choice): r4s2's rare families
    assert next(p for p in PATTERNS if p.name == "r4s2").rare == (
        "fraction_of_quantity", "recipe_scaling", "unit_price", "work_rate"
    )  # fmt: skip


def _constructed_pool(seed: int = 0) -> tuple[datasets.Dataset, int]:
    """8 common families of 60 tight points, 2 rare families of 6 points (far apart): the rare ones are sparse."""
    rng = np.random.default_rng(seed)
    dim, sizes = 32, [60] * 8 + [6, 6]
    centres = rng.normal(size=(len(sizes), dim))
    emb = np.concatenate([c + 0.05 * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)]).astype(np.float32)
    fam = [f"common{i}" for i in range(8) for _ in range(60)] + ["rareA"] * 6 + ["rareB"] * 6
    order = rng.permutation(len(fam))
    vec = datasets.List(datasets.Value("float32"), length=dim)
    ds = datasets.Dataset.from_dict(
        {"embedding": emb[order], "input_embedding": emb[order], "problem_type": [fam[i] for i in order]},
        features=datasets.Features(
            {"embedding": vec, "input_embedding": vec, "problem_type": datasets.Value("string")}
        ),
    )
    return ds, len(fam)


def test_measure_targeting_on_a_constructed_pool_with_a_known_answer(tmp_path) -> None:
    ds, n = _constructed_pool()
    rows = measure_targeting(
        ds, rare_families=["rareA", "rareB"], reducers=["pca"], dims=[2, 3], n_pairs=4, figure_dir=tmp_path, tag="t"
    )
    assert {r["dims"] for r in rows} == {2, 3}
    default_knn = [r for r in rows if r["selector"] == "knn" and r["default"]]
    assert len(default_knn) == 2
    for row in default_knn:  # every seed from a rare family: lift = 1 / rare share of the pool, exactly
        assert row["lift"] == pytest.approx(n / 12, abs=1e-3)
        assert row["n_seeds"] == 8
        assert row["rare_hit"] >= 1
    assert all(0 <= r["random_lift"] < 5 for r in rows)  # uniform seeds: about 1
    assert {r["setting"] for r in rows if r["selector"] == "grid"}
    figures = [r["figure"] for r in rows if "figure" in r]
    # the grid's for each map (2-D, 3-D); knn and rarity read no map: one figure each
    assert sorted(figures) == [
        "shares-t-knn.png",
        "shares-t-pca-2d-grid.png",
        "shares-t-pca-3d-grid.png",
        "shares-t-rarity.png",
    ]
    assert all((tmp_path / f).stat().st_size > 0 for f in figures)


def test_render_targeting_headline_table() -> None:
    rows = [
        {"pattern": p, "tuned_on": p == "r4s0", "weights": "mean", "reducer": "pca", "dims": k, "selector": "knn",
         "setting": "knn (defaults)", "default": True, "lift": lift, "random_lift": 1.0, "random_lift_sd": 0.1,
         "rare_hit": 4, "n_rare": 4, "n_seeds": 120, "seconds": 0.1}
        for p, lift in (("r4s0", 9.0), ("r4s2", 4.0), ("r4s3", 6.0)) for k in (2, 3)
    ]  # fmt: skip
    from embedsdg_hf.experiments.testbed import _summary

    report = {"patterns": [], "tune_patterns": ["r4s0"], "n": 10, "n_pairs": 60, "random_repeats": 1,
              "notes": ["reducer 'umap' is not offered"], "rows": rows, "summary": _summary(rows), "figures": {},
              "wall_seconds": 1.0}  # fmt: skip
    text = render_targeting(report)
    assert "| knn (defaults) | 5.00 (4.00) | 5.00 (4.00) |" in text  # held-out mean (worst), the tuned one left out
    assert "Note: reducer 'umap' is not offered" in text


def test_a_bad_flag_of_an_argparse_command_is_one_line_and_exit_code_2(capsys) -> None:
    """As for ``embedsdg run``: the flag, the value and what is allowed, on one line; no usage block, no traceback."""
    from embedsdg_hf.cli import main

    for argv, said in (
        (
            ["testbed", "--part", "nope"],
            "embedsdg testbed: error: argument --part: invalid choice: 'nope' (choose from",
        ),
        (["testbed", "--pool-seed", "x"], "embedsdg testbed: error: argument --pool-seed: invalid int value: 'x'"),
        (["coverage"], "embedsdg coverage: error: the following arguments are required: RUN_DIR"),
        (["nope"], "embedsdg nope: error: argument COMMAND: invalid choice: 'nope' (choose from 'validate', 'run'"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(said) and len(err.strip().splitlines()) == 1, err


def test_cli_testbed_help(capsys) -> None:
    from embedsdg_hf.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["testbed", "--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out
