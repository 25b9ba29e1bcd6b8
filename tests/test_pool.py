"""Tests for the shipped seed pool, :func:`embedsdg_hf.data.word_problems.make_word_problems`."""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction

import datasets
import pytest

from embedsdg_hf.data import word_problems as pool
from embedsdg_hf.data.word_problems import PROBLEM_TYPES, make_word_problems
from embedsdg_hf.quality.verify import evaluate_arithmetic

COLUMNS = ["question", "answer", "final_answer", "problem_type"]
DEFAULT_DIGEST = "baa5be8ffe2b9b589bcf1e51e7726fbad3d527bc1a7fff620d2e3e30cdb16c78"  # main before family_weights
ANNOTATION = re.compile(r"<<([^<>]*)=([^<>=]*)>>")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    """A few thousand rows across two seeds."""
    return make_word_problems(2000, seed=0).to_list() + make_word_problems(2000, seed=123).to_list()


def test_evaluator_is_exact_and_safe() -> None:
    """The annotations are checked with the library's evaluator (tested fully in test_verify.py)."""
    assert evaluate_arithmetic("48/2") == 24
    assert evaluate_arithmetic("2*12+2*8") == 40
    assert evaluate_arithmetic("7/2") == Fraction(7, 2)
    for bad in ("__import__('os')", "abs(3)", "x+1", "9**9**9"):
        with pytest.raises(ValueError):
            evaluate_arithmetic(bad)


def test_columns_types_and_length() -> None:
    ds = make_word_problems(37, seed=5)
    assert isinstance(ds, datasets.Dataset)
    assert len(ds) == 37
    assert ds.column_names == COLUMNS
    for name in COLUMNS:
        assert ds.features[name] == datasets.Value("string")
    for row in ds:
        assert all(isinstance(row[name], str) and row[name] for name in COLUMNS)
        assert row["problem_type"] in PROBLEM_TYPES


def test_default_size() -> None:
    assert len(make_word_problems()) == 1000


def test_deterministic_and_seed_dependent() -> None:
    first = make_word_problems(200, seed=7).to_dict()
    assert make_word_problems(200, seed=7).to_dict() == first
    other = make_word_problems(200, seed=8).to_dict()
    assert other != first
    assert sum(a != b for a, b in zip(first["question"], other["question"], strict=True)) > 190


def test_rows_depend_only_on_seed_and_index() -> None:
    short = make_word_problems(20, seed=3).to_dict()
    long = make_word_problems(60, seed=3)[:20]
    assert long == short


def test_annotations_are_correct(rows: list[dict[str, str]]) -> None:
    for row in rows:
        answer = row["answer"]
        matches = list(ANNOTATION.finditer(answer))
        assert matches, answer
        for match in matches:
            expr, result = match.groups()
            assert re.fullmatch(r"[0-9+\-*/]+", expr), (expr, answer)
            assert re.fullmatch(r"\d+", result), (result, answer)
            assert evaluate_arithmetic(expr) == int(result), (expr, result, answer)
            after = answer[match.end() :]
            assert after.startswith(result), (after[:20], answer)
            assert not after[len(result) : len(result) + 1].isdigit(), answer
        assert "<<" not in ANNOTATION.sub("", answer) and ">>" not in ANNOTATION.sub("", answer), answer


def test_final_line(rows: list[dict[str, str]]) -> None:
    for row in rows:
        lines = row["answer"].split("\n")
        assert len(lines) >= 2
        assert sum(line.startswith("####") for line in lines) == 1
        match = re.fullmatch(r"#### (\d+)", lines[-1])
        assert match, lines[-1]
        assert match.group(1) == row["final_answer"]
        last_result = ANNOTATION.findall(row["answer"])[-1][1]
        assert last_result == row["final_answer"]


def test_text_is_fully_filled(rows: list[dict[str, str]]) -> None:
    for row in rows:
        text = row["question"] + "\n" + row["answer"]
        assert "{" not in text and "}" not in text, text
        assert "  " not in text, text
        assert row["question"][0].isupper() or row["question"][0].isdigit(), row["question"]
        assert row["question"].rstrip().endswith("?"), row["question"]


