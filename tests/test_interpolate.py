"""add_interpolations / interpolate_sequences: eq. 4-5, the PCA midpoint identity, provenance columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from embedsdg_hf import add_coords, add_embeddings, add_interpolations, fit_reducer, interpolate_sequences
from embedsdg_hf.common.models import load_input_embeddings, load_tokenizer


def _pairs(coords: np.ndarray, seeds: list[tuple[int, int]], pad: float = 0.0) -> Dataset:
    """Pairs as make_seed_pairs shapes them; each region is the bounding box of its two seeds (+ pad)."""
    lower = [np.minimum(coords[a], coords[b]) - pad for a, b in seeds]
    upper = [np.maximum(coords[a], coords[b]) + pad for a, b in seeds]
    return Dataset.from_dict(
        {
            "pair_id": list(range(len(seeds))),
            "seed_a": [a for a, _ in seeds],
            "seed_b": [b for _, b in seeds],
            "region_lower": [x.tolist() for x in lower],
            "region_upper": [x.tolist() for x in upper],
        }
    )


@pytest.fixture(scope="module")
def pool_and_reducer(student, gsm8k_rows):
    pool = add_embeddings(Dataset.from_list(gsm8k_rows[:80]), model=student, weights="mask")
    reducer = fit_reducer(pool, method="pca", n_components=2, seed=0)
    return add_coords(pool, reducer), reducer


def test_interpolation_of_pca_coords_is_exactly_the_midpoint(student, pool_and_reducer):
    pool, reducer = pool_and_reducer
    coords = np.asarray(pool["coords"], dtype=np.float64)
    seeds = [(0, 1), (5, 42), (13, 77), (60, 3)]
    pairs = add_interpolations(_pairs(coords, seeds), pool, model=student, reducer=reducer, weights="mask")
    midpoints = np.stack([(coords[a] + coords[b]) / 2 for a, b in seeds])
    spread = np.ptp(coords, axis=0).max()
    np.testing.assert_allclose(np.asarray(pairs["interp_coords"], dtype=np.float64), midpoints, atol=1e-5 * spread)
    assert all(pairs["interp_in_region"])  # the midpoint of a box's two points lies in the box
    # Same identity with the default length-normalised weights (their own embeddings and reducer).
    mean_pool = add_embeddings(pool, model=student, weights="mean")
    mean_reducer = fit_reducer(mean_pool, method="pca", n_components=2, seed=0)
    mean_coords = np.asarray(add_coords(mean_pool, mean_reducer)["coords"], dtype=np.float64)
    mean_pairs = add_interpolations(_pairs(mean_coords, seeds), pool, model=student, reducer=mean_reducer)
    np.testing.assert_allclose(
        np.asarray(mean_pairs["interp_coords"], dtype=np.float64),
        np.stack([(mean_coords[a] + mean_coords[b]) / 2 for a, b in seeds]),
        atol=1e-5 * np.ptp(mean_coords, axis=0).max(),
    )


def test_pairs_keep_token_ids_and_weights_not_sequences(student, pool_and_reducer):
    pool, reducer = pool_and_reducer
    pairs = add_interpolations(_pairs(np.asarray(pool["coords"]), [(2, 9)]), pool, model=student, reducer=reducer)
    row = pairs[0]
    tokenizer = load_tokenizer(student)
    assert row["seed_input_ids_a"] == tokenizer(pool[2]["question"] + "\n" + pool[2]["answer"])["input_ids"]
    assert row["seed_text_b"] == pool[9]["question"] + "\n" + pool[9]["answer"]
    assert row["interp_length"] == max(len(row["seed_input_ids_a"]), len(row["seed_input_ids_b"]))
    assert not any(isinstance(v, list) and v and isinstance(v[0], list) for v in row.values())  # no m x N matrices
    # The decoder rebuilds the average from ids + weights through the one shared function.
    avg = interpolate_sequences(
        student,
        row["seed_input_ids_a"],
        row["seed_token_weights_a"],
        row["seed_input_ids_b"],
        row["seed_token_weights_b"],
    )
    assert avg.shape == (row["interp_length"], 576)


def test_interpolate_sequences_pads_the_shorter_seed_with_zeros(student):
    matrix = load_input_embeddings(student)
    ids_a, w_a = [10, 20, 30, 40], [0.25] * 4
    ids_b, w_b = [50, 60], [0.5, 0.5]
    avg = interpolate_sequences(student, ids_a, w_a, ids_b, w_b)
    assert avg.shape == (4, matrix.shape[1])
    torch.testing.assert_close(avg[0], (matrix[10] * 0.25 + matrix[50] * 0.5) / 2)
    torch.testing.assert_close(avg[3], matrix[40] * 0.25 / 2)  # beyond the short seed: only the long one, halved


def test_point_outside_region_is_flagged(student, pool_and_reducer):
    pool, reducer = pool_and_reducer
    pairs = _pairs(np.asarray(pool["coords"]), [(0, 1)])
    far = pairs.map(lambda r: {"region_lower": [1e6, 1e6], "region_upper": [1e6 + 1, 1e6 + 1]})
    assert add_interpolations(far, pool, model=student, reducer=reducer, weights="mask")["interp_in_region"] == [False]


def test_bad_pairs_raise_clear_errors(student, pool_and_reducer):
    pool, reducer = pool_and_reducer
    pairs = _pairs(np.asarray(pool["coords"]), [(0, 1)])
    with pytest.raises(ValueError, match=r"Pairs column 'seed_b' has row 500, outside the seed pool's 80 rows"):
        add_interpolations(pairs.map(lambda r: {"seed_b": 500}), pool, model=student, reducer=reducer)
    with pytest.raises(ValueError, match=r"pairs dataset has no column 'seed_a'"):
        add_interpolations(pairs.remove_columns("seed_a"), pool, model=student, reducer=reducer)
    with pytest.raises(ValueError, match=r"names column 'problem'"):
        add_interpolations(pairs, pool, model=student, reducer=reducer, text_template="{problem}")
