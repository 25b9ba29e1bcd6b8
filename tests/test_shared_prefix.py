"""The shared-prefix engine against ``model.generate`` on whole left-padded prompts, with the real student.

In float32 both compute the same function to ~1e-6, so greedy tokens must be identical; in bf16 any two kernels
round differently (``generate`` itself changes tokens between batch sizes), which ``benchmarks/bench_decode.py``
measures instead.
"""

from __future__ import annotations

import pytest
import torch

from embedsdg_hf.common.models import cut_at_stop, load_student, load_tokenizer, stop_token_ids
from embedsdg_hf.generation.decode import build_copy_prompt
from embedsdg_hf.generation.shared_prefix import (
    ATTENTION,
    TailCache,
    _next_tokens,
    common_prefix_length,
    generate_after_prefix,
    nucleus,
)


@pytest.fixture(scope="module")
def fp32(student):
    model, tokenizer = load_student(student, dtype="float32")
    return model, tokenizer


@pytest.fixture(scope="module")
def copy_prompts(student, gsm8k_rows):
    """The real copy prompt P_d (4 GSM8K examples) and 5 real GSM8K questions of different lengths as inputs."""
    tokenizer = load_tokenizer(student)
    before, after = build_copy_prompt(student, [f"{r['question']}\n{r['answer']}" for r in gsm8k_rows[:4]])
    tails = [tokenizer(r["question"], add_special_tokens=False)["input_ids"] + after for r in gsm8k_rows[10:15]]
    assert len({len(t) for t in tails}) == 5
    return before, tails


def reference(model, tokenizer, prompts: list[list[int]], budgets: list[int]) -> list[list[int]]:
    """``model.generate`` on the whole prompts, left-padded in one batch, each row cut at its stop or budget."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    with torch.inference_mode():
        out = model.generate(
            ids, attention_mask=mask, max_new_tokens=max(budgets), do_sample=False, temperature=None, top_p=None,
            top_k=None, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    stops = stop_token_ids(model, tokenizer)
    return [cut_at_stop(row[width:][:budget], stops)[0] for row, budget in zip(out.tolist(), budgets)]


def tails_as_embeddings(model, tails):
    with torch.inference_mode():
        return [model.get_input_embeddings()(torch.tensor(t)) for t in tails]


def test_float32_greedy_tokens_equal_generate_on_the_whole_prompt(fp32, copy_prompts):
    model, tokenizer = fp32
    before, tails = copy_prompts
    budgets = [6, 40, 17, 40, 28]  # rows leave the batch at different steps
    expected = reference(model, tokenizer, [before + t for t in tails], budgets)
    tokens, finish = generate_after_prefix(
        model, before, tails_as_embeddings(model, tails), budgets, stops=stop_token_ids(model, tokenizer)
    )
    assert tokens == expected
    assert [len(t) for t in tokens] == [len(t) for t in expected] and all(len(t) <= b for t, b in zip(tokens, budgets))
    assert finish == ["length" if len(t) == b else "stop" for t, b in zip(tokens, budgets)]
    assert model.config._attn_implementation != ATTENTION  # restored


def test_a_row_does_not_depend_on_its_batch(fp32, copy_prompts):
    model, tokenizer = fp32
    before, tails = copy_prompts
    stops = stop_token_ids(model, tokenizer)
    embeds = tails_as_embeddings(model, tails)
    together, _ = generate_after_prefix(model, before, embeds, [24] * 5, stops=stops)
    alone = [generate_after_prefix(model, before, [e], [24], stops=stops)[0][0] for e in embeds[:2]]
    assert alone == together[:2]


def test_chat_prompts_with_a_short_or_no_shared_prefix(fp32, gsm8k_rows):
    """The in-process teacher's case: different chat prompts share only the template header, or nothing."""
    model, tokenizer = fp32
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": r["question"]}], add_generation_prompt=True,
                                      tokenize=False)
        for r in gsm8k_rows[20:23]
    ]  # fmt: skip
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    shared = common_prefix_length(ids)
    assert 0 < shared < min(map(len, ids))
    expected = reference(model, tokenizer, ids, [20] * 3)
    stops = stop_token_ids(model, tokenizer)
    for cut in (shared, 0):
        tails = tails_as_embeddings(model, [i[cut:] for i in ids])
        assert generate_after_prefix(model, ids[0][:cut], tails, [20] * 3, stops=stops)[0] == expected


