"""density_vs_accuracy on constructed data where the answer is known, and its figure."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from embedsdg_hf.analysis.density import density_vs_accuracy
from embedsdg_hf.plots import plot_density_accuracy

CENTRES = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10], [10, 10, 10]], dtype=np.float64)
POOL_COUNTS = [20, 40, 160, 640, 300]
ACCURACY = [0.1, 0.3, 0.6, 0.9, None]  # the last cluster gets too few scored examples to be scored


def _embed(points: np.ndarray) -> list:
    """3-D points lifted into 6-D (zeros on the extra axes, so a 3-D PCA keeps the whole layout)."""
    return np.hstack([points, np.zeros((len(points), 3))]).astype(np.float32).tolist()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    clusters = [c + 0.05 * rng.normal(size=(n, 3)) for c, n in zip(CENTRES, POOL_COUNTS)]
    pool = np.vstack(clusters)
    scored, correct = [], []
    for points, acc in zip(clusters, ACCURACY):  # scored examples sit on pool points of their cluster
        n = 2 if acc is None else 20
        scored.append(points[:n])
        correct += [True] * n if acc is None else [i < round(acc * n) for i in range(n)]
    scored.append(np.array([[100.0, 100.0, 100.0]]))  # far outside the pool's bounds
    correct.append(True)
    return (
        Dataset.from_dict({"embedding": _embed(pool)}),
        Dataset.from_dict({"embedding": _embed(np.vstack(scored)), "correct": correct}),
    )


def test_known_positive_correlation_and_exclusions_are_counted(data, tmp_path):
    pool, scored = data
    regions, stats = density_vs_accuracy(pool, scored, model="unused: embeddings given", bins=3, min_examples=5)
    assert stats["n_regions"] == 4
    assert sorted(regions["pool_count"]) == [20, 40, 160, 640]
    order = np.argsort(regions["pool_count"])
    np.testing.assert_allclose(np.asarray(regions["accuracy"])[order], [0.1, 0.3, 0.6, 0.9])
    assert stats["spearman_rho"] == pytest.approx(1.0) and stats["pearson_r"] > 0.8
    assert stats["excluded_regions"] == 1 and stats["excluded_examples"] == 2 and stats["outside_bounds"] == 1
    png = plot_density_accuracy(regions, stats, tmp_path / "density_accuracy.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bad_input(data):
    pool, scored = data
    with pytest.raises(ValueError, match=r"no column 'correct'"):
        density_vs_accuracy(pool, scored.remove_columns("correct"), model="unused")
    with pytest.raises(ValueError, match="min_examples must be >= 1"):
        density_vs_accuracy(pool, scored, model="unused", min_examples=0)


def test_continuous_measure_per_region_and_missing_values_are_counted(data, tmp_path):
    from embedsdg_hf.analysis.density import density_vs_measure

    pool, scored = data
    # answer loss falls with density: 2.0, 1.5, 1.0, 0.5 per scored cluster; every other row of the second cluster
    # has no score (None) and must be left out, not counted as 0
    losses, unscored = [], 0
    for i, n in enumerate([20, 20, 20, 20, 2]):
        for j in range(n):
            missing = i == 1 and j % 2 == 1
            unscored += missing
            losses.append(None if missing else [2.0, 1.5, 1.0, 0.5, 9.0][i])
    losses.append(3.0)  # the row outside the pool's bounds
    scored = scored.add_column("answer_loss", losses)
    regions, stats = density_vs_measure(
        pool, scored, model="unused", measure_column="answer_loss", bins=3, min_examples=5
    )
    order = np.argsort(regions["pool_count"])
    np.testing.assert_allclose(np.asarray(regions["mean_answer_loss"])[order], [2.0, 1.5, 1.0, 0.5])
    assert list(np.asarray(regions["n_scored"])[order]) == [20, 10, 20, 20]
    assert stats["unscored"] == unscored == 10 and stats["measure"] == "mean_answer_loss"
    assert stats["spearman_rho"] == pytest.approx(-1.0)
    png = plot_density_accuracy(regions, stats, tmp_path / "density_loss.png", points="regions")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="has no value"):
        density_vs_measure(pool, scored.map(lambda r: {"answer_loss": None}), model="u", measure_column="answer_loss")
