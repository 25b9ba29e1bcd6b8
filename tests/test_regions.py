"""fit_grid / count_windows / add_grid_cells / find_sparse_regions: prefix sums, thresholds, neighbour rule, errors."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from datasets import Dataset, Features, List, Value

from embedsdg_hf.space.regions import (
    GridSpec,
    add_grid_cells,
    count_windows,
    find_sparse_regions,
    fit_grid,
    summarize_windows,
    typical_window_count,
)


def coords_dataset(points: np.ndarray) -> Dataset:
    k = points.shape[1]
    features = Features({"coords": List(Value("float32"), length=k), "text": Value("string")})
    return Dataset.from_dict(
        {"coords": points.astype(np.float32).tolist(), "text": [f"row {i}" for i in range(len(points))]},
        features=features,
    )


def planted_points(seed: int = 0) -> tuple[np.ndarray, list[int], int]:
    """Uniform points on [0, 10]^2, 20 per unit cell, except: cell (4, 6) holds 2 points, and the 3x3 corner cells
    at the origin are empty but for one isolated point at (0, 0). Returns the points, the planted rows and the
    corner row."""
    rng = np.random.default_rng(seed)
    points, planted, corner = [], [], -1
    for i, j in itertools.product(range(10), range(10)):
        if i < 3 and j < 3:
            if (i, j) == (0, 0):
                corner = len(points)
                points.append([0.0, 0.0])
            continue
        count = 2 if (i, j) == (4, 6) else 20
        if count == 2:
            planted = [len(points), len(points) + 1]
        points.extend((np.array([i, j]) + 0.05 + 0.9 * rng.random((count, 2))).tolist())
    points.append([10.0, 10.0])  # fixes the upper bound; cell (9, 9) then holds 21 points
    return np.asarray(points), planted, corner


@pytest.fixture(scope="module")
def planted():
    points, rows, corner = planted_points()
    return coords_dataset(points), rows, corner


def brute_force_counts(points: np.ndarray, grid: GridSpec) -> np.ndarray:
    """Count points in every window box directly (the last cell on each axis is closed at ``upper``)."""
    lower, stride, window = np.asarray(grid.lower), np.asarray(grid.stride), np.asarray(grid.window)
    out = np.zeros(grid.window_shape, dtype=np.int64)
    for start in itertools.product(*(range(s) for s in grid.window_shape)):
        lo = lower + np.asarray(start) * stride
        hi = lo + window
        touches_end = np.asarray(start) + np.asarray(grid.window_cells) == np.asarray(grid.shape)
        below_hi = np.where(touches_end, points <= np.asarray(grid.upper), points < hi)
        out[start] = np.count_nonzero(np.all((points >= lo) & below_hi, axis=1))
    return out


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("divisor", [1, 2, 3])
def test_prefix_sum_counts_match_brute_force(k, divisor):
    rng = np.random.default_rng(k * 10 + divisor)
    points = rng.normal(size=(400, k)).astype(np.float32)
    ds = coords_dataset(points)
    bins = 7 if k == 2 else 4
    span = points.max(axis=0).astype(np.float64) - points.min(axis=0)
    grid = fit_grid(ds, bins=bins, stride=(span / bins / divisor).tolist(), threshold=3)
    assert grid.window_cells == (divisor,) * k
    assert grid.window_shape == tuple(bins * divisor - divisor + 1 for _ in range(k))
    counts = count_windows(ds, grid)
    np.testing.assert_array_equal(counts, brute_force_counts(points.astype(np.float64), grid))
    np.testing.assert_array_equal(count_windows(points, grid), counts)  # a raw matrix works too


def test_cell_index_edges():
    ds = coords_dataset(np.array([[0.0, 0.0], [4.0, 2.0], [1.0, 1.0]]))
    grid = fit_grid(ds, bins=(4, 2), threshold=2)
    assert grid.shape == (4, 2) and grid.stride == (1.0, 1.0)
    cells = grid.cell_index(np.array([[0.0, 0.0], [4.0, 2.0], [1.0, 1.0], [0.99, 1.5], [-0.1, 1.0], [2.0, 2.5]]))
    # (0,0) -> 0; upper corner -> last cell (3,1) = 7; (1,1) -> cell (1,1) = 3; (0,1) = 1; outside -> -1
    assert cells.tolist() == [0, 7, 3, 1, -1, -1]
    assert cells.dtype == np.int64


def test_planted_sparse_region_is_found_and_corner_is_not(planted):
    ds, rows, corner = planted
    grid = fit_grid(ds, bins=10)
    assert grid.threshold == 5 and grid.threshold_rule == "typical*0.25 (typical=20)"
    regions = find_sparse_regions(ds, grid)
    assert len(regions) == 1
    region = regions[0]
    assert region["region_id"] == 0 and region["count"] == 2
    assert region["window_index"] == [4, 6]
    assert region["members"] == sorted(rows)
    np.testing.assert_allclose(region["lower"], [4.0, 6.0], atol=1e-9)
    np.testing.assert_allclose(region["upper"], [5.0, 7.0], atol=1e-9)
    assert region["n_neighbors"] == 8 and region["n_populated_neighbors"] == 8
    assert corner not in region["members"]

    everywhere = find_sparse_regions(ds, fit_grid(ds, bins=10, min_populated_neighbors=0))
    assert everywhere["count"] == [1, 2]  # sparsest first: the isolated corner point, then the planted cell
    assert everywhere[0]["members"] == [corner] and everywhere[0]["window_index"] == [0, 0]
    assert everywhere[0]["n_populated_neighbors"] == 0
    assert everywhere["region_id"] == [0, 1]


@pytest.mark.parametrize("k", [2, 3])
def test_regions_are_non_empty_below_threshold_and_ranked(k):
    rng = np.random.default_rng(k)
    points = np.concatenate([rng.normal(size=(800, k)), rng.normal(3.0, 0.5, size=(200, k))])
    ds = coords_dataset(points)
    grid = fit_grid(ds, bins=6, stride=None, threshold="quantile", quantile=0.5, min_populated_neighbors=0.25)
    regions = find_sparse_regions(ds, grid)
    assert len(regions) > 0
    counts = np.asarray(regions["count"])
    assert np.all(counts >= 1) and np.all(counts < grid.threshold)
    assert list(counts) == sorted(counts)
    assert set(regions["level"]) == {0} and set(regions["threshold"]) == {grid.threshold}
    assert regions["region_id"] == list(range(len(regions)))
    assert all(len(m) == c for m, c in zip(regions["members"], counts, strict=True))
    required = math.ceil(0.25 * (3**k - 1))
    assert min(regions["n_populated_neighbors"]) >= required
    # members lie in their box
    coords = np.asarray(ds["coords"], dtype=np.float64)
    for row in regions:
        inside = coords[row["members"]]
        assert np.all(inside >= np.asarray(row["lower"]) - 1e-9) and np.all(inside <= np.asarray(row["upper"]) + 1e-9)
        assert row["members"] == sorted(row["members"])


def test_auto_threshold_follows_quantile_rule(planted):
    ds, _, _ = planted
    for q in (0.0, 0.1, 0.5, 1.0):
        grid = fit_grid(ds, bins=5, threshold="quantile", quantile=q)
        counts = count_windows(ds, grid)
        assert grid.threshold == max(2, math.ceil(np.quantile(counts[counts > 0], q)))
        assert grid.threshold_rule == f"quantile={q:g}"
    fixed = fit_grid(ds, bins=5, threshold=7)
    assert fixed.threshold == 7 and fixed.threshold_rule == "fixed"


@pytest.mark.parametrize("bad", [0, 1, -3, "bogus", 2.5, True])
def test_bad_threshold_raises(planted, bad):
    ds, _, _ = planted
    with pytest.raises(ValueError, match=r"threshold must be an integer >= 2, 'auto' or 'quantile'; got"):
        fit_grid(ds, threshold=bad)


def test_threshold_one_says_why(planted):
    with pytest.raises(ValueError, match=r"got 1\. A sparse region has 1 <= count < T"):
        fit_grid(planted[0], threshold=1)


def test_fit_grid_errors(planted):
    ds, _, _ = planted
    with pytest.raises(ValueError, match=r"empty \(0 rows\)"):
        fit_grid(ds.select([]))
    with pytest.raises(ValueError, match=r"no column 'coord'.*Did you mean 'coords'"):
        fit_grid(ds, column="coord")
    with pytest.raises(ValueError, match=r"4-dimensional coords; fit_grid needs K = 2 or 3"):
        fit_grid(Dataset.from_dict({"coords": np.eye(4).tolist()}))
    with pytest.raises(ValueError, match=r"'coords' has NaN or infinite values in 1 row"):
        fit_grid(Dataset.from_dict({"coords": [[0.0, 1.0], [float("nan"), 2.0], [1.0, 0.0]]}))
    with pytest.raises(ValueError, match=r"same value on axis \[1\].*span 0"):
        fit_grid(Dataset.from_dict({"coords": [[0.0, 1.0], [2.0, 1.0], [1.0, 1.0]]}))
    with pytest.raises(ValueError, match=r"window 12 on axis 0 is larger than the span 10"):
        fit_grid(ds, window=(12.0, 1.0))
    with pytest.raises(ValueError, match=r"at most one of window=1.0 and bins=5"):
        fit_grid(ds, window=1.0, bins=5)
    with pytest.raises(ValueError, match=r"window must be positive"):
        fit_grid(ds, window=0.0)
    with pytest.raises(ValueError, match=r"bins must be a positive integer"):
        fit_grid(ds, bins=0)
    with pytest.raises(ValueError, match=r"bins must be a number or a sequence of 2 numbers; got True"):
        fit_grid(ds, bins=True)
    with pytest.raises(ValueError, match=r"stride must be positive"):
        fit_grid(ds, window=1.0, stride=-1.0)
    with pytest.raises(ValueError, match=r"window / stride must be a whole number of cells.*ratio \[2.5, 2.5\]"):
        fit_grid(ds, window=1.0, stride=0.4)
    with pytest.raises(ValueError, match=r"more than 67,108,864; use a larger stride"):
        fit_grid(ds, window=1.0, stride=0.001)
    with pytest.raises(ValueError, match=r"quantile must be a number in \[0, 1\]; got 1.5"):
        fit_grid(ds, quantile=1.5)
    with pytest.raises(ValueError, match=r"min_populated_neighbors must be a fraction in \[0, 1\]; got 2"):
        fit_grid(ds, min_populated_neighbors=2)


def test_window_and_per_axis_bins(planted):
    ds, _, _ = planted
    grid = fit_grid(ds, window=2.0, stride=0.5, threshold=3)
    assert grid.window_cells == (4, 4) and grid.shape == (20, 20)
    np.testing.assert_allclose(grid.window, (2.0, 2.0))
    grid = fit_grid(ds, bins=(5, 2), threshold=3)
    np.testing.assert_allclose(grid.window, (2.0, 5.0))
    assert count_windows(ds, grid).shape == (5, 2)
    assert fit_grid(ds).window_shape == (20, 20)  # default bins=20


def test_gridspec_json_round_trip(planted, tmp_path):
    ds, _, _ = planted
    grid = fit_grid(ds, bins=5, stride=1.0, threshold="quantile", quantile=0.3, min_populated_neighbors=0.25)
    path = tmp_path / "grid.json"
    grid.save(path)
    assert json.loads(path.read_text())["version"] == "1"
    loaded = GridSpec.load(path)
    assert loaded == grid and hash(loaded) == hash(grid)
    assert GridSpec.from_dict(json.loads(json.dumps(grid.to_dict()))) == grid
    assert loaded.n_components == 2 and loaded.window == grid.window
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['colour'\], missing field\(s\) \[\]"):
        GridSpec.from_dict({**grid.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match=r"missing field\(s\) \['threshold'\]"):
        GridSpec.from_dict({k: v for k, v in grid.to_dict().items() if k != "threshold"})
    with pytest.raises(ValueError, match=r"version '9' is not supported"):
        GridSpec.from_dict({**grid.to_dict(), "version": "9"})


def test_add_grid_cells_matches_counts_and_caches(planted):
    ds, _, _ = planted
    grid = fit_grid(ds, bins=10)
    out = add_grid_cells(ds, grid)
    assert out.features["grid_cell"] == Value("int64")
    assert out.features["coords"] == ds.features["coords"] and out["text"] == ds["text"]
    assert out["coords"] == ds["coords"]
    cells = np.asarray(out["grid_cell"])
    assert cells.min() >= 0
    np.testing.assert_array_equal(np.bincount(cells, minlength=100).reshape(10, 10), count_windows(ds, grid))
    again = add_grid_cells(ds, grid)
    assert again._fingerprint == out._fingerprint
    other = add_grid_cells(ds, fit_grid(ds, bins=5))
    assert other._fingerprint != out._fingerprint
    parallel = add_grid_cells(ds, grid, num_proc=2, output_column="cell")
    assert parallel["cell"] == out["grid_cell"]
    empty = add_grid_cells(ds.select([]), grid)
    assert len(empty) == 0 and "grid_cell" in empty.column_names


def test_add_grid_cells_errors(planted):
    ds, _, _ = planted
    grid = fit_grid(ds, bins=10)
    with pytest.raises(ValueError, match=r"no column 'xy'"):
        add_grid_cells(ds, grid, column="xy")
    three_d = coords_dataset(np.random.default_rng(0).random((10, 3)))
    with pytest.raises(ValueError, match=r"length 3, but the grid was fitted on 2-D"):
        add_grid_cells(three_d, grid)
    with pytest.raises(ValueError, match=r"length 3, but the grid was fitted on 2-D"):
        find_sparse_regions(three_d, grid)


def test_no_regions_gives_empty_dataset_and_warning(planted, caplog):
    ds, _, _ = planted
    grid = fit_grid(ds, bins=10, threshold=2)  # only count-1 windows qualify: the corner, which has no neighbours
    with caplog.at_level("WARNING", logger="embedsdg_hf.space.regions"):
        regions = find_sparse_regions(ds, grid)
    assert len(regions) == 0
    assert regions.features == find_sparse_regions(ds, fit_grid(ds, bins=10)).features
    assert "higher threshold or a smaller window" in caplog.text


def test_auto_threshold_is_relative_to_the_typical_window_and_finds_interior_holes():
    """A cloud of 40 points per window with planted holes inside it (4 points) and on its edge (3 points): T comes
    from the typical window (0.25 x 40 = 10), not from the near-empty fringe, and every planted hole is a region."""
    rng = np.random.default_rng(3)
    holes = {(3, 4): 4, (6, 6): 4, (5, 2): 4, (0, 5): 3, (9, 3): 3}
    points = []
    for i, j in itertools.product(range(10), range(10)):
        points.extend((np.array([i, j]) + 0.05 + 0.9 * rng.random((holes.get((i, j), 40), 2))).tolist())
    points += [[0.0, 0.0], [10.0, 10.0]]  # exact bounds
    ds = coords_dataset(np.asarray(points))
    grid = fit_grid(ds, bins=10)
    assert grid.threshold == 10 and grid.threshold_rule.startswith("typical*0.25 (typical=40)")
    regions = find_sparse_regions(ds, grid)
    assert sorted(map(tuple, regions["window_index"])) == sorted(holes)
    assert min(regions["count"]) >= 3  # regions hold several points, not one
    summary = summarize_windows(ds, grid)
    assert summary["regions"] == 5 and summary["removed_by_neighbor_rule"] == 0 and summary["typical_count"] == 40
    assert typical_window_count(np.array([0, 1, 1, 1, 1, 40, 40, 50])) == 40
    thin = coords_dataset(np.random.default_rng(0).random((60, 2)))  # ~1 point a window: the floor keeps T at 3
    assert fit_grid(thin, bins=10).threshold == 3


def test_equal_count_ties_are_broken_by_the_seed_not_by_position():
    """30 x 30 windows of 5 points each: every window ties. The first 100 regions must spread over the map."""
    rng = np.random.default_rng(0)
    points = [[0.0, 0.0], [30.0, 30.0]]
    for i, j in itertools.product(range(30), range(30)):
        points.extend((np.array([i, j]) + 0.05 + 0.9 * rng.random((5, 2))).tolist())
    ds = coords_dataset(np.asarray(points))
    grid = fit_grid(ds, bins=30, threshold=7, min_populated_neighbors=0)
    first = find_sparse_regions(ds, grid, seed=0)
    assert len(first) == 900
    head = np.asarray(first["window_index"][:100])
    # flat window order would put all 100 in axis-0 rows 0-3; a seeded shuffle spreads them over every part
    assert 10 < head[:, 0].mean() < 19 and 10 < head[:, 1].mean() < 19
    assert len(set(head[:, 0].tolist())) > 20
    assert find_sparse_regions(ds, grid, seed=0)["window_index"] == first["window_index"]
    assert find_sparse_regions(ds, grid, seed=1)["window_index"] != first["window_index"]


def test_min_regions_raises_the_threshold_a_whole_level_at_a_time(planted):
    ds, _, _ = planted
    grid = fit_grid(ds, bins=10, threshold=3, min_populated_neighbors=0)
    assert find_sparse_regions(ds, grid)["count"] == [1, 2]  # the corner point and the planted cell
    more = find_sparse_regions(ds, grid, min_regions=3)
    every = count_windows(ds, grid)
    # the next level is every window of the next count (20 points), whole, not just the one asked for
    assert more["count"] == [1, 2] + [20] * int(np.sum(every == 20))
    assert more["level"] == [0, 0] + [18] * (len(more) - 2) and set(more["threshold"][2:]) == {21}
    assert more["region_id"] == list(range(len(more)))
    assert len(find_sparse_regions(ds, grid, min_regions=10_000)) == int(np.sum(every > 0))  # all there is
    with pytest.raises(ValueError, match=r"min_regions must be an integer >= 0; got -1"):
        find_sparse_regions(ds, grid, min_regions=-1)
