"""Tests for the family teacher (generation/teachers/family_teacher.py), the targeting testbed's control: it answers
the real P_g / P_b prompts through the real generation step, parsing and verification."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest

from embedsdg_hf.data.word_problems import make_word_problem, make_word_problems
from embedsdg_hf.generation.generate import make_synthetic_dataset
from embedsdg_hf.generation.parse import parse_generation
from embedsdg_hf.generation.teachers import FamilyTeacher, TeacherRequest, load_teacher
from embedsdg_hf.quality.verify import add_verification


class _Recording(FamilyTeacher):
    """The real family teacher, keeping the requests it got (to check its choices against the prompts)."""

    def __init__(self, pool):
        super().__init__(pool)
        self.sent: list[TeacherRequest] = []

    def generate(self, requests, on_result, *, progress=True):
        self.sent.extend(requests)
        super().generate(requests, on_result, progress=progress)


@pytest.fixture(scope="module")
def pool() -> datasets.Dataset:
    return make_word_problems(170, seed=4)


def _pairs(pool, n: int) -> datasets.Dataset:
    """Pairs of seeds from two different families each (the decoded text is a stand-in: no model involved)."""
    families = pool["problem_type"]
    rows = [(i, j) for i in range(len(pool)) for j in range(i + 1, len(pool)) if families[i] != families[j]][:n]
    return datasets.Dataset.from_dict(
        {
            "pair_id": list(range(len(rows))),
            "region_id": [0] * len(rows),
            "seed_a": [a for a, _ in rows],
            "seed_b": [b for _, b in rows],
            "decoded_text": ["A shop sells items for a price"] * len(rows),
        }
    )


def test_pg_answers_parse_verify_and_keep_to_the_seeds_families(pool) -> None:
    pairs = _pairs(pool, 24)
    teacher = _Recording(pool)
    ds = make_synthetic_dataset(pool, pairs, teacher=teacher, samples_per_item=2, seed=7)
    assert len(ds) == 48 and all(reason is None for reason in ds["reject_reason"])  # parsed in the P_g format
    verified = add_verification(ds)
    assert verified["verify_reason"] == [None] * len(ds)  # every answer's arithmetic and final answer check out
    families = pool["problem_type"]
    chosen = Counter()
    for request, row in zip(teacher.sent, ds):
        family, key = teacher.choose(request)
        seeds = {families[row["seed_a"]], families[row["seed_b"]]}
        assert family in seeds  # never a family outside the seeds'
        assert row["question"] == make_word_problem(family, seed=key)["question"]  # a fresh instance of it
        assert row["question"] not in pool["question"]
        chosen[family == families[row["seed_a"]]] += 1
    assert chosen[True] and chosen[False]  # the run seed picks either seed's family, not always the first


def test_pb_prompt_and_raw_format(pool) -> None:
    teacher = _Recording(pool)
    ds = make_synthetic_dataset(pool, None, teacher=teacher, method="random", n_samples=10, seed=1)
    families = pool["problem_type"]
    for request, row in zip(teacher.sent, ds):
        assert teacher.choose(request)[0] == families[row["seed_a"]]
        parsed = parse_generation(row["raw_response"])
        assert parsed.reject_reason is None and row["raw_response"].startswith("### Question\n")
        assert parsed.answer.splitlines()[-1] == f"#### {parsed.final_answer}"


def test_unknown_seed_is_a_failed_request_and_specs_load(pool, tmp_path) -> None:
    teacher = FamilyTeacher(pool)
    prompt = "### Question\nA question that is not in the pool?\n### Answer\nNo.\n"
    response = teacher.answer(TeacherRequest(({"role": "user", "content": prompt},), seed=0))
    assert not response.ok and "not in the family teacher's pool" in response.error
    assert not teacher.answer(TeacherRequest(({"role": "user", "content": "no seeds"},))).ok
    path = tmp_path / "pool.jsonl"
    pool.to_json(str(path))
    loaded = load_teacher(f"family:{path}", batch_size=4)
    assert isinstance(loaded, FamilyTeacher) and loaded.identity() == teacher.identity()
    with pytest.raises(ValueError, match="problem_type"):
        FamilyTeacher(pool.remove_columns("problem_type"))
