"""The self-consistency gate: voting and answer extraction with a scripted fake teacher (a planted wrong final answer
must fire), skipping parser rejects, resume from the request cache, clear errors; and one run with the real
in-process SmolLM2 teacher on real GSM8K rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import datasets
import pytest

from embedsdg_hf.common.answers import extract_gsm8k_answer
from embedsdg_hf.generation.prompts import PromptTemplate, load_prompt
from embedsdg_hf.generation.teachers.base import SamplingParams, TeacherError, TeacherRequest, TeacherResponse
from embedsdg_hf.quality.consistency import CONSISTENCY_REASONS, add_self_consistency, filter_consistent

NEW_COLUMNS = ["consistency_answers", "consistency_majority", "consistency_agreement", "consistency_reason"]


def question_of(request: TeacherRequest) -> str:
    (message,) = request.messages
    return message["content"].split("Problem:\n", 1)[-1]  # the packaged prompts end with "Problem:\n{question}"


class ScriptedTeacher:
    """Solves by script: the n-th request for a question gets ``solve(question, n)``: a text, a TeacherResponse, or
    None (the request fails).

    Records every request sent and every ``generate`` call; ``stop_after`` raises TeacherError like a revoked key.
    """

    def __init__(self, solve: Callable[[str, int], str | TeacherResponse | None], stop_after: int = -1):
        self.solve, self.stop_after = solve, stop_after
        self.sent: list[TeacherRequest] = []
        self.calls = 0
        self._asked: Counter = Counter()

    def identity(self) -> dict:
        return {"backend": "fake", "model": "fake-solver"}

    def generate(self, requests, on_result, *, progress=True):
        self.calls += 1
        for index, request in enumerate(requests):
            if len(self.sent) == self.stop_after:
                raise TeacherError("401 Unauthorized")
            self.sent.append(request)
            question = question_of(request)
            text = self.solve(question, self._asked[question])
            self._asked[question] += 1
            if not isinstance(text, TeacherResponse):
                text = TeacherResponse(None, error="HTTP 500") if text is None else TeacherResponse(text, "stop")
            on_result(index, text)


def scripted(script: dict[str, list[str | TeacherResponse | None]]) -> ScriptedTeacher:
    return ScriptedTeacher(lambda question, n: script[question][n % len(script[question])])


def always(text: str) -> ScriptedTeacher:
    return ScriptedTeacher(lambda question, n: text)


def rows(questions: list[str], finals: list[str], **extra) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"question": questions, "final_answer": finals, **extra})


# ------------------------------------------------------------------------------------------------------------------
# Voting
# ------------------------------------------------------------------------------------------------------------------


def test_majority_agreeing_is_kept_and_disagreeing_fires():
    solutions = ["2*9 = 18\n#### 18", "So the answer is 18.", "It is 17\n#### 17", "I am not sure.", "#### $18.00"]
    teacher = scripted({"Q1": solutions, "Q2": solutions})
    ds = rows(["Q1", "Q2"], ["18", "17"])  # Q2's final answer is wrong: the majority says 18
    out = add_self_consistency(ds, teacher, k=5)
    assert out.column_names == ["question", "final_answer", *NEW_COLUMNS]
    assert out.features["consistency_answers"] == datasets.List(datasets.Value("string"))
    assert out.features["consistency_agreement"] == datasets.Value("float64")
    first, second = out[0], out[1]
    assert first["consistency_answers"] == ["18", "18", "17", None, "18"]
    assert first["consistency_majority"] == "18" and first["consistency_agreement"] == pytest.approx(0.6)
    assert first["consistency_reason"] is None
    assert second["consistency_majority"] == "18" and second["consistency_agreement"] == pytest.approx(0.2)
    assert second["consistency_reason"] == "consistency_mismatch"
    assert out.filter(filter_consistent)["question"][:] == ["Q1"]
    assert len(teacher.sent) == 10


def test_all_unusable_is_no_answer():
    teacher = scripted({"Q": [None, "I cannot solve this.", None]})
    out = add_self_consistency(rows(["Q"], ["3"]), teacher, k=3)
    assert out[0]["consistency_answers"] == [None, None, None]
    assert out[0]["consistency_majority"] is None and out[0]["consistency_agreement"] == 0.0
    assert out[0]["consistency_reason"] == "consistency_no_answer"
    assert CONSISTENCY_REASONS == ("consistency_mismatch", "consistency_no_answer")


def test_a_truncated_solution_votes_only_with_a_finished_hash_line():
    cut = TeacherResponse("First 4*5 = 20, then 20 + ", "length")  # its last number is a step
    finished = TeacherResponse("4*5+1 = 21\n#### 21\nLet us check: 21 - 1 = 20 and", "length")
    teacher = scripted({"Q": [cut, finished, "So the answer is 21."]})
    out = add_self_consistency(rows(["Q"], ["21"]), teacher, k=3)
    assert out[0]["consistency_answers"] == [None, "21", "21"] and out[0]["consistency_reason"] is None


def test_ties_go_to_the_final_answer_else_to_the_first_vote():
    teacher = scripted({"Q": ["#### 5", "#### 6"]})
    out = add_self_consistency(rows(["Q", "Q", "Q"], ["6", "5", "7"]), teacher, k=2)
    assert out["consistency_majority"][:] == ["6", "5", "5"]
    assert out["consistency_reason"][:] == [None, None, "consistency_mismatch"]
    assert out["consistency_agreement"][:] == [0.5, 0.5, 0.0]
    assert len(teacher.sent) == 2  # rows with the same question share their requests


def test_math_kind_votes_with_math_equal():
    teacher = scripted({"Q": ["so \\boxed{\\frac{1}{2}}", "it is \\boxed{0.5}", "\\boxed{2}", "no box"]})
    out = add_self_consistency(rows(["Q", "Q"], ["\\dfrac12", "2"]), teacher, k=4, kind="math")
    assert out[0]["consistency_answers"] == ["\\frac{1}{2}", "0.5", "2", None]
    assert out["consistency_majority"][:] == ["\\frac{1}{2}", "\\frac{1}{2}"]
    assert out["consistency_reason"][:] == [None, "consistency_mismatch"]
    request = teacher.sent[0]
    assert "\\boxed{}" in request.messages[0]["content"] and question_of(request) == "Q"


def test_math_votes_are_grouped_by_math_verify():
    """Votes only math-verify finds equal (sets in any order, a choice letter in \\text{}) form one majority."""
    teacher = scripted(
        {
            "S": ["\\boxed{\\{2,1\\}}", "\\boxed{\\{1,2\\}}", "\\boxed{\\{1,3\\}}"],
            "C": ["\\boxed{\\text{(B)}}", "\\boxed{B}", "\\boxed{A}"],
        }
    )
    out = add_self_consistency(rows(["S", "C"], ["\\{1, 2\\}", "B"]), teacher, k=3, kind="math")
    assert out["consistency_majority"][:] == ["\\{2,1\\}", "\\text{(B)}"]
    assert out["consistency_agreement"][:] == pytest.approx([2 / 3, 2 / 3])
    assert out["consistency_reason"][:] == [None, None]


def test_a_planted_wrong_final_answer_fires_on_real_rows(gsm8k_rows):
    """A teacher that always writes GSM8K's own solution: true final answers pass, planted ones are caught."""
    real = gsm8k_rows[:8]
    solutions = {row["question"]: row["answer"] for row in real}
    finals = [extract_gsm8k_answer(row["answer"]) for row in real]
    planted = {2: str(int(finals[2]) + 1), 5: "0"}
    ds = rows([row["question"] for row in real], [planted.get(i, final) for i, final in enumerate(finals)])
    out = add_self_consistency(ds, ScriptedTeacher(lambda question, n: solutions[question]), k=2)
    expected = ["consistency_mismatch" if i in planted else None for i in range(len(real))]
    assert out["consistency_reason"][:] == expected
    assert out["consistency_majority"][:] == finals


