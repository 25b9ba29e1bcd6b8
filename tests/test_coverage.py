"""Coverage of the targeted sparse regions: planted synthetic rows with a known answer, a hand-computed entropy, a
small real run dir (real SmolLM2-135M embeddings of real GSM8K rows), the RandomSDG comparison and the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from embedsdg_hf.analysis.coverage import coverage_report, measure_coverage, occupancy_entropy
from embedsdg_hf.cli import main
from embedsdg_hf.common.mapping import vector_matrix
from embedsdg_hf.config import PipelineConfig
from embedsdg_hf.plots import plot_coverage
from embedsdg_hf.run.coverage import coverage_from_run
from embedsdg_hf.space.reduce import Reducer
from embedsdg_hf.space.regions import GridSpec, find_sparse_regions

TEMPLATE = "{question}\n{answer}"

# ----------------------------------------------------------------------------------------------------------------
# A tiny constructed grid: numbers by hand


def _tiny():
    """2x2 cells of size 1 over [0, 2]^2, T = 3. Cells (0,0): 4 points, (0,1): 2, (1,0): 1, (1,1): 1."""
    grid = GridSpec(
        lower=(0, 0), upper=(2, 2), stride=(1, 1), window_cells=(1, 1), shape=(2, 2), threshold=3,
        min_populated_neighbors=0.0,
    )  # fmt: skip
    pool = np.array(
        [[0.2, 0.2], [0.4, 0.3], [0.6, 0.7], [0.0, 0.0], [0.3, 1.5], [0.5, 1.2], [1.5, 0.5], [2.0, 2.0]], np.float32
    )
    regions = find_sparse_regions(Dataset.from_dict({"coords": pool.tolist()}), grid)
    return grid, pool, regions


def test_counts_and_entropy_match_a_hand_computation():
    grid, pool, regions = _tiny()
    # Sparsest first, ties in a seeded order: (1,0) and (1,1) with count 1, then (0,1) with count 2.
    assert regions["region_id"] == [0, 1, 2] and regions["count"] == [1, 1, 2]
    assert sorted(regions["window_index"][:2]) == [[1, 0], [1, 1]] and regions["window_index"][2] == [0, 1]
    rid = {tuple(w): r for w, r in zip(regions["window_index"], regions["region_id"])}
    one_one, one_zero = rid[(1, 1)], rid[(1, 0)]
    synthetic = np.array([[1.2, 1.8], [1.9, 1.1], [5.0, 5.0]], np.float32)  # two in cell (1,1), one off the grid
    report = measure_coverage(
        pool, grid, regions, {"embedsdg": synthetic}, synthetic_region_ids={"embedsdg": [one_one, one_one, one_zero]}
    )
    assert report.target_regions == [0, 1]  # the regions the rows aim at
    # Before: 4, 2, 1, 1 of 8 points -> 0.5 * 1 + 0.25 * 2 + 2 * 0.125 * 3 = 1.75 bits; log2(4 cells) = 2.
    assert report.before["entropy_bits"] == pytest.approx(1.75)
    assert report.before["entropy_normalised"] == pytest.approx(0.875)
    # After: 4, 2, 1, 3 of 10 inside (the point at (5, 5) is outside the grid and left out).
    after = -sum(p * math.log2(p) for p in (0.4, 0.2, 0.1, 0.3))
    numbers = report.methods["embedsdg"]
    assert numbers["entropy_after_bits"] == pytest.approx(after)
    assert numbers["entropy_after_normalised"] == pytest.approx(after / 2)
    assert numbers["outside_grid"] == 1 and numbers["inside_grid_share"] == pytest.approx(2 / 3)
    assert numbers["landed_in_target"] == 2 and numbers["landed_in_target_share"] == pytest.approx(2 / 3)
    assert numbers["landed_in_targeted_regions"] == 2 and numbers["regions_reaching_threshold"] == 1
    by_id = {r["region_id"]: r for r in report.regions}
    filled, aimed = by_id[one_one], by_id[one_zero]
    assert (filled["before"], filled["after"]["embedsdg"], filled["landed"]["embedsdg"]) == (1, 3, 2)
    assert (aimed["before"], aimed["after"]["embedsdg"], aimed["aimed"]["embedsdg"]) == (1, 1, 1)
    assert json.loads(json.dumps(report.to_dict()))["summary"]["embedsdg"]["landed_in_target"] == 2


def test_occupancy_entropy_extremes():
    grid, _, _ = _tiny()
    assert occupancy_entropy(np.array([[0.1, 0.1]] * 5), grid) == (0.0, 0.0)
    assert occupancy_entropy(np.array([[0.5, 0.5], [0.5, 1.5], [1.5, 0.5], [1.5, 1.5]]), grid) == (2.0, 1.0)
    assert occupancy_entropy(np.array([[9.0, 9.0]]), grid) == (0.0, 0.0)  # nothing inside: no crash


def test_measure_coverage_bad_input():
    grid, pool, regions = _tiny()
    with pytest.raises(ValueError, match=r"target_regions \[7\] are not in the regions dataset"):
        measure_coverage(pool, grid, regions, {}, target_regions=[7])
    with pytest.raises(ValueError, match=r"aim at region id\(s\) \[9\].*another run"):
        measure_coverage(pool, grid, regions, {"x": pool[:1]}, synthetic_region_ids={"x": [9]})
    with pytest.raises(ValueError, match="'x' has 1 points but 2 region ids"):
        measure_coverage(pool, grid, regions, {"x": pool[:1]}, synthetic_region_ids={"x": [0, 1]})
    with pytest.raises(ValueError, match=r"Pool counts of region\(s\).*not from the same run"):
        measure_coverage(pool[:-1], grid, regions, {})  # the pool without its point in cell (1,1)
    with pytest.raises(ValueError, match="no column 'window_index'"):
        measure_coverage(pool, grid, regions.remove_columns("window_index"), {})


# ----------------------------------------------------------------------------------------------------------------
# A small real run: 200 GSM8K rows embedded with SmolLM2-135M, 2-D PCA, 6x6 grid, T = 4


@pytest.fixture(scope="module")
def run(student, gsm8k_rows, tmp_path_factory):
    """An analysis-only EmbedSDG run dir, with hand-written train.jsonl files for it and a RandomSDG run dir."""
    from embedsdg_hf.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("coverage")
    pool_file = root / "pool.jsonl"
    pool_file.write_text("".join(json.dumps(row) + "\n" for row in gsm8k_rows))
    settings = {"seed_pool": str(pool_file), "student": student, "selector": "grid", "bins": 6, "threshold": "4",
                "n_pairs": 4}  # fmt: skip
    config = PipelineConfig(**settings, stage="analysis", output_dir=str(root / "embedsdg"))
    run_pipeline(config)
    run_dir = Path(config.output_dir)
    pool = load_from_disk(str(run_dir / "pool"))
    regions = load_from_disk(str(run_dir / "regions"))
    grid = GridSpec.load(run_dir / "grid.json")

    # The target: the most populated sparse region; the dense area: the fullest cell, outside the target's window.
    target = int(np.argmax(regions["count"]))
    members = regions[target]["members"]
    cells = grid.cell_index(vector_matrix(pool, "coords"))
    dense_cell = int(np.bincount(cells[cells >= 0]).argmax())
    dense = np.flatnonzero(cells == dense_cell)[:5].tolist()
    start = regions[target]["window_index"]
    dense_index = np.unravel_index(dense_cell, grid.shape)
    assert not all(s <= c < s + w for s, c, w in zip(start, dense_index, grid.window_cells))

    def rows(positions, region_id, method):
        return [{**{k: pool[i][k] for k in ("question", "answer")}, "method": method, "region_id": region_id}
                for i in positions]  # fmt: skip

    def write(directory: Path, records: list[dict], method: str) -> Path:
        directory.mkdir(exist_ok=True)
        (directory / "run_config.json").write_text(
            json.dumps(PipelineConfig(**settings, method=method, output_dir=str(directory)).to_dict())
        )
        (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return directory

    # EmbedSDG: 2 copies of every member of the target (aimed at it) + 3 dense rows aimed at it (they miss).
    write(run_dir, rows(members * 2, target, "embedsdg") + rows(dense[:3], target, "embedsdg"), "embedsdg")
    # RandomSDG, same budget: one row copied from the target region, four from the dense cell; aimed nowhere.
    random_dir = write(root / "random", rows(members[:1] + dense[:4], -1, "random"), "random")
    return {
        "dir": run_dir,
        "random_dir": random_dir,
        "pool": pool,
        "regions": regions,
        "grid": grid,
        "reducer": Reducer.load(run_dir / "reducer"),
        "target": target,
        "members": members,
        "dense": dense,
        "rows": rows,
        "settings": settings,
    }


def _report(run, synthetic, **kwargs):
    return coverage_report(
        run["pool"], run["grid"], run["regions"], run["reducer"], synthetic, model=run["settings"]["student"],
        text_template=TEMPLATE, **kwargs,
    )  # fmt: skip


def test_planted_copies_land_in_their_region_and_dense_copies_do_not(run):
    target, members, dense, rows = run["target"], run["members"], run["dense"], run["rows"]
    sets = {
        "hit": Dataset.from_list(rows(members * 2, target, "embedsdg")),
        "miss": Dataset.from_list(rows(dense, target, "embedsdg")),
        "random": Dataset.from_list(rows(dense, -1, "random")),
    }
    report = _report(run, sets)
    assert report.target_regions == [target]
    before = run["regions"][target]["count"]
    n = 2 * len(members)
    hit, miss, random = (report.methods[k] for k in ("hit", "miss", "random"))
    assert hit["landed_in_target"] == n and hit["landed_in_target_share"] == 1.0
    assert hit["landed_in_targeted_regions_share"] == 1.0 and hit["inside_grid"] == n
    assert report.regions[0]["before"] == before and report.regions[0]["after"]["hit"] == before + n
    assert hit["regions_reaching_threshold"] == int(before + n >= report.threshold) == 1
    assert miss["landed_in_target"] == 0 and miss["landed_in_target_share"] == 0.0
    assert miss["landed_in_targeted_regions"] == 0 and report.regions[0]["after"]["miss"] == before
    assert random["aimed_rows"] == 0 and random["landed_in_target_share"] is None
    assert random["landed_in_targeted_regions_share"] == 0.0
    # Filling a sparse region evens the occupancy out; piling onto the densest cell concentrates it.
    assert hit["entropy_after_bits"] > report.before["entropy_bits"] > miss["entropy_after_bits"]
    table = report.to_markdown()
    assert "| | hit | miss | random |" in table and f"{n}/{n} (100%)" in table
    # The coverage map names its axes like the embedding map: the reducer and the variance each axis explains.
    assert report.settings["axis_labels"] == run["reducer"].axis_labels()
    first = report.settings["axis_labels"][0]
    assert first.startswith("PCA 1 (") and first.endswith("% of variance)")


def test_default_and_explicit_targets(run):
    rows = run["rows"]
    only_random = _report(run, Dataset.from_list(rows(run["dense"], -1, "random")))
    assert list(only_random.methods) == ["random"]  # named after its method column
    assert only_random.target_regions == run["regions"]["region_id"]  # nothing aimed: every region
    assert [r["before"] for r in only_random.regions] == run["regions"]["count"]
    chosen = _report(run, {"random": Dataset.from_list(rows(run["dense"], -1, "random"))}, target_regions=[0, 2])
    assert chosen.target_regions == [0, 2] and len(chosen.regions) == 2
    empty = _report(run, {"embedsdg": Dataset.from_dict({})})
    assert empty.methods["embedsdg"]["synthetic_points"] == 0
    assert empty.methods["embedsdg"]["entropy_after_bits"] == empty.before["entropy_bits"]


def test_coverage_report_bad_input(run):
    rows = Dataset.from_list(run["rows"](run["dense"], 0, "embedsdg"))
    with pytest.raises(ValueError, match=r"names column 'answer'.*Columns present"):
        _report(run, rows.remove_columns("answer"))
    with pytest.raises(ValueError, match="synthetic must be a Dataset or a non-empty dict"):
        _report(run, [rows])
    bare = run | {"pool": run["pool"].remove_columns(["coords", "embedding"])}
    with pytest.raises(ValueError, match="neither a 'coords' column"):
        _report(bare, rows)
    flat = GridSpec(**{**run["grid"].to_dict(), "lower": [0, 0, 0], "upper": [1, 1, 1], "stride": [1, 1, 1],
                       "window_cells": [1, 1, 1], "shape": [1, 1, 1]})  # fmt: skip
    with pytest.raises(ValueError, match="reducer projects to 2-D but the grid is 3-D"):
        _report(run | {"grid": flat}, rows)


def test_coverage_from_run_compares_embedsdg_with_random(run, tmp_path, monkeypatch):
    drawn = _drawn_axis_labels(monkeypatch)
    out = tmp_path / "report"
    report = coverage_from_run(run["dir"], compare={"random": run["random_dir"]}, output_dir=out)
    n_members = len(run["members"])
    saved = json.loads((out / "coverage.json").read_text())
    assert set(saved) >= {"settings", "grid", "target_regions", "before", "methods", "summary", "regions"}
    ours, theirs = saved["summary"]["embedsdg"], saved["summary"]["random"]
    assert ours["targeted_regions"] == 1 and ours["synthetic_points"] == 2 * n_members + 3
    assert ours["landed_in_target"] == 2 * n_members
    assert ours["landed_in_target_share"] == pytest.approx(2 * n_members / (2 * n_members + 3))
    assert theirs["synthetic_points"] == 5 and theirs["landed_in_target_share"] is None
    assert theirs["landed_in_targeted_regions"] == 1 and theirs["landed_in_targeted_regions_share"] == 0.2
    assert set(ours) >= {"entropy_before_bits", "entropy_after_bits", "entropy_after_normalised"}
    assert saved["settings"]["runs"]["random"]["budget"] == saved["settings"]["runs"]["embedsdg"]["budget"]
    assert saved["summary"] == report.summary
    markdown = (out / "coverage.md").read_text()
    assert "| | embedsdg | random |" in markdown and "### Per targeted region" in markdown
    assert (out / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn[-1] == [tuple(run["reducer"].axis_labels()[:2])] * 3  # before, embedsdg, random
    assert saved["settings"]["axis_labels"] == run["reducer"].axis_labels()
    assert not (run["dir"] / "coverage.json").exists()  # output_dir given: the run dir is left alone


def test_coverage_from_run_errors_name_the_file_and_the_fix(run, tmp_path):
    copy = Path(shutil.copytree(run["dir"], tmp_path / "copy", ignore=shutil.ignore_patterns("cache")))
    (copy / "train.jsonl").write_text("")  # no accepted rows: zero, not a crash
    empty = coverage_from_run(copy, output_dir=tmp_path / "empty")
    assert empty.summary["embedsdg"]["synthetic_points"] == 0 and empty.summary["embedsdg"]["landed_in_target"] == 0
    (copy / "train.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"train\.jsonl.*--stage all"):
        coverage_from_run(copy)
    (copy / "grid.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"grid\.json.*`embedsdg run`"):
        coverage_from_run(copy)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        coverage_from_run(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="is a 'random' run.*--compare random="):
        coverage_from_run(run["random_dir"])
    other = Path(shutil.copytree(run["random_dir"], tmp_path / "other"))
    config = json.loads((other / "run_config.json").read_text())
    (other / "run_config.json").write_text(json.dumps({**config, "student": "another-student"}))
    with pytest.raises(ValueError, match=r"another embedding setup \(student='another-student'"):
        coverage_from_run(run["dir"], compare={"random": other}, output_dir=tmp_path)
    with pytest.raises(ValueError, match="taken by the run itself"):
        coverage_from_run(run["dir"], compare={"embedsdg": run["random_dir"]}, output_dir=tmp_path)


def test_cli_prints_the_table_and_refuses_bad_paths(run, tmp_path, capsys):
    args = ["coverage", str(run["dir"]), "--compare", f"random={run['random_dir']}", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| | embedsdg | random |" in printed and "landed in their own target region" in printed
    assert (tmp_path / "coverage.png").exists()
    assert main(["coverage", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["coverage", str(run["dir"]), "--compare", str(run["random_dir"])]) == 2
    assert "--compare takes NAME=RUN_DIR" in capsys.readouterr().err


def _drawn_axis_labels(monkeypatch) -> list:
    """Record the (x, y) labels of every visible panel of each figure saved (the real ``savefig`` still runs)."""
    from matplotlib.figure import Figure

    drawn, savefig = [], Figure.savefig

    def recording_savefig(fig, *args, **kwargs):
        drawn.append([(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.get_visible()])
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return drawn


def test_plot_coverage_3d(tmp_path, monkeypatch):
    drawn = _drawn_axis_labels(monkeypatch)
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(300, 3))
    labels = ["PCA 1 (20.1% of variance)", "PCA 2 (11.0% of variance)", "PCA 3 (7.5% of variance)"]
    path = plot_coverage(
        pool, {"embedsdg": pool[:5] + 0.01, "random": rng.normal(size=(5, 3))}, tmp_path / "cov3d.png",
        boxes=[([0, 0, 0], [0.5, 0.5, 0.5])], landed={"embedsdg": [True] * 5, "random": [False] * 5},
        reached={"embedsdg": [True], "random": [False]}, threshold=3, axis_labels=labels,
    )  # fmt: skip
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert drawn[-1] == [(labels[0], labels[1])] * 3  # every panel: the first two axes' names
    plot_coverage(pool, {}, tmp_path / "bare.png")
    assert drawn[-1] == [("axis 1", "axis 2")]  # no labels given: the old neutral names
