"""Decoding through the student from inputs_embeds (eq. 6): the splice is exact, padding is harmless."""

from __future__ import annotations

import pytest
import torch
from _pairs import interpolated_pairs
from datasets import Dataset

from embedsdg_hf import add_decoded_text
from embedsdg_hf.common.models import load_input_embeddings, load_student, load_tokenizer
from embedsdg_hf.generation.decode import build_copy_prompt, generate_from_embeddings


@pytest.fixture(scope="module")
def pool(gsm8k_rows):
    return Dataset.from_list(gsm8k_rows[:40])


def _input_ids_path(student, ids_list, max_new_tokens):
    model, tokenizer = load_student(student)
    texts = []
    for ids in ids_list:  # one at a time: no padding at all on this path
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
        new = out[0, len(ids) :].tolist()
        eos = [i for i, t in enumerate(new) if t == tokenizer.eos_token_id]
        texts.append(tokenizer.decode(new[: eos[0]] if eos else new, skip_special_tokens=True).strip())
    return texts


def test_splicing_a_seeds_own_embeddings_matches_the_input_ids_path(student, pool):
    tokenizer = load_tokenizer(student)
    examples = [pool[i]["question"] for i in range(4)]
    before, after = build_copy_prompt(student, examples)
    seeds = [pool[i]["question"] for i in (10, 11, 12)]  # different lengths: the batch is left-padded
    full = [before + tokenizer(s, add_special_tokens=False)["input_ids"] + after for s in seeds]
    assert len({len(ids) for ids in full}) == 3
    matrix = load_input_embeddings(student)
    spliced, finish = generate_from_embeddings(student, [matrix[torch.tensor(ids)] for ids in full], max_new_tokens=24)
    assert spliced == _input_ids_path(student, full, 24)
    assert all(text for text in spliced) and set(finish) <= {"stop", "length"}


def test_shared_prefix_cache_gives_the_same_greedy_tokens(student, pool):
    """The shared-prefix engine (prefix run once, suffixes after it) == left-padded full prompts, lengths mixed."""
    tokenizer = load_tokenizer(student)
    before, after = build_copy_prompt(student, [pool[i]["question"] for i in range(4)])
    seeds = [pool[i]["question"] for i in (10, 11, 12, 13)]
    suffixes = [tokenizer(s, add_special_tokens=False)["input_ids"] + after for s in seeds]
    assert len({len(ids) for ids in suffixes}) == 4
    matrix = load_input_embeddings(student)
    full = generate_from_embeddings(
        student, [matrix[torch.tensor(before + ids)] for ids in suffixes], max_new_tokens=24
    )
    shared = generate_from_embeddings(
        student, [matrix[torch.tensor(ids)] for ids in suffixes], max_new_tokens=24, prefix_ids=before
    )
    assert shared == full
    again = generate_from_embeddings(  # the prefix's keys/values are reused, never consumed: a second batch agrees
        student, [matrix[torch.tensor(ids)] for ids in suffixes[:2]], max_new_tokens=24, prefix_ids=before
    )
    assert again == (full[0][:2], full[1][:2])


def test_copy_prompt_uses_the_chat_template_and_listing_1(student):
    tokenizer = load_tokenizer(student)
    before, after = build_copy_prompt(student, ["A", "B", "C", "D"])
    text_before, text_after = tokenizer.decode(before), tokenizer.decode(after)
    assert text_before.startswith("<|im_start|>") and "Input: D\nOutput: D" in text_before
    assert text_before.rstrip().endswith("Input:")
    assert text_after.startswith("\nOutput:") and text_after.rstrip().endswith("<|im_start|>assistant")


@pytest.fixture(scope="module")
def pairs(student, pool):
    return interpolated_pairs(pool, student)


