"""Streaming and DatasetDict (common/splits.py): every row-wise transform takes an IterableDataset and gives the
values the in-memory Dataset gets; every transform takes a DatasetDict split by split, or says why it cannot."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from embedsdg_hf import (
    add_contamination_flags,
    add_coords,
    add_decoded_text,
    add_duplicate_flags,
    add_embeddings,
    add_grid_cells,
    add_interpolations,
    add_quality_reason,
    add_self_consistency,
    add_verification,
    find_sparse_regions,
    fit_grid,
    fit_reducer,
    make_seed_pairs,
    make_synthetic_dataset,
)
from embedsdg_hf.quality.gates import apply_gate

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def rows(gsm8k_rows) -> list[dict]:
    """24 real GSM8K rows with their final answer as its own column."""
    return [{**row, "final_answer": row["answer"].rsplit("####", 1)[1].strip()} for row in gsm8k_rows[:24]]


@pytest.fixture(scope="module")
def space(rows, student):
    """The in-memory results every streamed run is compared with."""
    ds = datasets.Dataset.from_list(rows)
    embedded = add_embeddings(ds, model=student)
    reducer = fit_reducer(embedded, n_components=2, seed=0)
    coords = add_coords(embedded, reducer)
    grid = fit_grid(coords, bins=4, threshold=2)
    return {"ds": ds, "embedded": embedded, "reducer": reducer, "coords": coords, "grid": grid}


def _stream(ds: datasets.Dataset) -> datasets.IterableDataset:
    return ds.to_iterable_dataset(num_shards=2)


def _streamed_columns(ds, names):
    assert isinstance(ds, datasets.IterableDataset)
    got = list(ds)
    return {name: [row[name] for row in got] for name in names}


def _row_wise(space):
    """name -> (input, call, new columns): every transform that works row by row."""
    return {
        "add_embeddings": (space["ds"], lambda ds, **kw: add_embeddings(ds, model=MODEL, **kw), ["embedding"]),
        "add_coords": (space["embedded"], lambda ds, **kw: add_coords(ds, space["reducer"], **kw), ["coords"]),
        "add_grid_cells": (space["coords"], lambda ds, **kw: add_grid_cells(ds, space["grid"], **kw), ["grid_cell"]),
        "add_verification": (space["ds"], add_verification, ["verify_reason", "verify_detail"]),
        "add_quality_reason": (
            space["ds"].add_column("verify_reason", [None, "bad_arithmetic"] * 12),
            add_quality_reason,
            ["quality_reason"],
        ),
    }


@pytest.mark.parametrize(
    "name", ["add_embeddings", "add_coords", "add_grid_cells", "add_verification", "add_quality_reason"]
)
def test_row_wise_transforms_stream(name, space):
    ds, call, new_columns = _row_wise(space)[name]
    expected = call(ds)
    streamed = call(_stream(ds), batch_size=5)
    assert isinstance(streamed, datasets.IterableDataset)
    for column in new_columns:  # declared before a row is read
        assert streamed.features[column] == expected.features[column], column
    got = _streamed_columns(streamed, new_columns)
    for column in new_columns:
        _assert_same(got[column], expected[column][:], column)


def _assert_same(got: list, want: list, column: str) -> None:
    if column in ("embedding", "coords"):  # float32 vectors: batch sizes differ, so allow rounding
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6, err_msg=column)
    else:
        assert got == want, column


@pytest.mark.parametrize(
    "name", ["add_embeddings", "add_coords", "add_grid_cells", "add_verification", "add_quality_reason"]
)
def test_row_wise_transforms_take_a_dataset_dict_per_split(name, space):
    ds, call, new_columns = _row_wise(space)[name]
    splits = datasets.DatasetDict(train=ds.select(range(16)), test=ds.select(range(16, 24)))
    out = call(splits)
    assert isinstance(out, datasets.DatasetDict) and list(out) == ["train", "test"]
    whole = call(ds)
    for column in new_columns:
        _assert_same(out["train"][column][:] + out["test"][column][:], whole[column][:], column)
    streamed = call(datasets.IterableDatasetDict({k: _stream(v) for k, v in splits.items()}))
    assert isinstance(streamed, datasets.IterableDatasetDict)
    assert len(list(streamed["test"])) == 8


def test_a_json_stream_with_unknown_features_is_resolved(rows, tmp_path, student):
    """load_dataset(..., streaming=True): features are resolved from the first rows, then checked and extended."""
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows[:6]))
    stream = datasets.load_dataset("json", data_files=str(path), split="train", streaming=True)
    out = add_verification(add_embeddings(stream, model=student, max_length=32))
    assert {"embedding", "num_tokens", "verify_reason"} <= set(out.column_names)
    got = list(out)
    assert len(got) == 6 and len(got[0]["embedding"]) == 576 and got[0]["num_tokens"] > 32
    with pytest.raises(ValueError, match=r"'solution'.*Columns present: \["):
        add_verification(stream, answer_column="solution")


def test_dataset_only_map_arguments_are_refused_for_a_stream(space):
    with pytest.raises(TypeError, match=r"add_verification: 'num_proc' cannot be used with an IterableDataset"):
        add_verification(_stream(space["ds"]), num_proc=2)


def test_whole_table_steps_say_why_they_cannot_stream(space):
    ds = space["ds"]
    stream, splits = _stream(ds), datasets.DatasetDict(train=ds)
    refused = {
        "add_duplicate_flags": lambda d: add_duplicate_flags(d, model=MODEL),
        "add_contamination_flags": lambda d: add_contamination_flags(d, {"gsm8k": ds}, model=MODEL),
        "add_self_consistency": lambda d: add_self_consistency(d, None),
        "add_interpolations": lambda d: add_interpolations(d, ds, model=MODEL),
        "add_decoded_text": lambda d: add_decoded_text(d, ds, model=MODEL),
        "apply_gate": lambda d: apply_gate(d, add_verification),
    }
    for name, call in refused.items():
        why = rf"^{name} cannot take an IterableDataset \(streaming\): \w.*from_generator"
        with pytest.raises(TypeError, match=why):
            call(stream)
    whole = {
        "fit_reducer": lambda d: fit_reducer(d),
        "fit_grid": lambda d: fit_grid(d, bins=4),
        "find_sparse_regions": lambda d: find_sparse_regions(d, space["grid"]),
        "make_seed_pairs": lambda d: make_seed_pairs(d, ds),
        "make_synthetic_dataset": lambda d: make_synthetic_dataset(d, teacher=None),
    }
    for name, call in whole.items():
        with pytest.raises(TypeError, match=rf"^{name} takes one Dataset, not a DatasetDict: .*\['train'\]"):
            call(splits)
        with pytest.raises(TypeError, match=rf"^{name} cannot take an IterableDataset \(streaming\)"):
            call(stream)


def test_a_gate_runs_per_split(space):
    splits = datasets.DatasetDict(train=space["ds"].select(range(16)), test=space["ds"].select(range(16, 24)))
    out = apply_gate(splits, add_verification)
    assert isinstance(out, datasets.DatasetDict)
    whole = add_verification(space["ds"])["verify_reason"][:]
    assert out["train"]["verify_reason"][:] + out["test"]["verify_reason"][:] == whole
    by_keyword = add_verification(ds=splits)  # the dataset passed by name takes the same path
    assert by_keyword["test"]["verify_reason"][:] == out["test"]["verify_reason"][:]
    with pytest.raises(TypeError, match=r"make_synthetic_dataset takes one Dataset.*pool\['train'\]"):
        make_synthetic_dataset(pool=splits, teacher=None)
