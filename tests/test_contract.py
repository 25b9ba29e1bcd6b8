"""The transform contract, checked the same way for every ``add_*`` transform (HOUSE_STYLE.md, issue #2 §5):

- a second identical call reuses the cache (same fingerprint, same cache file, not recomputed);
- a changed parameter changes the fingerprint;
- ``num_proc=2`` gives the same result;
- input columns are untouched;
- a missing column raises ``ValueError`` naming it and listing the columns there are.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from datasets import load_from_disk

from embedsdg_hf import (
    add_coords,
    add_embeddings,
    add_grid_cells,
    add_interpolations,
    add_verification,
    find_sparse_regions,
    fit_grid,
    fit_reducer,
    make_seed_pairs,
)


@pytest.fixture(scope="module")
def stages(student, gsm8k_rows, tmp_path_factory):
    """Every stage's input as an on-disk (cache-backed) dataset, so `datasets` caching really applies."""
    from datasets import Dataset

    root = tmp_path_factory.mktemp("contract")

    def on_disk(ds, name):
        ds.save_to_disk(str(root / name))
        return load_from_disk(str(root / name))

    pool = on_disk(
        Dataset.from_list([{**r, "final": r["answer"].rsplit("####", 1)[1].strip()} for r in gsm8k_rows[:120]]), "pool"
    )
    embedded = on_disk(add_embeddings(pool, model=student), "embedded")
    reducer = fit_reducer(embedded, n_components=2, seed=0)
    reducer3 = fit_reducer(embedded, n_components=3, seed=0)
    with_coords = on_disk(add_coords(embedded, reducer), "coords")
    grid = fit_grid(with_coords, bins=6, threshold=4)
    regions = find_sparse_regions(with_coords, fit_grid(with_coords, bins=8, threshold=3))
    pairs = on_disk(make_seed_pairs(with_coords, regions, n_pairs=6, seed=0), "pairs")
    return {
        "pool": pool,
        "embedded": embedded,
        "coords": with_coords,
        "pairs": pairs,
        "reducer": reducer,
        "reducer3": reducer3,
        "grid": grid,
        "grid2": fit_grid(with_coords, bins=5, threshold=4),
    }


# name -> (input stage, call(ds, stages, variant, **kw), new columns, a column the transform needs)
TRANSFORMS = {
    "add_embeddings": (
        "pool",
        lambda ds, s, v, **kw: add_embeddings(ds, model="smollm2-135m-instruct", weights=("mean", "mask")[v], **kw),
        ["embedding", "num_tokens"],
        "answer",
    ),
    "add_coords": (
        "embedded",
        lambda ds, s, v, **kw: add_coords(ds, (s["reducer"], s["reducer3"])[v], **kw),
        ["coords"],
        "embedding",
    ),
    "add_grid_cells": (
        "coords",
        lambda ds, s, v, **kw: add_grid_cells(ds, (s["grid"], s["grid2"])[v], **kw),
        ["grid_cell"],
        "coords",
    ),
    "add_verification": (  # GSM8K rows whose final answer is read from their own "#### N" line
        "pool",
        lambda ds, s, v, **kw: add_verification(ds, kind=("gsm8k", "math")[v], final_column="final", **kw),
        ["verify_reason", "verify_detail"],
        "answer",
    ),
    "add_interpolations": (
        "pairs",
        lambda ds, s, v, **kw: add_interpolations(
            ds, s["pool"], model="smollm2-135m-instruct", reducer=s["reducer"], weights=("mean", "mask")[v], **kw
        ),
        ["interp_coords", "interp_in_region", "seed_input_ids_a", "seed_token_weights_b"],
        "seed_a",
    ),
}


def _columns(ds, names):
    return {name: ds.with_format("numpy")[:][name] for name in names}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transform_contract(name, stages, student):
    stage, call, new_columns, needed = TRANSFORMS[name]
    ds = stages[stage]
    first = call(ds, stages, 0)
    assert first.cache_files, f"{name} wrote no cache file for an on-disk input"
    cache_file = first.cache_files[0]["filename"]
    stamp = os.stat(cache_file).st_mtime_ns

    second = call(ds, stages, 0)
    assert second._fingerprint == first._fingerprint
    assert second.cache_files[0]["filename"] == cache_file
    assert os.stat(cache_file).st_mtime_ns == stamp, "the second call recomputed instead of reusing the cache"

    changed = call(ds, stages, 1)
    assert changed._fingerprint != first._fingerprint

    parallel = call(ds, stages, 0, num_proc=2, load_from_cache_file=False)
    for column in new_columns:
        a, b = first.with_format("numpy")[:][column], parallel.with_format("numpy")[:][column]
        if a.dtype == object:
            assert all(np.array_equal(x, y) for x, y in zip(a, b)), column
        else:
            np.testing.assert_array_equal(a, b, err_msg=column)

    for column in ds.column_names:  # input columns untouched (values and types)
        assert first.features[column] == ds.features[column]
        assert first.with_format("arrow")[column].equals(ds.with_format("arrow")[column]), column
    assert set(new_columns) <= set(first.column_names)

    broken = ds.remove_columns(needed)
    with pytest.raises(ValueError, match=rf"'{needed}'.*Columns present: \[") as err:
        call(broken, stages, 0)
    assert str(broken.column_names) in str(err.value)