def test_parser_rejects_are_skipped():
    teacher = always("#### 4")
    ds = rows(["Q1", "", "Q3"], ["4", "", "5"], reject_reason=[None, "missing_question", None])
    out = add_self_consistency(ds, teacher, k=2)
    assert [question_of(request) for request in teacher.sent] == ["Q1", "Q1", "Q3", "Q3"]
    skipped = out[1]
    assert skipped["consistency_answers"] == [] and skipped["consistency_reason"] is None
    assert skipped["consistency_majority"] is None and skipped["consistency_agreement"] is None
    assert out["consistency_reason"][:] == [None, None, "consistency_mismatch"]


def test_default_prompt_sampling_and_seeds():
    teacher = always("#### 1")
    ds = rows(["Tom has {x} pens.", "Ann has 3 pens."], ["1", "1"])
    add_self_consistency(ds, teacher, k=3, seed=7)
    prompt = load_prompt("solve_gsm8k_v1")
    first = teacher.sent[0]
    assert first.messages == ({"role": "user", "content": prompt.render(question="Tom has {x} pens.")},)
    assert "#### <number>" in first.messages[0]["content"]
    assert first.sampling == SamplingParams(temperature=0.7, top_p=0.95, max_tokens=512) and first.prefill == ""
    assert len({request.seed for request in teacher.sent}) == 6
    # A row's requests depend on its question, not its position: a subset asks exactly the same.
    subset = always("#### 1")
    add_self_consistency(ds.select([1]), subset, k=3, seed=7)
    assert subset.sent == teacher.sent[3:]
    other_seed = always("#### 1")
    add_self_consistency(ds.select([1]), other_seed, k=3, seed=8)
    assert {r.seed for r in other_seed.sent}.isdisjoint({r.seed for r in subset.sent})