def test_add_decoded_text_on_real_pairs(student, pool, pairs):
    out = add_decoded_text(pairs, pool, model=student, max_new_tokens=24)
    assert out.column_names[: len(pairs.column_names)] == pairs.column_names
    assert all(isinstance(t, str) and t for t in out["decoded_text"])
    assert set(out["decoded_finish_reason"]) <= {"stop", "length"}
    literal = add_decoded_text(pairs, pool, model=student, max_new_tokens=24, rescale=False)
    assert literal._fingerprint != out._fingerprint
    shared = add_decoded_text(pairs, pool, model=student, max_new_tokens=24, shared_prefix=True)
    assert shared["decoded_text"] == out["decoded_text"]


def test_bad_input(student, pool, pairs):
    with pytest.raises(ValueError, match=r"run add_interpolations first\) has no column 'seed_input_ids_a'"):
        add_decoded_text(pairs.remove_columns("seed_input_ids_a"), pool, model=student)
    with pytest.raises(ValueError, match=r"n_examples must be in \[0, 40\]"):
        add_decoded_text(pairs, pool, model=student, n_examples=41)
    with pytest.raises(ValueError, match="names column 'query'"):
        add_decoded_text(pairs, pool, model=student, text_template="{query}")


def test_each_row_keeps_its_own_budget_whatever_the_batch(student, pool):
    """Per-row budgets: a row's text is what it gets decoded alone with its own budget, not the batch's longest."""
    tokenizer = load_tokenizer(student)
    before, after = build_copy_prompt(student, [pool[i]["question"] for i in range(4)])
    matrix = load_input_embeddings(student)
    ids = [before + tokenizer(pool[i]["question"], add_special_tokens=False)["input_ids"] + after for i in (10, 11)]
    seqs = [matrix[torch.tensor(row)] for row in ids]
    texts, finish = generate_from_embeddings(student, seqs, max_new_tokens=[5, 20])
    alone = [generate_from_embeddings(student, [seq], max_new_tokens=b) for seq, b in zip(seqs, (5, 20))]
    assert texts == [a[0][0] for a in alone] and finish == [a[1][0] for a in alone]
    assert finish[0] == "length" and len(tokenizer(texts[0])["input_ids"]) <= 5 < len(tokenizer(texts[1])["input_ids"])
    with pytest.raises(ValueError, match="once per sequence"):
        generate_from_embeddings(student, seqs, max_new_tokens=[5])


def test_decode_cache_reads_what_was_decoded_and_decodes_only_the_rest(student, pool, pairs, tmp_path, caplog):
    import json
    import logging

    from embedsdg_hf.generation.decode_cache import DecodeCache

    cache = tmp_path / "decode.jsonl"
    assert len(pairs) == 3
    first = add_decoded_text(pairs.select(range(2)), pool, model=student, max_new_tokens=12, cache=cache)
    assert len(cache.read_text().splitlines()) == 2
    # Mark the stored texts, so a later hit is visible (a fresh decode could not produce these).
    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    for i, line in enumerate(lines):
        line["decoded"]["text"] = f"CACHED-{i}"
    cache.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with caplog.at_level(logging.INFO):
        out = add_decoded_text(pairs, pool, model=student, max_new_tokens=12, cache=cache)
    assert out["decoded_text"][:2] == ["CACHED-0", "CACHED-1"]
    fresh = add_decoded_text(pairs, pool, model=student, max_new_tokens=12)
    assert out["decoded_text"][2] == fresh["decoded_text"][2] and fresh["decoded_text"][:2] == first["decoded_text"]
    assert "2 of 3 pairs from the decode cache" in caplog.text
    assert len(cache.read_text().splitlines()) == len(pairs)
    # Whatever changes the input or the budget is another key: nothing is read from the marked records.
    for changed in ({"max_new_tokens": 13}, {"rescale": False}, {"seed": 1}):
        kwargs = {"max_new_tokens": 12, **changed}
        again = add_decoded_text(pairs.select(range(2)), pool, model=student, cache=cache, **kwargs)
        assert not any(text.startswith("CACHED") for text in again["decoded_text"]), changed
    with DecodeCache(cache), pytest.raises(RuntimeError, match="in use by another writer"):
        add_decoded_text(pairs.select(range(1)), pool, model=student, max_new_tokens=12, cache=cache)
