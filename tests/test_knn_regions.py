"""Tests for the k-NN selector (space/knn_regions.py): regions, pairs (same columns as make_seed_pairs), errors."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from embedsdg_hf.space.knn_regions import find_knn_regions, knn_seed_pairs, make_knn_pairs
from embedsdg_hf.space.pairs import _pair_features


def _clusters(sizes: list[int], *, dim: int = 24, spread: float = 0.05, seed: int = 0) -> datasets.Dataset:
    """Tight Gaussian clusters at random directions; ``coords`` = the first two embedding dims (a linear map)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    emb = np.concatenate([c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)]).astype(np.float32)
    label = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)])
    features = datasets.Features(
        {
            "embedding": datasets.List(datasets.Value("float32"), length=dim),
            "coords": datasets.List(datasets.Value("float32"), length=2),
            "cluster": datasets.Value("int64"),
        }
    )
    return datasets.Dataset.from_dict({"embedding": emb, "coords": emb[:, :2], "cluster": label}, features=features)


def test_small_clusters_are_the_sparsest_and_pairs_stay_inside_them() -> None:
    ds = _clusters([80, 80, 80, 7, 7])  # clusters 3 and 4 are small: their 20th neighbour is far away
    regions, pairs = knn_seed_pairs(ds, n_pairs=6, k=20, density_dims=None, hood_k=5, seed=0)
    cluster = np.asarray(ds["cluster"])
    assert len(pairs) == 6
    assert set(cluster[regions["centre"]]) <= {3, 4}
    seeds = np.concatenate([pairs["seed_a"], pairs["seed_b"]])
    assert set(cluster[seeds]) <= {3, 4}
    # each pair: both seeds from the centre's own cluster, on opposite sides, distinct pairs
    centre_of = dict(zip(regions["region_id"], regions["centre"]))
    for a, b, region in zip(pairs["seed_a"], pairs["seed_b"], pairs["region_id"]):
        assert a != b and cluster[a] == cluster[b] == cluster[centre_of[region]]
    assert len({(min(a, b), max(a, b)) for a, b in zip(pairs["seed_a"], pairs["seed_b"])}) == len(pairs)


def test_pairs_have_make_seed_pairs_columns_and_boxes_in_map_coords() -> None:
    ds = _clusters([60, 60, 9])
    regions = find_knn_regions(ds, n_regions=10, k=10, density_dims=8, seed=1)
    pairs = make_knn_pairs(ds, regions, n_pairs=5, density_dims=8, seed=1)
    assert pairs.features == _pair_features(2)
    coords = np.asarray(ds["coords"])
    for row in pairs:
        a, b, axis = row["seed_a"], row["seed_b"], row["axis"]
        assert coords[a, axis] < coords[b, axis] or coords[a, axis] == coords[b, axis]
        lower, upper = np.asarray(row["region_lower"]), np.asarray(row["region_upper"])
        for seed_row in (a, b):  # the box is the members' bounding box, so both seeds (members) lie in it
            assert np.all(coords[seed_row] >= lower - 1e-6) and np.all(coords[seed_row] <= upper + 1e-6)
        assert row["source_a"] == row["source_b"] == "region"
    # the same seed gives the same pairs; regions are sparsest first
    again = make_knn_pairs(ds, find_knn_regions(ds, n_regions=10, k=10, density_dims=8, seed=1), n_pairs=5,
                           density_dims=8, seed=1)  # fmt: skip
    assert again.to_dict() == pairs.to_dict()
    assert list(regions["knn_distance"]) == sorted(regions["knn_distance"], reverse=True)