def test_all_problem_types_appear_evenly() -> None:
    assert len(PROBLEM_TYPES) >= 12
    assert len(set(PROBLEM_TYPES)) == len(PROBLEM_TYPES)
    assert set(make_word_problems(500, seed=0)["problem_type"]) == set(PROBLEM_TYPES)
    counts = Counter(make_word_problems(1000, seed=4)["problem_type"])
    assert max(counts.values()) - min(counts.values()) <= 1


def test_questions_are_unique() -> None:
    for seed in (0, 1):
        questions = make_word_problems(1000, seed=seed)["question"]
        assert len(set(questions)) >= 990


def test_name_table() -> None:
    names = [name for name, _ in pool._NAMES]
    assert len(set(names)) == len(names) >= 40
    assert {pronoun for _, pronoun in pool._NAMES} == {"he", "she", "they"}


@pytest.mark.parametrize("n", [0, -3])
def test_n_must_be_positive(n: int) -> None:
    with pytest.raises(ValueError, match=r"n must be >= 1"):
        make_word_problems(n)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": "10"}, r"n must be an int"),
        ({"n": 2.5}, r"n must be an int"),
        ({"n": True}, r"n must be an int"),
        ({"n": 5, "seed": "abc"}, r"seed must be an int"),
        ({"n": 5, "seed": None}, r"seed must be an int"),
    ],
)
def test_argument_types(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make_word_problems(**kwargs)


def test_family_weights_none_keeps_the_default_rows() -> None:
    """family_weights=None is the original generator: same rows for the same (n, seed), pinned here by a digest."""
    import hashlib
    import json

    ds = make_word_problems(60, seed=11, family_weights=None)
    assert ds.to_dict() == make_word_problems(60, seed=11).to_dict()
    counts = Counter(ds["problem_type"])
    assert set(counts) == set(PROBLEM_TYPES) and max(counts.values()) - min(counts.values()) <= 1
    digest = hashlib.sha256(json.dumps(make_word_problems(34, seed=0).to_dict(), sort_keys=True).encode()).hexdigest()
    assert digest == DEFAULT_DIGEST


def test_family_weights_plant_exact_counts() -> None:
    rare = {"ages": 0.1, "inventory": 0.1, "test_average": 0}
    ds = make_word_problems(1500, seed=3, family_weights=rare)
    counts = Counter(ds["problem_type"])
    assert sum(counts.values()) == 1500
    assert "test_average" not in counts
    assert counts["ages"] == counts["inventory"] == round(1500 * 0.1 / 15.2)
    common = [counts[f] for f in PROBLEM_TYPES if f not in rare]
    assert max(common) - min(common) <= 1
    # every row is still a valid problem of its family, and the weights make a different but reproducible pool
    assert ds.to_dict() == make_word_problems(1500, seed=3, family_weights=rare).to_dict()
    assert all(row["answer"].endswith("#### " + row["final_answer"]) for row in ds)


@pytest.mark.parametrize(
    ("weights", "match"),
    [({"no_such_family": 1}, "unknown problem_type"), ({"ages": -1}, "finite number >= 0"),
     (dict.fromkeys(PROBLEM_TYPES, 0), "at least one family")],
)  # fmt: skip
def test_family_weights_bad_input(weights, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_word_problems(10, family_weights=weights)


def test_make_word_problem_fresh_instance_of_a_family() -> None:
    from embedsdg_hf.data.word_problems import make_word_problem

    one, other = make_word_problem("recipe_scaling", seed=1), make_word_problem("recipe_scaling", seed=2)
    assert one["problem_type"] == other["problem_type"] == "recipe_scaling"
    assert one != other and one == make_word_problem("recipe_scaling", seed=1)
    with pytest.raises(ValueError, match="Unknown problem_type"):
        make_word_problem("nope", seed=0)
