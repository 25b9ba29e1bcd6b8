"""add_embeddings on real GSM8K rows with the real SmolLM2 student."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from embedsdg_hf import add_embeddings
from embedsdg_hf.common.models import load_input_embeddings, load_student, load_tokenizer


def _texts(ds):
    return [q + "\n" + a for q, a in zip(ds["question"], ds["answer"])]


@pytest.mark.parametrize("weights", ["mean", "mask"])
def test_pooled_vector_is_weighted_sum_of_token_embeddings(student, gsm8k_small, weights):
    out = add_embeddings(gsm8k_small, model=student, weights=weights)
    assert out.features["embedding"].length == 576
    matrix = load_input_embeddings(student)
    tokenizer = load_tokenizer(student)
    for i in (0, 7, 59):
        ids = tokenizer(_texts(gsm8k_small)[i])["input_ids"]
        rows = matrix[torch.tensor(ids)]
        expected = rows.mean(0) if weights == "mean" else rows.sum(0)
        np.testing.assert_allclose(out[i]["embedding"], expected.numpy(), rtol=1e-4, atol=1e-5)
        assert out[i]["num_tokens"] == len(ids)


def test_attention_weights_come_from_a_real_forward_pass(student, gsm8k_small):
    small = gsm8k_small.select(range(6))
    out = add_embeddings(small, model=student, weights="attention")
    model, tokenizer = load_student(student, attn_implementation="eager")
    matrix = load_input_embeddings(student)
    # Recompute one row alone (no padding) and compare: batching and padding must not change the weights.
    text = _texts(small)[3]
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        attention = model(input_ids=ids, output_attentions=True).attentions[-1][0].float().mean(0)
    m = ids.shape[1]
    received = attention.sum(0) / torch.arange(m, 0, -1, dtype=torch.float32)
    weights = received / received.sum()
    expected = (matrix[ids[0]] * weights[:, None]).sum(0)
    np.testing.assert_allclose(out[3]["embedding"], expected.numpy(), rtol=1e-3, atol=1e-5)
    mean = add_embeddings(small, model=student)
    assert not np.allclose(out[3]["embedding"], mean[3]["embedding"], atol=1e-4)


def test_long_texts_are_truncated_with_a_counting_warning(student, gsm8k_small):
    with pytest.warns(UserWarning, match=r"60 of 60 texts are longer than max_length=16"):
        out = add_embeddings(gsm8k_small, model=student, max_length=16)
    tokenizer = load_tokenizer(student)
    ids = tokenizer(_texts(gsm8k_small)[0])["input_ids"][:16]
    expected = load_input_embeddings(student)[torch.tensor(ids)].mean(0)
    np.testing.assert_allclose(out[0]["embedding"], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert out[0]["num_tokens"] > 16  # the untruncated count is kept


def test_custom_template_and_dataset_dict(student, gsm8k_rows):
    dd = DatasetDict(
        {
            "train": Dataset.from_list(gsm8k_rows[:5]),
            "test": Dataset.from_list(gsm8k_rows[5:8]),
        }
    )
    out = add_embeddings(dd, model=student, text_template="Q: {question}")
    assert set(out) == {"train", "test"} and len(out["test"]) == 3
    assert out["train"].column_names == ["question", "answer", "embedding", "num_tokens"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text_template": "{question}\n{solution}"}, r"'solution'.*Columns present: \['question', 'answer'\]"),
        ({"text_template": "no fields"}, "names no column"),
        ({"text_template": "{}"}, "positional field"),
        ({"weights": "sum"}, r"weights='sum' is not supported; choose one of \['mask', 'mean', 'attention'\]"),
        ({"max_length": 0}, "max_length must be a positive int"),
    ],
)
def test_bad_arguments_raise_clear_errors(student, gsm8k_small, kwargs, match):
    with pytest.raises(ValueError, match=match):
        add_embeddings(gsm8k_small, model=student, **kwargs)


def test_empty_dataset_and_bad_model_spec(student):
    empty = Dataset.from_dict({"question": [], "answer": []})
    with pytest.raises(ValueError, match=r"empty \(0 rows\)"):
        add_embeddings(empty, model=student)
    with pytest.raises(ValueError, match="does not exist"):
        add_embeddings(Dataset.from_dict({"question": ["q"], "answer": ["a"]}), model="./no/such/model")


@pytest.mark.slow
def test_attention_weights_sharded_over_two_processes_equal_one_process(student, gsm8k_rows, tmp_path, monkeypatch):
    """Two CPU processes (``torchrun``, which ``accelerate launch`` runs on GPUs; gloo here): each rank embeds half
    the batches, results gathered in order, the same vectors as one process."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from _servers import free_port
    from datasets import Dataset

    from embedsdg_hf.space import embed

    rows = [{"question": r["question"], "answer": r["answer"]} for r in gsm8k_rows[:10]]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(tests.parent), "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    done = subprocess.run(
        [*launch, str(tests / "_embed_worker.py"), str(data), str(tmp_path / "two.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world=2" in done.stdout
    monkeypatch.setattr(embed, "ATTENTION_BATCH_TOKENS", 600)  # the worker's batches
    one = add_embeddings(Dataset.from_list(rows), model=student, weights="attention")
    np.testing.assert_allclose(np.load(tmp_path / "two.npy"), np.asarray(one["embedding"]), rtol=1e-5, atol=1e-6)