def test_sampling_is_seeded_and_top_p_keeps_the_nucleus(fp32, copy_prompts):
    model, tokenizer = fp32
    before, tails = copy_prompts
    embeds = tails_as_embeddings(model, tails[:3])
    stops = stop_token_ids(model, tokenizer)

    def sample(seed, rows=embeds):
        return generate_after_prefix(model, before, rows, [12] * len(rows), stops=stops, do_sample=True,
                                     temperature=1.5, seed=seed)[0]  # fmt: skip

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    # each row draws from its own seed, whatever else is in the batch
    assert sample([5, 6, 7]) == [sample(s, [e])[0] for s, e in zip((5, 6, 7), embeds)] != sample([6, 6, 6])
    logits = torch.tensor([[0.0, 5.0, 4.9, -3.0], [2.0, 0.0, 0.0, 0.0]])
    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    drawn = {tuple(_next_tokens(logits, do_sample=True, temperature=1.0, top_p=0.5, generators=generators).tolist())
             for _ in range(50)}  # fmt: skip
    # row 0: token 1 alone is 52% of the mass, so a 0.5 nucleus keeps only it; row 1: token 0 holds 71%
    assert drawn == {(1, 0)}
    wide = {_next_tokens(logits, do_sample=True, temperature=1.0, top_p=0.99, generators=generators)[0].item()
            for _ in range(200)}  # fmt: skip
    assert wide == {1, 2}


def test_a_cached_tail_skips_its_prefill_and_gives_the_same_tokens(fp32, copy_prompts):
    model, tokenizer = fp32
    before, tails = copy_prompts
    embeds = tails_as_embeddings(model, tails[:3])
    stops = stop_token_ids(model, tokenizer)
    keys = [tuple(t) for t in tails[:3]]

    def sample(cache=None, seeds=(5, 6, 7)):
        return generate_after_prefix(model, before, embeds, [12] * 3, stops=stops, do_sample=True, temperature=1.5,
                                     seed=list(seeds), tail_cache=cache, tail_keys=keys)[0]  # fmt: skip

    cache = TailCache()
    first = sample(cache)
    assert cache.hits == 0 and len(cache.entries) == 3
    assert sample(cache) == first == sample() and cache.hits == 3  # reused: no prefill, the same tokens
    assert sample(cache, seeds=(8, 9, 10)) == sample(seeds=(8, 9, 10))  # a retry with other seeds, as best-of-n asks
    small = TailCache(max_bytes=20)
    small.put("a", [], [], torch.zeros(4))  # 16 bytes
    small.put("b", [], [], torch.zeros(4))  # the oldest goes to stay within the bound
    small.put("c", [], [], torch.zeros(8))  # larger than the bound: not kept
    assert list(small.entries) == ["b"] and small.bytes == 16


def test_the_nucleus_is_the_set_generates_top_p_warper_keeps():
    from transformers.generation.logits_process import TopPLogitsWarper

    torch.manual_seed(0)
    peaked = torch.randn(3, 49152) * 4  # a few tokens hold the mass: found among the top-k candidates
    flat = torch.randn(2, 49152) * 0.05  # the nucleus holds thousands of tokens: the whole sorted vocabulary
    masked = peaked.clone()
    masked[:, 100:] = float("-inf")  # a grammar allows 100 tokens
    for logits in (peaked, flat, masked):
        for top_p in (0.5, 0.9, 0.95):
            kept = TopPLogitsWarper(top_p)(None, logits.clone()) > float("-inf")
            for row, (weights, candidates) in enumerate(nucleus(logits.softmax(dim=-1), top_p)):
                ours, theirs = set(candidates[weights > 0].tolist()), set(kept[row].nonzero().flatten().tolist())
                # the same set; over a nucleus of ~46k tokens the two summation orders may round one boundary
                # token differently
                assert len(ours ^ theirs) <= (1 if logits is flat else 0), (top_p, row, len(ours), len(theirs))


def test_common_prefix_length_leaves_every_row_a_token():
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3], [4, 2, 3]]) == 0
    assert common_prefix_length([[7]]) == 0
    assert common_prefix_length([]) == 0