def test_suppression_keeps_centres_apart() -> None:
    ds = _clusters([50, 50, 50])
    regions = find_knn_regions(ds, k=5, suppress=5, density_dims=None)
    centres = set(regions["centre"])
    members = regions["members"]
    for row in members:  # no centre is among another centre's 5 nearest neighbours
        assert not (set(row[1:6]) & centres)
    assert len(regions) < len(ds) / 2 and len(find_knn_regions(ds, k=5, suppress=0, density_dims=None)) == len(ds)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k must be an integer >= 1"), ({"suppress": -1}, "suppress"), ({"density_dims": 0}, "density_dims"),
     ({"k": 500}, "needs more rows"), ({"column": "nope"}, "nope")],
)  # fmt: skip
def test_bad_arguments_raise_clear_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        find_knn_regions(_clusters([20, 20]), **kwargs)


def test_bad_pair_arguments_raise_clear_errors() -> None:
    ds = _clusters([20, 20])
    regions = find_knn_regions(ds, k=3)
    with pytest.raises(ValueError, match="pairing"):
        make_knn_pairs(ds, regions, n_pairs=2, pairing="far")
    with pytest.raises(ValueError, match="empty"):
        make_knn_pairs(ds, regions.select([]), n_pairs=2)
    with pytest.raises(ValueError, match="centre"):
        make_knn_pairs(ds, regions.remove_columns("centre"), n_pairs=2)


def test_config_selects_and_checks_the_selector() -> None:
    from embedsdg_hf.config import PipelineConfig

    config = PipelineConfig()
    assert config.selector == "rarity"  # the default the selection benchmark favours (README "Choosing seeds")
    assert config.knn_settings() == {"k": 20, "density_dims": None, "suppress": 0, "hood_k": 5, "pairing": "near"}
    assert PipelineConfig(selector="grid").selector == "grid"  # the paper's rule, by name
    bad_values = {"selector": "kde", "knn_text": "answer", "knn_k": 0, "knn_dims": 0, "knn_pairing": "far"}
    for key, value in bad_values.items():
        with pytest.raises(ValueError, match=key):
            PipelineConfig(**{key: value})


def test_function_defaults_are_the_config_defaults() -> None:
    """Calling knn_seed_pairs without settings selects what `embedsdg run` selects."""
    import inspect

    from embedsdg_hf.config import PipelineConfig

    params = inspect.signature(knn_seed_pairs).parameters
    assert {name: params[name].default for name in PipelineConfig().knn_settings()} == PipelineConfig().knn_settings()


@pytest.mark.parametrize("density_dims", [None, 8])
def test_density_space_places_new_points_in_the_pools_space_and_regions_record_it(density_dims) -> None:
    """New points go through the pool's own centring / PCA (coverage relies on it), and the regions dataset names the
    space its knn_distance was measured in."""
    from sklearn.decomposition import PCA

    from embedsdg_hf.space.knn_regions import density_space, fit_density_space

    ds = _clusters([60, 60, 9])
    vectors = np.asarray(ds["embedding"], dtype=np.float32)
    space = fit_density_space(vectors, density_dims, seed=1)
    assert np.array_equal(space.transform(vectors), density_space(vectors, density_dims, seed=1))
    new = vectors[:3] * 2.0
    if density_dims is None:  # centred on the pool's mean (not the new points'), unit length
        centred = new - vectors.mean(axis=0)
        expected = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    else:
        expected = PCA(n_components=density_dims, random_state=1).fit(vectors).transform(new)
    np.testing.assert_allclose(space.transform(new), expected, atol=1e-5)
    assert space.dims == (24 if density_dims is None else density_dims)
    with pytest.raises(ValueError, match="fitted on 24-D vectors"):
        space.transform(vectors[:, :5])
    regions = find_knn_regions(ds, n_regions=4, k=7, density_dims=density_dims, seed=1)
    assert regions["k"] == [7] * 4 and regions["density_dims"] == [density_dims] * 4 and regions["seed"] == [1] * 4


def test_selection_template() -> None:
    from embedsdg_hf.space.knn_regions import selection_template

    assert selection_template("{question}\n{answer}", "input") == "{question}"
    assert selection_template("{query}\n{response}", "full") == "{query}\n{response}"
    with pytest.raises(ValueError, match="knn_text='answer'"):
        selection_template("{question}\n{answer}", "answer")
