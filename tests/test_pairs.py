"""make_seed_pairs: opposite faces, pool top-up (FAISS), provenance, determinism, caps and errors."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset, Features, List, Value

import embedsdg_hf.space.pairs as pairs_module
from embedsdg_hf.space.pairs import make_budget_pairs, make_seed_pairs
from embedsdg_hf.space.regions import find_sparse_regions, fit_grid


def coords_dataset(points: np.ndarray) -> Dataset:
    features = Features({"coords": List(Value("float32"), length=points.shape[1])})
    return Dataset.from_dict({"coords": points.astype(np.float32).tolist()}, features=features)


def face_distance(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, axis: int, value: float) -> np.ndarray:
    gap = np.maximum(np.maximum(lo - points, points - hi), 0.0)
    gap[:, axis] = np.abs(points[:, axis] - value)
    return np.linalg.norm(gap, axis=1)


@pytest.fixture(scope="module", params=[2, 3], ids=["2d", "3d"])
def pool(request):
    """Clustered random points, a grid, and plenty of sparse regions."""
    k = request.param
    rng = np.random.default_rng(k)
    points = np.concatenate([rng.normal(size=(1500, k)), rng.normal(2.5, 0.6, size=(500, k))])
    ds = coords_dataset(points)
    grid = fit_grid(ds, bins=8 if k == 2 else 5, quantile=0.5, min_populated_neighbors=0.25)
    regions = find_sparse_regions(ds, grid)
    assert len(regions) >= 10
    return ds, regions


def check_pairs(ds: Dataset, regions: Dataset, pairs: Dataset) -> None:
    coords = np.asarray(ds["coords"], dtype=np.float32).astype(np.float64)
    by_id = {row["region_id"]: row for row in regions}
    seen = set()
    for row in pairs:
        region = by_id[row["region_id"]]
        lo, hi, axis = np.asarray(region["lower"]), np.asarray(region["upper"]), row["axis"]
        assert row["region_lower"] == region["lower"] and row["region_upper"] == region["upper"]
        assert row["region_count"] == region["count"]
        a, b = row["seed_a"], row["seed_b"]
        assert a != b and (min(a, b), max(a, b)) not in seen
        seen.add((min(a, b), max(a, b)))
        np.testing.assert_array_equal(row["coords_a"], coords[a].astype(np.float32))
        np.testing.assert_array_equal(row["coords_b"], coords[b].astype(np.float32))
        middle = (lo[axis] + hi[axis]) / 2
        members = set(region["members"])
        assert row["source_a"] == ("region" if a in members else "pool")
        assert row["source_b"] == ("region" if b in members else "pool")
        if row["source_a"] == "region":
            assert coords[a, axis] < middle
        else:
            assert coords[a, axis] <= lo[axis]
        if row["source_b"] == "region":
            assert coords[b, axis] >= middle
        else:
            assert coords[b, axis] >= hi[axis]
        assert coords[a, axis] < coords[b, axis]
        np.testing.assert_allclose(row["dist_a"], face_distance(coords[[a]], lo, hi, axis, lo[axis])[0], atol=1e-12)
        np.testing.assert_allclose(row["dist_b"], face_distance(coords[[b]], lo, hi, axis, hi[axis])[0], atol=1e-12)


def best_on_side(coords: np.ndarray, region: dict, axis: int, upper_side: bool) -> tuple[float, str]:
    """Brute force: distance of the best first candidate for a face, and where it comes from."""
    lo, hi = np.asarray(region["lower"]), np.asarray(region["upper"])
    value = hi[axis] if upper_side else lo[axis]
    members = np.asarray(region["members"])
    middle = (lo[axis] + hi[axis]) / 2
    inside = members[coords[members, axis] >= middle] if upper_side else members[coords[members, axis] < middle]
    if len(inside):
        return face_distance(coords[inside], lo, hi, axis, value).min(), "region"
    outer = coords[:, axis] >= value if upper_side else coords[:, axis] <= value
    outer[members] = False
    return face_distance(coords[outer], lo, hi, axis, value).min(), "pool"


def test_pairs_are_on_opposite_faces_with_provenance(pool):
    ds, regions = pool
    pairs = make_seed_pairs(ds, regions, n_pairs=len(regions) + 5, max_pairs_per_region=4)
    assert len(pairs) == len(regions) + 5
    assert pairs["pair_id"] == list(range(len(pairs)))
    assert pairs["region_id"][: len(regions)] == regions["region_id"]  # pass 0 walks every region, sparsest first
    check_pairs(ds, regions, pairs)
    assert {"region", "pool"} <= set(pairs["source_a"]) | set(pairs["source_b"])


def test_first_pass_seeds_are_the_nearest_to_each_face(pool):
    ds, regions = pool
    coords = np.asarray(ds["coords"], dtype=np.float32).astype(np.float64)
    pairs = make_seed_pairs(ds, regions, n_pairs=len(regions), side_choice="nearest")
    for row, region in zip(pairs, regions, strict=True):
        for upper_side, name in ((False, "a"), (True, "b")):
            dist, source = best_on_side(coords, region, row["axis"], upper_side)
            assert row[f"source_{name}"] == source
            np.testing.assert_allclose(row[f"dist_{name}"], dist, atol=1e-12)


def test_faiss_search_gives_the_same_pairs_as_direct_ranking(pool, monkeypatch):
    ds, regions = pool
    direct = make_seed_pairs(ds, regions, n_pairs=3 * len(regions), max_pairs_per_region=6)
    monkeypatch.setattr(pairs_module, "_DIRECT_RANK_MAX", 0)  # every pool top-up now goes through FAISS rounds
    searched = make_seed_pairs(ds, regions, n_pairs=3 * len(regions), max_pairs_per_region=6)
    assert searched.to_dict() == direct.to_dict()


def test_faiss_search_is_exact_far_from_the_origin(monkeypatch):
    rng = np.random.default_rng(7)
    points = 1000.0 + np.concatenate([rng.normal(size=(1500, 2)), rng.normal(2.5, 0.6, size=(500, 2))])
    ds = coords_dataset(points)
    regions = find_sparse_regions(ds, fit_grid(ds, bins=8, quantile=0.5, min_populated_neighbors=0.25))
    direct = make_seed_pairs(ds, regions, n_pairs=2 * len(regions))
    monkeypatch.setattr(pairs_module, "_DIRECT_RANK_MAX", 0)
    assert make_seed_pairs(ds, regions, n_pairs=2 * len(regions)).to_dict() == direct.to_dict()
    check_pairs(ds, regions, direct)


def test_region_with_only_upper_half_points_takes_lower_seed_from_pool():
    rng = np.random.default_rng(0)
    points = [[0.0, 0.0], [10.0, 10.0]]
    for i in range(10):
        for j in range(10):
            if (i, j) == (4, 6):
                points += [[4.8, 6.8], [4.9, 6.7]]  # upper half of the cell on both axes
            else:
                points += (np.array([i, j]) + 0.05 + 0.9 * rng.random((15, 2))).tolist()
    ds = coords_dataset(np.asarray(points))
    regions = find_sparse_regions(ds, fit_grid(ds, bins=10, threshold=5))
    assert regions["count"] == [2] and regions[0]["window_index"] == [4, 6]
    pairs = make_seed_pairs(ds, regions, n_pairs=1)
    row = pairs[0]
    axis = row["axis"]
    assert row["source_a"] == "pool" and row["source_b"] == "region"
    assert row["coords_a"][axis] <= regions[0]["lower"][axis] + 1e-6
    assert row["seed_a"] not in regions[0]["members"]
    check_pairs(ds, regions, pairs)


def test_deterministic_and_seed_changes_axes(pool):
    ds, regions = pool
    first = make_seed_pairs(ds, regions, n_pairs=20, seed=3)
    assert make_seed_pairs(ds, regions, n_pairs=20, seed=3).to_dict() == first.to_dict()
    axes = {tuple(make_seed_pairs(ds, regions, n_pairs=20, seed=s)["axis"]) for s in range(5)}
    assert len(axes) > 1


def test_only_needed_regions_and_passes(pool):
    ds, regions = pool
    pairs = make_seed_pairs(ds, regions, n_pairs=5)
    assert pairs["region_id"] == regions["region_id"][:5]
    n = len(regions)
    more = make_seed_pairs(ds, regions, n_pairs=n + 3)
    assert more["region_id"][:n] == regions["region_id"] and len(more) == n + 3
    # the second pass starts again from the sparsest regions
    assert set(more["region_id"][n:]) <= set(regions["region_id"][:n])


def test_cap_warning_returns_what_there_is(pool):
    ds, regions = pool
    few = regions.select(range(2))
    with pytest.warns(UserWarning, match=r"Asked for n_pairs=50 seed pairs but only \d+ could be made from 2 regions"):
        pairs = make_seed_pairs(ds, few, n_pairs=50, max_pairs_per_region=2)
    assert 1 <= len(pairs) <= 4
    check_pairs(ds, few, pairs)


def test_errors(pool):
    ds, regions = pool
    with pytest.raises(ValueError, match=r"n_pairs must be an integer >= 1; got 0"):
        make_seed_pairs(ds, regions, n_pairs=0)
    with pytest.raises(ValueError, match=r"max_pairs_per_region must be an integer >= 1; got 0"):
        make_seed_pairs(ds, regions, n_pairs=1, max_pairs_per_region=0)
    with pytest.raises(ValueError, match=r"regions dataset is empty.*higher threshold or a smaller window"):
        make_seed_pairs(ds, regions.select([]), n_pairs=1)
    with pytest.raises(ValueError, match=r"regions dataset has no column 'members'"):
        make_seed_pairs(ds, regions.remove_columns("members"), n_pairs=1)
    with pytest.raises(ValueError, match=r"dataset has no column 'xy'"):
        make_seed_pairs(ds, regions, n_pairs=1, column="xy")
    k = len(ds[0]["coords"])
    nan = Dataset.from_dict({"coords": [[float("nan")] * k] + ds["coords"][1:]})
    with pytest.raises(ValueError, match=r"'coords' has NaN or infinite values in 1 row\(s\) \(first: \[0\]\)"):
        make_seed_pairs(nan, regions, n_pairs=1)
    with pytest.raises(ValueError, match=r"computed on another dataset"):
        make_seed_pairs(ds.select(range(10)), regions, n_pairs=1)


def test_random_side_choice_takes_random_members_of_each_half():
    """One region with 40 members: random picks vary with the seed and stay on their half; nearest is fixed."""
    rng = np.random.default_rng(1)
    points = [[0.0, 0.0], [10.0, 10.0]]
    for i in range(10):
        for j in range(10):
            n = 40 if (i, j) == (4, 6) else 200
            points += (np.array([i, j]) + 0.05 + 0.9 * rng.random((n, 2))).tolist()
    ds = coords_dataset(np.asarray(points))
    regions = find_sparse_regions(ds, fit_grid(ds, bins=10, threshold=100))
    assert regions["count"] == [40]
    nearest = {make_seed_pairs(ds, regions, n_pairs=1, seed=s, side_choice="nearest")[0]["seed_a"] for s in range(6)}
    picks = [make_seed_pairs(ds, regions, n_pairs=1, seed=s)[0] for s in range(6)]
    assert len({row["seed_a"] for row in picks}) >= 4  # random members, not always the same extreme point
    assert all(row["source_a"] == row["source_b"] == "region" for row in picks)
    check_pairs(ds, regions, make_seed_pairs(ds, regions, n_pairs=4, seed=3))
    # nearest: per axis, always the same member (the one closest to the face)
    assert len(nearest) <= 2
    with pytest.raises(ValueError, match=r"side_choice must be one of \['random', 'nearest'\]; got 'far'"):
        make_seed_pairs(ds, regions, n_pairs=1, side_choice="far")


def layered_cloud() -> np.ndarray:
    """10 x 10 unit cells of 30 points, except 3 interior cells of 2 points (the sparsest windows) and 6 interior
    cells of 12 points (the next-sparsest)."""
    rng = np.random.default_rng(5)
    sparse = {(3, 3): 2, (6, 2): 2, (5, 7): 2, (2, 6): 12, (7, 7): 12, (4, 5): 12, (3, 8): 12, (7, 4): 12, (5, 2): 12}
    points = [[0.0, 0.0], [10.0, 10.0]]
    for i in range(10):
        for j in range(10):
            points += (np.array([i, j]) + 0.05 + 0.9 * rng.random((sparse.get((i, j), 30), 2))).tolist()
    return np.asarray(points)


def test_budget_larger_than_the_sparsest_windows_moves_on_to_the_next_sparsest():
    ds = coords_dataset(layered_cloud())
    grid = fit_grid(ds, bins=10, threshold=10)  # below T: only the three 2-point cells
    assert len(find_sparse_regions(ds, grid)) == 3
    with pytest.warns(UserWarning, match=r"Asked for n_pairs=20 .* only 12 could be made from 3 regions"):
        capped = make_seed_pairs(ds, find_sparse_regions(ds, grid), n_pairs=20)
    assert len(capped) == 12
    regions, pairs = make_budget_pairs(ds, grid, n_pairs=20, seed=0)
    assert len(pairs) == 20  # met exactly
    assert regions["count"] == [2] * 3 + [12] * 6 and regions["level"] == [0] * 3 + [3] * 6
    assert regions["threshold"] == [10] * 3 + [13] * 6
    # all 12 pairs of the sparsest windows first, then the next-sparsest level
    assert pairs["region_level"] == [0] * 12 + [3] * 8 and pairs["region_count"] == [2] * 12 + [12] * 8
    assert pairs.to_dict() == make_budget_pairs(ds, grid, n_pairs=20, seed=0)[1].to_dict()
    check_pairs(ds, regions, pairs)
    _, small = make_budget_pairs(ds, grid, n_pairs=5, seed=0)  # fits below T: no level is added
    assert len(small) == 5 and set(small["region_level"]) == {0}


def test_budget_the_pool_cannot_meet_warns_after_using_every_window():
    ds = coords_dataset(layered_cloud())
    grid = fit_grid(ds, bins=10, threshold=10, min_populated_neighbors=0)
    with pytest.warns(UserWarning, match=r"Every non-empty window that passes the neighbour rule was used"):
        regions, pairs = make_budget_pairs(ds, grid, n_pairs=500, max_pairs_per_region=2)
    assert len(regions) == 100 and len(pairs) == 200


def test_budget_beyond_every_window_goes_round_again_sparsest_first():
    ds = coords_dataset(layered_cloud())
    grid = fit_grid(ds, bins=10, threshold=10)
    regions, pairs = make_budget_pairs(ds, grid, n_pairs=450, seed=0)  # ~90 usable windows x 4 < 450
    assert len(pairs) == 450 and len(set(pairs["region_id"])) == len(regions)
    check_pairs(ds, regions, pairs)
    first_round = 4 * len(regions)
    # the second round starts again from the sparsest windows
    assert pairs["region_count"][first_round : first_round + 12] == [2] * 12
    assert max(np.bincount(pairs["region_id"])) > 4
    with pytest.warns(UserWarning, match=r"at most max_pairs_per_region=5 distinct pairs each"):
        _, capped = make_budget_pairs(ds, grid, n_pairs=1000, max_pairs_per_region=5)
    assert max(np.bincount(capped["region_id"])) == 5


def test_map_marks_regions_without_pairs_and_raised_levels(tmp_path):
    from embedsdg_hf.plots import plot_embedding_map, region_kinds

    points = layered_cloud()
    ds = coords_dataset(points)
    grid = fit_grid(ds, bins=10, threshold=10)
    regions, pairs = make_budget_pairs(ds, grid, n_pairs=14, seed=0)  # 12 from the 3 sparsest, 2 from level 3
    kinds = region_kinds(regions, pairs)
    assert kinds[:3] == ["below"] * 3
    assert kinds[3:].count("raised") == len(set(pairs["region_id"])) - 3 and kinds[3:].count("unused") >= 4
    assert region_kinds(regions) == ["below"] * 3 + ["raised"] * 6  # without pairs nothing is "unused"
    png = plot_embedding_map(points, tmp_path / "map.png", regions=regions, pairs=pairs, axis_labels=["x", "y"])
    assert png.read_bytes()[:4] == b"\x89PNG"
