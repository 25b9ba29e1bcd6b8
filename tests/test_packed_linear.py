"""Packed bf16 linear layers (generation/packed_linear.py) with the real built-in student: the same numbers, the
same tokens, and the model's own layers back afterwards."""

from __future__ import annotations

import contextlib

import pytest
import torch

from embedsdg_hf.common.models import load_student, load_tokenizer
from embedsdg_hf.generation import shared_prefix
from embedsdg_hf.generation.packed_linear import _supported, packed_linears

pytestmark = pytest.mark.skipif(not _supported(), reason="this torch has no oneDNN bf16 linear")


@pytest.fixture(scope="module")
def bf16(student):
    model, tokenizer = load_student(student)
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    return model, tokenizer


def linears(model):
    return [m for m in model.modules() if type(m) is torch.nn.Linear]


def test_logits_are_the_same_and_the_layers_come_back(bf16, gsm8k_rows):
    model, tokenizer = bf16
    ids = torch.tensor([tokenizer(gsm8k_rows[0]["question"])["input_ids"]])
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        with packed_linears(model) as swapped:
            assert swapped == len(linears(model)) > 0  # every projection and the LM head
            assert all("forward" in m.__dict__ for m in linears(model))
            packed = model(input_ids=ids).logits
    assert torch.equal(plain, packed)
    assert not any("forward" in m.__dict__ for m in linears(model))


def test_layers_come_back_after_an_error(bf16):
    model, _ = bf16
    with pytest.raises(RuntimeError, match="boom"), packed_linears(model):
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in linears(model))


def test_a_nested_context_leaves_the_layers_to_the_outer_one(bf16):
    model, _ = bf16
    with packed_linears(model) as outer:
        with packed_linears(model) as inner:
            assert inner == 0 and all("forward" in m.__dict__ for m in linears(model))
        assert outer > 0 and all("forward" in m.__dict__ for m in linears(model))  # still packed
    assert not any("forward" in m.__dict__ for m in linears(model))


def test_a_float32_model_is_left_alone(student):
    model, _ = load_student(student, dtype="float32")
    with packed_linears(model) as swapped:
        assert swapped == 0


def test_generation_gives_the_same_tokens(bf16, gsm8k_rows, monkeypatch):
    """Greedy and sampled rows of the decode engine, with and without packing."""
    model, _ = bf16
    tokenizer = load_tokenizer(model.name_or_path)
    prefix = tokenizer("Solve the problem step by step.\n", add_special_tokens=False)["input_ids"]
    tails = [tokenizer(r["question"], add_special_tokens=False)["input_ids"] for r in gsm8k_rows[:3]]
    with torch.inference_mode():
        embeds = [model.get_input_embeddings()(torch.tensor(t)) for t in tails]

    def run(do_sample):
        return shared_prefix.generate_after_prefix(
            model, prefix, embeds, [24, 16, 24], stops={tokenizer.eos_token_id}, do_sample=do_sample,
            temperature=0.8, top_p=0.95, seed=[1, 2, 3],
        )  # fmt: skip

    packed = run(False), run(True)
    monkeypatch.setattr(shared_prefix, "packed_linears", lambda model: contextlib.nullcontext(0))
    assert (run(False), run(True)) == packed
