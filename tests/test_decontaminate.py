"""Tests for decontamination against evaluation sets: 13-gram overlap and embedding nearest neighbours."""

from __future__ import annotations

import re

import datasets
import pytest

from embedsdg_hf.quality.decontaminate import add_contamination_flags, filter_clean, load_eval_sets


@pytest.fixture(scope="module")
def eval_sets(gsm8k_train_file) -> dict[str, datasets.Dataset]:
    return load_eval_sets("gsm8k-test")  # the real 1,319 test questions from ../shared


def _numbers_changed(text: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) + 3), text)


def test_planted_test_questions_are_caught(eval_sets, gsm8k_rows, student) -> None:
    test = eval_sets["gsm8k-test"]
    questions = [
        gsm8k_rows[0]["question"],  # clean
        test[5]["question"],  # verbatim copy
        "Here is a problem. " + test[40]["question"].lower() + " Think carefully.",  # wrapped copy
        gsm8k_rows[1]["question"],  # clean
    ]
    out = add_contamination_flags(datasets.Dataset.from_dict({"question": questions}), eval_sets, model=student)
    assert out["contamination_reason"] == [None, "ngram_overlap", "ngram_overlap", None]
    assert out["contaminated_with"] == [None, "gsm8k-test:5", "gsm8k-test:40", None]
    assert out[1]["contamination_ngrams"] >= 10
    assert out[1]["contamination_score"] == pytest.approx(1.0, abs=1e-5)
    assert [r["question"] for r in out.filter(filter_clean)] == [questions[0], questions[3]]


def test_embedding_check_catches_a_copy_with_new_numbers(eval_sets, student) -> None:
    test = eval_sets["gsm8k-test"]
    planted = [_numbers_changed(test[i]["question"]) for i in (11, 12, 13)]
    ds = datasets.Dataset.from_dict({"question": planted})
    only_embeddings = add_contamination_flags(ds, eval_sets, model=student, min_overlap=10**6)
    assert only_embeddings["contamination_reason"] == ["embedding_match"] * 3
    assert only_embeddings["contaminated_with"] == ["gsm8k-test:11", "gsm8k-test:12", "gsm8k-test:13"]
    ngrams_only = add_contamination_flags(ds, eval_sets, threshold=None, min_overlap=10**6)
    assert ngrams_only["contamination_reason"] == [None] * 3


def test_real_train_questions_are_clean_but_one_real_variant(eval_sets, gsm8k_rows, student) -> None:
    """The first 200 GSM8K train questions: 199 are clean; train row 20 (Bella's stamps) is test row 632 (Max's
    stamps) with the names and numbers changed, a real near-copy that both checks catch."""
    ds = datasets.Dataset.from_dict({"question": [r["question"] for r in gsm8k_rows]})
    out = add_contamination_flags(ds, eval_sets, model=student)
    flagged = {
        i: (r["contamination_reason"], r["contaminated_with"]) for i, r in enumerate(out) if r["contamination_reason"]
    }
    assert flagged == {20: ("ngram_overlap", "gsm8k-test:632")}
    assert out[20]["contamination_score"] >= 0.95
    assert max(s for i, s in enumerate(out["contamination_score"]) if i != 20) < 0.95


def test_a_dataset_with_a_problem_column_is_accepted(student) -> None:
    math = datasets.Dataset.from_dict(
        {"problem": ["Find the sum of all real values of x that satisfy the equation x squared minus 5x plus 6 = 0."]}
    )
    ds = datasets.Dataset.from_dict(
        {
            "question": [
                "Compute: find the sum of all real values of x that satisfy the equation x squared minus 5x plus 6 = 0"
            ]
        }
    )
    out = add_contamination_flags(ds, math, threshold=None)
    assert out["contaminated_with"] == ["eval:0"]


def test_errors_name_the_problem(eval_sets, student) -> None:
    ds = datasets.Dataset.from_dict({"question": ["a"]})
    with pytest.raises(ValueError, match="none of the question columns"):
        add_contamination_flags(ds, datasets.Dataset.from_dict({"text": ["a"]}), threshold=None)
    with pytest.raises(ValueError, match="ngram must be an integer >= 1"):
        add_contamination_flags(ds, eval_sets, ngram=0, threshold=None)
    with pytest.raises(ValueError, match="cosine"):
        add_contamination_flags(ds, eval_sets, threshold="high")
    with pytest.raises(ValueError, match="text_col|'answer_text'"):
        add_contamination_flags(ds, eval_sets, text_column="answer_text", threshold=None)
    with pytest.raises(ValueError, match="no rows|empty"):
        add_contamination_flags(ds, {"empty": datasets.Dataset.from_dict({"question": []})}, threshold=None)
    assert load_eval_sets("none") == {}


def test_empty_dataset_gets_the_columns(eval_sets, student) -> None:
    empty = datasets.Dataset.from_dict(
        {"question": []}, features=datasets.Features({"question": datasets.Value("string")})
    )
    out = add_contamination_flags(empty, eval_sets, model=student)
    assert len(out) == 0 and {"contamination_reason", "contaminated_with"} <= set(out.column_names)
