"""fit_reducer / add_coords: PCA, SVD, t-SNE; save/load; new points; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from embedsdg_hf import Reducer, add_coords, add_embeddings, fit_reducer


@pytest.fixture(scope="module")
def embedded(student, gsm8k_rows):
    return add_embeddings(Dataset.from_list(gsm8k_rows[:120]), model=student)


def test_pca_matches_sklearn_and_round_trips(embedded, tmp_path):
    from sklearn.decomposition import PCA

    x = np.asarray(embedded["embedding"], dtype=np.float32)
    reducer = fit_reducer(embedded, method="pca", n_components=3, seed=0)
    out = add_coords(embedded, reducer)
    assert out.features["coords"].length == 3
    np.testing.assert_allclose(
        np.asarray(out["coords"], dtype=np.float32), PCA(3, random_state=0).fit(x).transform(x), rtol=1e-3, atol=1e-4
    )
    loaded = Reducer.load(reducer.save(tmp_path / "reducer"))
    np.testing.assert_array_equal(loaded.transform(x[:10]), reducer.transform(x[:10]))
    assert loaded.is_linear and loaded.n_fit == 120
    labels = loaded.axis_labels()
    share = PCA(3, random_state=0).fit(x).explained_variance_ratio_[0]
    assert labels[0] == f"PCA 1 ({100 * share:.1f}% of variance)" and len(labels) == 3


def test_svd_and_max_samples_are_seeded(embedded):
    a = fit_reducer(embedded, method="svd", n_components=2, seed=1, max_samples=50)
    b = fit_reducer(embedded, method="svd", n_components=2, seed=1, max_samples=50)
    c = fit_reducer(embedded, method="svd", n_components=2, seed=2, max_samples=50)
    x = np.asarray(embedded["embedding"][:5], dtype=np.float32)
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    assert a.n_fit == 50 and not np.allclose(a.transform(x), c.transform(x))


def test_tsne_places_new_points_and_saves(embedded, tmp_path):
    reducer = fit_reducer(embedded.select(range(80)), method="tsne", n_components=2, seed=0)
    new = np.asarray(embedded["embedding"][80:90], dtype=np.float32)
    placed = reducer.transform(new)
    assert placed.shape == (10, 2) and np.isfinite(placed).all()
    loaded = Reducer.load(reducer.save(tmp_path / "tsne"))
    np.testing.assert_allclose(loaded.transform(new), placed, rtol=1e-5, atol=1e-5)


def test_tsne_rows_keep_their_fitted_coordinates(embedded, tmp_path):
    """add_coords must give the fitted rows the fitted map (transform would move them) and place only new rows."""
    fit = embedded.select(range(80))
    reducer = fit_reducer(fit, method="tsne", n_components=2, seed=0)
    fitted = np.array(reducer.tsne, dtype=np.float64)
    np.testing.assert_array_equal(reducer.fitted_coords, fitted.astype(np.float32))
    out = np.asarray(add_coords(embedded, reducer)["coords"], dtype=np.float32)
    np.testing.assert_array_equal(out[:80], fitted.astype(np.float32))  # the fitted map, exactly
    moved = np.linalg.norm(reducer.transform(np.asarray(fit["embedding"], dtype=np.float32)) - fitted, axis=1)
    assert moved.max() > 1e-3  # re-placing fitted rows would move them: what the fix avoids
    # transform() must not shift the fitted map (openTSNE centres it in place): one frame for old and new points
    np.testing.assert_array_equal(np.asarray(reducer.tsne), fitted)
    assert np.median(moved) < np.median(np.linalg.norm(fitted - fitted.mean(axis=0), axis=1)) / 4
    new = np.asarray(embedded["embedding"][80:], dtype=np.float32)
    np.testing.assert_array_equal(out[80:], reducer.transform(new))  # new rows: placed with transform
    loaded = Reducer.load(reducer.save(tmp_path / "tsne"))
    np.testing.assert_array_equal(loaded.project(np.asarray(embedded["embedding"], dtype=np.float32)), out)
    # with max_samples only the sampled rows are "fitted"
    sampled = fit_reducer(fit, method="tsne", n_components=2, seed=0, max_samples=60)
    assert len(sampled.fitted_coords) == 60


@pytest.mark.slow
def test_umap_is_seeded_keeps_fitted_rows_and_places_new_ones(embedded, tmp_path):
    pytest.importorskip("umap")
    fit = embedded.select(range(100))
    reducer = fit_reducer(fit, method="umap", n_components=2, seed=0)
    again = fit_reducer(fit, method="umap", n_components=2, seed=0)
    np.testing.assert_array_equal(reducer.fitted_coords, again.fitted_coords)
    out = np.asarray(add_coords(embedded, reducer)["coords"], dtype=np.float32)
    np.testing.assert_array_equal(out[:100], reducer.fitted_coords)
    new = np.asarray(embedded["embedding"][100:], dtype=np.float32)
    assert np.isfinite(out[100:]).all() and not reducer.is_linear
    loaded = Reducer.load(reducer.save(tmp_path / "umap"))
    np.testing.assert_allclose(loaded.transform(new[:5]), reducer.transform(new[:5]), atol=1e-4)


def test_umap_missing_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` raise ImportError
    ok = Dataset.from_dict({"embedding": np.random.default_rng(0).normal(size=(30, 4)).tolist()})
    with pytest.raises(ImportError, match=r'pip install "embedsdg-hf\[umap\]"'):
        fit_reducer(ok, method="umap")


def test_bad_input():
    same = Dataset.from_dict({"embedding": [[1.0, 2.0, 3.0]] * 5})
    with pytest.raises(ValueError, match="All 5 vectors in column 'embedding' are identical"):
        fit_reducer(same)
    nan = Dataset.from_dict({"embedding": [[1.0, 2.0, 3.0], [float("nan"), 0.0, 1.0], [0.0, 1.0, 1.0]]})
    with pytest.raises(ValueError, match=r"'embedding' has NaN or infinite values in 1 row\(s\) \(first: \[1\]\)"):
        fit_reducer(nan)
    ok = Dataset.from_dict({"embedding": np.random.default_rng(0).normal(size=(10, 4)).tolist()})
    with pytest.raises(ValueError, match=r"n_components must be an int in \[1, 3\]"):
        fit_reducer(ok, n_components=4)
    with pytest.raises(ValueError, match=r"method='umap2' is not supported"):
        fit_reducer(ok, method="umap2")
    with pytest.raises(ValueError, match=r"no column 'embeddings'.*Did you mean 'embedding'"):
        fit_reducer(ok, column="embeddings")
    with pytest.raises(ValueError, match="empty"):
        fit_reducer(ok.select([]))
    reducer = fit_reducer(ok, n_components=2)
    with pytest.raises(ValueError, match="holds vectors of length 3, expected 4"):
        reducer.transform([[1.0, 2.0, 3.0]])