def test_custom_prompt_and_reason_column(tmp_path):
    custom = PromptTemplate(name="mine_v1", version="v1", text="Q: {question}\nEnd with ####.", source="<inline>")
    teacher = always("#### 2")
    out = add_self_consistency(rows(["Q"], ["2"]), teacher, k=1, prompt=custom, reason_column="sc_reason")
    assert teacher.sent[0].messages[0]["content"] == "Q: Q\nEnd with ####."
    assert out.column_names[-1] == "sc_reason" and out["sc_reason"][:] == [None]
    path = tmp_path / "solve.txt"
    path.write_text("Solve {problem}\n")
    with pytest.raises(ValueError, match=r"\{problem\} that add_self_consistency cannot fill"):
        add_self_consistency(rows(["Q"], ["2"]), teacher, prompt=path)


# ------------------------------------------------------------------------------------------------------------------
# Resume
# ------------------------------------------------------------------------------------------------------------------


def test_resume_from_cache_dir_sends_nothing_the_second_time(tmp_path):
    ds = rows(["Q1", "Q2", "Q3"], ["1", "2", "3"])
    first_teacher = ScriptedTeacher(lambda question, n: f"#### {question[1]}")
    first = add_self_consistency(ds, first_teacher, k=4, cache_dir=tmp_path)
    assert len(first_teacher.sent) == 12
    lines = (tmp_path / "consistency.jsonl").read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(line)["response"]["text"].startswith("####") for line in lines)
    second_teacher = ScriptedTeacher(lambda question, n: "#### 999")
    second = add_self_consistency(ds, second_teacher, k=4, cache_dir=tmp_path)
    assert second_teacher.calls == 0 and second_teacher.sent == []
    assert second.to_dict() == first.to_dict()
    assert second["consistency_reason"][:] == [None, None, None]


def test_failed_requests_are_not_cached(tmp_path):
    ds = rows(["Q1", "Q2"], ["1", "2"])
    flaky = ScriptedTeacher(lambda question, n: None if n == 0 else f"#### {question[1]}")
    out = add_self_consistency(ds, flaky, k=3, cache_dir=tmp_path)
    assert out["consistency_answers"][:] == [[None, "1", "1"], [None, "2", "2"]]
    assert len((tmp_path / "consistency.jsonl").read_text().splitlines()) == 4
    healthy = ScriptedTeacher(lambda question, n: f"#### {question[1]}")
    again = add_self_consistency(ds, healthy, k=3, cache_dir=tmp_path)
    assert healthy.calls == 1 and [question_of(r) for r in healthy.sent] == ["Q1", "Q2"]
    assert again["consistency_answers"][:] == [["1", "1", "1"], ["2", "2", "2"]]


def test_a_stopped_run_keeps_what_finished(tmp_path):
    ds = rows(["Q1", "Q2"], ["1", "2"])
    stopping = ScriptedTeacher(lambda question, n: f"#### {question[1]}", stop_after=3)
    with pytest.raises(TeacherError, match="401"):
        add_self_consistency(ds, stopping, k=2, cache_dir=tmp_path)
    rest = ScriptedTeacher(lambda question, n: f"#### {question[1]}")
    out = add_self_consistency(ds, rest, k=2, cache_dir=tmp_path)
    assert len(rest.sent) == 1 and out["consistency_reason"][:] == [None, None]


