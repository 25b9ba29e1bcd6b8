"""Tests for deduplication: exact and near duplicates within a generated set and against the seed pool."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from embedsdg_hf.quality.dedup import add_duplicate_flags, filter_unique
from embedsdg_hf.space.neighbors import best_match, first_near_duplicates, unit_rows


def _one_word_changed(question: str) -> str:
    words = question.split()
    words[len(words) // 2] = "banana"
    return " ".join(words)


@pytest.fixture(scope="module")
def pool(gsm8k_rows) -> datasets.Dataset:
    return datasets.Dataset.from_list([{"question": r["question"], "answer": r["answer"]} for r in gsm8k_rows[:150]])


@pytest.fixture(scope="module")
def flagged(gsm8k_rows, pool, student):
    """Generated rows: 4 new real questions, then planted duplicates of the pool and of earlier generated rows."""
    fresh = [r["question"] for r in gsm8k_rows[150:154]]
    questions = [
        fresh[0],  # 0 new
        pool[3]["question"].upper().replace(".", " . "),  # 1 exact duplicate of pool row 3 (case, spacing, punct)
        fresh[1],  # 2 new
        _one_word_changed(pool[10]["question"]),  # 3 near duplicate of pool row 10
        fresh[0] + "  ",  # 4 exact duplicate of generated row 0
        _one_word_changed(fresh[1]),  # 5 near duplicate of generated row 2
        fresh[2],  # 6 new
        fresh[3],  # 7 new
    ]
    ds = datasets.Dataset.from_dict({"question": questions, "answer": ["x"] * len(questions)})
    return add_duplicate_flags(ds, pool, model=student)


def test_planted_duplicates_are_caught_and_point_at_the_first(flagged) -> None:
    got = [(r["duplicate_reason"], r["duplicate_source"], r["duplicate_row"]) for r in flagged]
    assert got == [
        (None, None, None),
        ("exact_duplicate", "pool", 3),
        (None, None, None),
        ("near_duplicate", "pool", 10),
        ("exact_duplicate", "synthetic", 0),
        ("near_duplicate", "synthetic", 2),
        (None, None, None),
        (None, None, None),
    ]
    assert flagged[1]["duplicate_score"] == 1.0
    assert 0.95 <= flagged[3]["duplicate_score"] < 1.0
    assert [r["question"] for r in flagged.filter(filter_unique)] == [flagged[i]["question"] for i in (0, 2, 6, 7)]


def test_near_duplicate_recall_on_one_word_edits(pool, student) -> None:
    """Every pool question with its middle word replaced: measured 129/150 caught at 0.95, all at the right row."""
    ds = datasets.Dataset.from_dict({"question": [_one_word_changed(q) for q in pool["question"]]})
    out = add_duplicate_flags(ds, pool, model=student)
    caught = [i for i, r in enumerate(out) if r["duplicate_reason"] == "near_duplicate"]
    assert len(caught) >= 0.8 * len(ds)
    assert all(out[i]["duplicate_source"] == "pool" and out[i]["duplicate_row"] == i for i in caught)


def test_new_real_questions_are_not_flagged(gsm8k_rows, pool, student) -> None:
    """Negatives: 40 real GSM8K questions that are not in the pool and not copies of each other."""
    ds = datasets.Dataset.from_dict({"question": [r["question"] for r in gsm8k_rows[150:190]]})
    out = add_duplicate_flags(ds, pool, model=student)
    assert out.with_format("arrow")["duplicate_reason"].null_count == len(ds)
    scores = np.array(out["duplicate_score"], dtype=float)
    assert np.all(np.isnan(scores))


def test_threshold_none_checks_exact_only(gsm8k_rows, pool) -> None:
    ds = datasets.Dataset.from_dict(
        {"question": [_one_word_changed(pool[0]["question"]), pool[1]["question"].lower()]}
    )
    out = add_duplicate_flags(ds, pool, threshold=None)  # no model needed
    assert out["duplicate_reason"] == [None, "exact_duplicate"]
    assert "question_embedding" not in out.column_names


def test_input_columns_untouched_and_embedding_column_added(flagged) -> None:
    assert flagged.column_names[:2] == ["question", "answer"]
    assert len(flagged[0]["question_embedding"]) == 576


def test_errors_name_the_problem(pool, student) -> None:
    ds = datasets.Dataset.from_dict({"text": ["a"]})
    with pytest.raises(ValueError, match="question"):
        add_duplicate_flags(ds, pool, model=student)
    ok = datasets.Dataset.from_dict({"question": ["a"]})
    with pytest.raises(ValueError, match="cosine in \\[-1, 1\\]"):
        add_duplicate_flags(ok, pool, model=student, threshold=1.5)
    with pytest.raises(ValueError, match="no model was given"):
        add_duplicate_flags(ok, pool)


def test_first_near_duplicates_is_keep_first_greedy_and_block_independent() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((300, 32)).astype(np.float32)
    planted = base[rng.choice(300, 80)] + 0.01 * rng.standard_normal((80, 32)).astype(np.float32)
    vectors = unit_rows(np.concatenate([base, planted])[rng.permutation(380)])
    whole = first_near_duplicates(vectors, threshold=0.99, block_size=4096)
    blocked = first_near_duplicates(vectors, threshold=0.99, block_size=7)
    np.testing.assert_array_equal(whole[0], blocked[0])
    assert (whole[0] >= 0).sum() == 80
    # every flagged row points at an earlier kept row, and no two kept rows are duplicates
    kept = whole[0] < 0
    assert np.all(whole[0][~kept] < np.flatnonzero(~kept))
    assert np.all(kept[whole[0][~kept]])
    similar = vectors[kept] @ vectors[kept].T
    assert (np.triu(similar, 1) >= 0.99).sum() == 0


def test_chain_keeps_the_far_end() -> None:
    """A ~ B ~ C but A !~ C: B goes (it repeats A), C stays (the only kept row before it is A)."""
    angles = np.radians([0.0, 15.0, 30.0])
    vectors = unit_rows(np.stack([np.cos(angles), np.sin(angles)], axis=1))
    duplicate_of, _ = first_near_duplicates(vectors, threshold=np.cos(np.radians(20)))
    assert duplicate_of.tolist() == [-1, 0, -1]


def test_best_match_streams_the_reference_in_batches() -> None:
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((1000, 16)).astype(np.float32)
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    ds = datasets.Dataset.from_dict({"v": reference})
    center = reference.mean(0)
    q = unit_rows(queries, center)
    small = best_match(q, ds, column="v", center=center, batch_size=37)
    exact = q @ unit_rows(reference, center).T
    np.testing.assert_array_equal(small[1], exact.argmax(1))
    np.testing.assert_allclose(small[0], exact.max(1), rtol=1e-5)


def test_empty_dataset_gets_the_columns(pool, student) -> None:
    empty = datasets.Dataset.from_dict(
        {"question": []}, features=datasets.Features({"question": datasets.Value("string")})
    )
    out = add_duplicate_flags(empty, pool, model=student)
    assert len(out) == 0 and {"duplicate_reason", "duplicate_row"} <= set(out.column_names)


@pytest.mark.parametrize("dim", [48, 576])  # 576 (the student's width): candidates searched in 192 PCA dimensions
def test_ivf_search_finds_the_planted_duplicates_the_exact_search_finds(dim) -> None:
    """The approximate (IVF) path, forced on at a small size: same rows for planted near copies, scores ~fp16."""
    rng = np.random.default_rng(2)
    reference = rng.standard_normal((8000, dim)).astype(np.float32)
    source = rng.choice(8000, 300, replace=False)
    near = reference[source] + 0.2 * rng.standard_normal((300, dim))
    queries = np.concatenate([near, rng.standard_normal((200, dim))])
    ds = datasets.Dataset.from_dict({"v": reference})
    q = unit_rows(queries.astype(np.float32))
    exact = best_match(q, ds, column="v", batch_size=3000, approximate=False)
    approx = best_match(q, ds, column="v", batch_size=3000, approximate=True)
    np.testing.assert_array_equal(exact[1][:300], source)
    assert (approx[1][:300] == source).mean() >= 0.99
    np.testing.assert_allclose(approx[0][:300], exact[0][:300], atol=2e-3)

    vectors = unit_rows(np.concatenate([reference, reference[source] + 0.05 * rng.standard_normal((300, dim))]))
    flat = first_near_duplicates(vectors.astype(np.float32), threshold=0.95, block_size=1000, approximate=False)
    ivf = first_near_duplicates(vectors.astype(np.float32), threshold=0.95, block_size=1000, approximate=True)
    assert (flat[0][8000:] == source).all()
    assert (ivf[0] == flat[0]).mean() >= 0.99