# ------------------------------------------------------------------------------------------------------------------
# Errors and edge cases
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, r"k must be an integer >= 1, got 0"),
        ({"k": 1.5}, ValueError, r"k must be an integer >= 1, got 1.5"),
        ({"k": True}, ValueError, r"k must be an integer >= 1"),
        ({"kind": "MATH"}, ValueError, r"Unknown kind 'MATH'; allowed: 'gsm8k', 'math'"),
        ({"seed": -1}, ValueError, r"seed must be a non-negative integer"),
        ({"sampling": {"temperature": 0}}, TypeError, r"sampling must be a SamplingParams"),
        ({"question_column": "problem"}, ValueError, r"no column 'problem'.*Columns present: \["),
        ({"prompt": "solve_gsm8k_v9"}, ValueError, r"No packaged prompt template 'solve_gsm8k_v9'"),
    ],
)
def test_argument_errors(kwargs, error, match):
    teacher = always("#### 1")
    with pytest.raises(error, match=match):
        add_self_consistency(rows(["Q"], ["1"]), teacher, **kwargs)
    assert teacher.sent == []


def test_teacher_must_implement_the_protocol():
    with pytest.raises(TypeError, match=r"Teacher protocol.*got object"):
        add_self_consistency(rows(["Q"], ["1"]), object())


def test_missing_question_in_an_accepted_row_is_an_error():
    with pytest.raises(ValueError, match=r"Column 'question' is empty or not text in 1 row\(s\).*first: \[1\]"):
        add_self_consistency(rows(["Q", None], ["1", "2"]), always("#### 1"))


def test_empty_dataset_and_replaced_columns(caplog):
    teacher = always("#### 1")
    empty = add_self_consistency(rows([], []), teacher)
    assert len(empty) == 0 and empty.column_names == ["question", "final_answer", *NEW_COLUMNS]
    assert teacher.calls == 0
    ds = rows(["Q"], ["1"], consistency_reason=["old"])
    with caplog.at_level("WARNING", logger="embedsdg_hf.quality.consistency"):
        out = add_self_consistency(ds, teacher, k=1)
    assert "already exist" in caplog.text and out["consistency_reason"][:] == [None]


def test_huge_numbers_in_a_solution_do_not_crash():
    teacher = scripted({"Q": ["#### " + "9" * 5000, "#### 3"]})
    out = add_self_consistency(rows(["Q"], ["3"]), teacher, k=2)
    assert out[0]["consistency_answers"] == [None, "3"] and out[0]["consistency_reason"] is None


# ------------------------------------------------------------------------------------------------------------------
# The real in-process teacher
# ------------------------------------------------------------------------------------------------------------------


def test_real_transformers_teacher_on_gsm8k(student, gsm8k_rows, tmp_path):
    from embedsdg_hf.generation.teachers import load_teacher

    teacher = load_teacher(f"transformers:{student}", batch_size=4)
    real = gsm8k_rows[:2]
    ds = rows([row["question"] for row in real], [extract_gsm8k_answer(row["answer"]) for row in real])
    # room for a whole solution: the 135M model's GSM8K solutions often run past 100 tokens
    sampling = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=256)
    out = add_self_consistency(ds, teacher, k=2, sampling=sampling, seed=0, cache_dir=tmp_path)
    # The votes are what the model wrote: the extraction of each cached response text (strict when cut off).
    records = [json.loads(line)["response"] for line in (tmp_path / "consistency.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(record["text"].strip() for record in records)
    extracted = Counter(
        extract_gsm8k_answer(record["text"], strict=record["finish_reason"] == "length") for record in records
    )
    assert Counter(vote for row in out for vote in row["consistency_answers"]) == extracted
    assert any(vote is not None for vote in extracted)  # seeded: at least one solution finishes with an answer
    for row in out:
        assert len(row["consistency_answers"]) == 2
        assert 0.0 <= row["consistency_agreement"] <= 1.0
        assert row["consistency_reason"] in (None, *CONSISTENCY_REASONS)
        if row["consistency_majority"] is not None:
            assert row["consistency_majority"] in row["consistency_answers"]
    again = add_self_consistency(ds, teacher, k=2, sampling=sampling, seed=0, cache_dir=tmp_path)
    assert again.to_dict() == out.to_dict()  # served from the cache
