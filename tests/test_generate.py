"""make_synthetic_dataset with a fake teacher: columns, TRL-ready messages, budgets, rejects, resume, clear errors.

The fake teacher is enough here: the real backends are tested against a real server in their own tests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import datasets
import numpy as np
import pytest

from embedsdg_hf.generation.generate import (
    FEATURES,
    filter_accepted,
    make_synthetic_dataset,
    request_seed,
    summarize_generation,
)
from embedsdg_hf.generation.request_cache import RequestCache
from embedsdg_hf.generation.teachers.base import SamplingParams, TeacherError, TeacherRequest, TeacherResponse

PREFILL = "### Question\n"


def good_response(request: TeacherRequest) -> TeacherResponse:
    """A well-formed continuation of the prefill, different for every request seed."""
    text = f"How many apples for {request.seed}?\n### Answer\n{request.seed} % 7 = <<x>>3\n### <final_answer>\n3\n"
    return TeacherResponse(text, "stop", prompt_tokens=100, completion_tokens=20, model="fake-1", prefill_applied=True)


class FakeTeacher:
    """Answers requests one at a time, in order; records what it was sent; can fail some requests or stop the run."""

    def __init__(self, respond: Callable[[TeacherRequest], TeacherResponse] = good_response, stop_after: int = -1):
        self.respond, self.stop_after = respond, stop_after
        self.sent: list[TeacherRequest] = []

    def identity(self) -> dict:
        return {"backend": "fake", "model": "fake-1"}

    def generate(self, requests, on_result, *, progress=True):
        for index, request in enumerate(requests):
            if len(self.sent) == self.stop_after:
                raise TeacherError("401 Unauthorized")
            self.sent.append(request)
            on_result(index, self.respond(request))


@pytest.fixture
def pool() -> datasets.Dataset:
    questions = [f"Question {i}: {{x}} has {i} pens. How many?" for i in range(30)]
    answers = [f"It has {i} pens.\n#### {i}" for i in range(30)]
    return datasets.Dataset.from_dict({"question": questions, "answer": answers, "source": ["gen"] * 30})


@pytest.fixture
def pairs() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "pair_id": [10, 11, 12, 13],
            "region_id": [3, 3, 7, 8],
            "seed_a": [0, 2, 4, 6],
            "seed_b": [1, 3, 5, 29],
            "decoded_text": ["partial {one}", "partial two", "partial three", "partial four"],
            "interp_coords": [[0.1, 0.2]] * 4,
        }
    )


def user_prompt(request: TeacherRequest) -> str:
    (message,) = request.messages
    assert message["role"] == "user"
    return message["content"]


def test_columns_types_and_provenance(pool, pairs):
    teacher = FakeTeacher()
    sampling = SamplingParams(temperature=0.5, top_p=0.9, max_tokens=256)
    ds = make_synthetic_dataset(pool, pairs, teacher=teacher, sampling=sampling, seed=3)
    assert ds.features == FEATURES and ds.column_names == list(FEATURES)
    assert len(ds) == len(pairs) == len(teacher.sent)
    assert ds["seed_a"][:] == [0, 2, 4, 6] and ds["seed_b"][:] == [1, 3, 5, 29]
    assert ds["pair_id"][:] == [10, 11, 12, 13] and ds["region_id"][:] == [3, 3, 7, 8]
    assert ds["decoded_text"][:] == pairs["decoded_text"][:]
    row = ds[0]
    assert row["method"] == "embedsdg" and row["reject_reason"] is None and row["error"] is None
    assert row["prompt_version"] == "generate_embedsdg_v1" and row["teacher_model"] == "fake-1"
    assert json.loads(row["teacher"]) == {"backend": "fake", "model": "fake-1"}
    assert json.loads(row["sampling"]) == {"temperature": 0.5, "top_p": 0.9, "max_tokens": 256}
    assert row["seed"] == request_seed(3, 10, 0) and row["sample_index"] == 0 and row["from_cache"] is False
    assert row["raw_response"].startswith(PREFILL)  # the prefill the backend applied is part of the raw text
    assert row["final_answer"] == "3" and row["question"] == f"How many apples for {row['seed']}?"
    assert (row["prompt_tokens"], row["completion_tokens"], row["finish_reason"]) == (100, 20, "stop")
    # The prompt P_g: both seeds (braces kept literally) and the decoded text; the prefill is sent.
    prompt = user_prompt(teacher.sent[0])
    assert pool[0]["question"] in prompt and pool[1]["answer"] in prompt and "partial {one}" in prompt
    assert teacher.sent[0].prefill == PREFILL and teacher.sent[0].sampling == sampling
    assert len(set(ds["request_key"][:])) == len(ds)


def test_messages_are_trl_ready(pool, pairs):
    ds = make_synthetic_dataset(pool, pairs, teacher=FakeTeacher())
    for row in ds:
        # The assistant turn is the solution ending in GSM8K's "#### N" line (added when the teacher put the
        # final answer only in its "### <final_answer>" section), so a trained student learns to emit it.
        answer = (
            row["answer"]
            if row["answer"].rstrip().endswith(f"#### {row['final_answer']}")
            else (f"{row['answer']}\n#### {row['final_answer']}")
        )
        assert row["messages"] == [
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": answer},
        ]
        assert row["messages"][1]["content"].splitlines()[-1] == f"#### {row['final_answer']}"
        # TRL's conversational prompt-completion form of the same example: plain `trl sft` masks the prompt.
        assert row["prompt"] == row["messages"][:1] and row["completion"] == row["messages"][1:]


def test_random_budget_defaults_to_the_number_of_pairs(pool, pairs):
    teacher = FakeTeacher()
    ds = make_synthetic_dataset(pool, pairs, teacher=teacher, method="random")
    assert len(ds) == len(pairs)
    assert len(set(ds["seed_a"][:])) == len(ds) and all(0 <= row < len(pool) for row in ds["seed_a"])
    for column, value in (
        ("seed_b", -1),
        ("region_id", -1),
        ("pair_id", -1),
        ("decoded_text", ""),
        ("method", "random"),
    ):
        assert set(ds[column][:]) == {value}
    assert set(ds["prompt_version"][:]) == {"generate_random_v1"}
    prompt = user_prompt(teacher.sent[0])
    assert pool[ds[0]["seed_a"]]["question"] in prompt and "Partial Example" not in prompt


def test_random_seed_choice_is_deterministic(pool):
    def chosen(seed: int) -> list[int]:
        return make_synthetic_dataset(pool, teacher=FakeTeacher(), method="random", n_samples=10, seed=seed)["seed_a"][
            :
        ]

    assert chosen(5) == chosen(5) == np.random.default_rng(5).choice(len(pool), size=10, replace=False).tolist()
    assert chosen(5) != chosen(6)


def test_samples_per_item(pool, pairs):
    ds = make_synthetic_dataset(pool, pairs, teacher=FakeTeacher(), samples_per_item=3)
    assert len(ds) == 3 * len(pairs)
    assert ds["pair_id"][:6] == [10, 10, 10, 11, 11, 11] and ds["sample_index"][:6] == [0, 1, 2, 0, 1, 2]
    assert len(set(ds["seed"][:])) == len(set(ds["request_key"][:])) == len(ds)


def scripted(*responses: TeacherResponse) -> Callable[[TeacherRequest], TeacherResponse]:
    """A respond function that gives the listed responses in turn."""
    queue = list(responses)
    return lambda request: queue.pop(0)


def test_rejects_are_kept_with_reasons(pool, pairs, caplog):
    teacher = FakeTeacher(
        scripted(
            TeacherResponse("Q?\n### Answer\nA.\n### <final_answer>\n", "stop", prefill_applied=True),
            TeacherResponse("Q?\n### Answer\nSo 3*", "length", completion_tokens=256, prefill_applied=True),
            TeacherResponse(None, error="HTTP 500 after 3 attempts", attempts=3),
            TeacherResponse("### Question\nQ?\n### Answer\nA\n#### 4", "stop", prefill_applied=False),
        )
    )
    with caplog.at_level(logging.INFO, logger="embedsdg_hf.generation.generate"):
        ds = make_synthetic_dataset(pool, pairs, teacher=teacher)
    assert ds["reject_reason"][:] == ["missing_final_answer", "truncated", "teacher_error", None]
    assert ds["error"][:] == [None, None, "HTTP 500 after 3 attempts", None]
    assert ds["finish_reason"][:2] == ["stop", "length"]
    assert ds["raw_response"][1] == PREFILL + "Q?\n### Answer\nSo 3*"
    assert ds["raw_response"][3] == "### Question\nQ?\n### Answer\nA\n#### 4"  # prefill not applied: not prepended
    assert [len(m) for m in ds["messages"]] == [0, 0, 0, 2]
    assert ds.filter(filter_accepted)["final_answer"][:] == ["4"]
    summary = summarize_generation(ds)
    assert summary == {
        "rows": 4,
        "accepted": 1,
        "rejects_by_reason": {"missing_final_answer": 1, "teacher_error": 1, "truncated": 1},
        "prompt_tokens": 0,
        "completion_tokens": 256,
        "from_cache": 0,
        "attempts": 4,
    }
    assert "4 rows, 1 accepted" in caplog.text


def test_resume_sends_nothing_and_returns_identical_rows(pool, pairs, tmp_path):
    first = FakeTeacher()
    ds1 = make_synthetic_dataset(pool, pairs, teacher=first, samples_per_item=2, cache_dir=tmp_path)
    assert len(first.sent) == 8 and not any(ds1["from_cache"])
    second = FakeTeacher(respond=lambda request: pytest.fail("nothing should be sent"))
    ds2 = make_synthetic_dataset(pool, pairs, teacher=second, samples_per_item=2, cache_dir=tmp_path)
    assert second.sent == [] and all(ds2["from_cache"])
    assert ds1.remove_columns("from_cache").to_list() == ds2.remove_columns("from_cache").to_list()
    # A changed setting is a new request: nothing is reused.
    third = FakeTeacher()
    make_synthetic_dataset(pool, pairs, teacher=third, samples_per_item=2, cache_dir=tmp_path, seed=1)
    assert len(third.sent) == 8


def test_failures_are_not_cached_and_are_retried(pool, pairs, tmp_path):
    def fail_pair_12(request):
        if "partial three" in user_prompt(request):
            return TeacherResponse(None, error="HTTP 503 after 5 attempts", attempts=5)
        return good_response(request)

    ds1 = make_synthetic_dataset(pool, pairs, teacher=FakeTeacher(fail_pair_12), cache_dir=tmp_path)
    assert ds1["reject_reason"][:] == [None, None, "teacher_error", None]
    assert len((tmp_path / "requests.jsonl").read_text().splitlines()) == 3
    retry = FakeTeacher()
    ds2 = make_synthetic_dataset(pool, pairs, teacher=retry, cache_dir=tmp_path)
    assert len(retry.sent) == 1 and "partial three" in user_prompt(retry.sent[0])
    assert ds2["reject_reason"][:] == [None] * 4
    assert ds2["from_cache"][:] == [True, True, False, True]


def test_best_of_n_asks_again_only_for_rows_that_fail_a_gate(pool, pairs, tmp_path):
    """attempts=3: attempt 0 of pairs 11 and 13 fails (a parse reject, a failed row check), attempt 1 of pair 13
    fails again; each retry has its own seed and cache entry, the first passing row is kept, and a rerun resumes."""
    failing = {request_seed(0, 11, 0), request_seed(0, 13, 0), request_seed(0, 13, 0, 1)}

    def respond(request):
        if request.seed == request_seed(0, 11, 0):
            return TeacherResponse("no sections at all", "stop", model="fake-1", prefill_applied=True)
        response = good_response(request)
        if request.seed in failing:
            response.text = response.text.replace("<<x>>3", "<<x>>4 (bad)")
        return response

    def row_check(parsed):
        return "bad" if "(bad)" in parsed.answer else None

    teacher = FakeTeacher(respond)
    kwargs = {"cache_dir": tmp_path, "attempts": 3, "row_check": row_check}
    ds = make_synthetic_dataset(pool, pairs, teacher=teacher, **kwargs)
    assert [r.seed for r in teacher.sent] == [
        *(request_seed(0, pair, 0) for pair in (10, 11, 12, 13)),
        request_seed(0, 11, 0, 1),
        request_seed(0, 13, 0, 1),
        request_seed(0, 13, 0, 2),
    ]
    assert ds["attempt"][:] == [0, 1, 0, 2] and ds["reject_reason"][:] == [None] * 4
    assert ds["seed"][:] == [request_seed(0, 10, 0), request_seed(0, 11, 0, 1), request_seed(0, 12, 0),
                             request_seed(0, 13, 0, 2)]  # fmt: skip
    assert summarize_generation(ds)["attempts"] == 7
    again = FakeTeacher(respond=lambda request: pytest.fail("nothing should be sent"))
    resumed = make_synthetic_dataset(pool, pairs, teacher=again, **kwargs)
    assert (
        again.sent == []
        and resumed.remove_columns("from_cache").to_list() == ds.remove_columns("from_cache").to_list()
    )
    # One attempt (the default) sends exactly the requests it always did, and keeps the failing rows.
    single = make_synthetic_dataset(pool, pairs, teacher=FakeTeacher(respond), row_check=row_check)
    assert single["attempt"][:] == [0] * 4 and single["reject_reason"][:] == [None, "missing_answer", None, None]


def test_teacher_error_keeps_finished_results_for_the_next_run(pool, tmp_path):
    kwargs = {"method": "random", "n_samples": 10, "cache_dir": tmp_path}
    with pytest.raises(TeacherError, match="401"):
        make_synthetic_dataset(pool, teacher=FakeTeacher(stop_after=4), **kwargs)
    resumed = FakeTeacher()
    ds = make_synthetic_dataset(pool, teacher=resumed, **kwargs)
    assert len(resumed.sent) == 6 and len(ds) == 10 and sum(ds["from_cache"]) == 4
    assert len(set(ds["request_key"][:])) == 10


def test_empty_pairs_give_an_empty_dataset(pool, pairs):
    ds = make_synthetic_dataset(pool, pairs.select([]), teacher=FakeTeacher())
    assert len(ds) == 0 and ds.features == FEATURES


def test_user_prompt_file(pool, pairs, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("A: {q1} / {a1}\nB: {q2} / {a2}\nPartial: {interpolated_decoded_text}\n")
    teacher = FakeTeacher()
    ds = make_synthetic_dataset(pool, pairs, teacher=teacher, prompt=path)
    assert ds[0]["prompt_version"].startswith("file:mine@")
    assert user_prompt(teacher.sent[0]).startswith(f"A: {pool[0]['question']} / ")
    path.write_text("Only {q1}\n")
    with pytest.raises(ValueError, match=r"lacks the fields \{a1\}, \{q2\}, \{a2\}, \{interpolated_decoded_text\}"):
        make_synthetic_dataset(pool, pairs, teacher=teacher, prompt=path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "nearest"}, "Unknown method 'nearest'; allowed: 'embedsdg', 'random'"),
        ({"samples_per_item": 0}, "samples_per_item must be an integer >= 1"),
        ({"question_column": "prompt"}, "seed pool has no column 'prompt'"),
        ({"pairs": None}, "method='embedsdg' needs `pairs`"),
        ({"method": "random", "pairs": None}, "method='random' needs n_samples"),
        ({"method": "random", "n_samples": 31}, r"n_samples=31 is larger than the seed pool \(30 rows\)"),
        ({"prompt": "generate_random_v1"}, r"lacks the fields \{q2\}, \{a2\}, \{interpolated_decoded_text\}"),
    ],
)
def test_argument_errors(pool, pairs, change, message):
    kwargs = {"pool": pool, "pairs": pairs, "teacher": FakeTeacher(), **change}
    with pytest.raises(ValueError, match=message):
        make_synthetic_dataset(**kwargs)


def test_data_errors_name_the_columns(pool, pairs):
    with pytest.raises(ValueError, match="pairs dataset has no column 'decoded_text'"):
        make_synthetic_dataset(pool, pairs.remove_columns("decoded_text"), teacher=FakeTeacher())
    with pytest.raises(ValueError, match="seed pool is empty"):
        make_synthetic_dataset(pool.select([]), pairs, teacher=FakeTeacher())
    with pytest.raises(ValueError, match=r"Seed rows \[29\] are outside the seed pool"):
        make_synthetic_dataset(pool.select(range(20)), pairs, teacher=FakeTeacher())
    undecoded = pairs.map(lambda row, i: {"decoded_text": None if i == 1 else row["decoded_text"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"'decoded_text'.*None\) in 1 row\(s\) \(first: \[1\]\)"):
        make_synthetic_dataset(pool, undecoded, teacher=FakeTeacher())
    with pytest.raises(TypeError, match="Teacher protocol"):
        make_synthetic_dataset(pool, pairs, teacher=object())


def test_second_writer_on_a_cache_dir_is_refused(pool, pairs, tmp_path):
    with RequestCache(tmp_path / "requests.jsonl"):
        with pytest.raises(RuntimeError, match="in use by another writer"):
            make_synthetic_dataset(pool, pairs, teacher=FakeTeacher(), cache_dir=tmp_path)
    make_synthetic_dataset(pool, pairs, teacher=FakeTeacher(), cache_dir=tmp_path)  # released: works


# ---------------------------------------------------------------------------------------------------------------------
# RequestCache
# ---------------------------------------------------------------------------------------------------------------------


def test_cache_ignores_a_torn_last_line_and_keeps_appending(tmp_path, caplog):
    path = tmp_path / "requests.jsonl"
    with RequestCache(path) as cache:
        cache.put("a", TeacherResponse("first", "stop"))
        cache.put("b", TeacherResponse("second", "stop"))
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"format": 1, "key": "c", "resp')
    with caplog.at_level(logging.WARNING), RequestCache(path) as cache:
        assert len(cache) == 2 and "c" not in cache
        cache.put("c", TeacherResponse("third", "stop"))
    assert "partial record" in caplog.text
    with RequestCache(path) as cache:
        assert [cache.get(k).text for k in "abc"] == ["first", "second", "third"]


def test_cache_keeps_the_first_of_repeated_keys_and_never_caches_failures(tmp_path):
    path = tmp_path / "requests.jsonl"
    with RequestCache(path) as cache:
        cache.put("a", TeacherResponse("first", "stop"))
        with pytest.raises(ValueError, match="Only successful responses are cached"):
            cache.put("b", TeacherResponse(None, error="timeout"))
    line = path.read_text().splitlines()[0]
    path.write_text(line + "\n" + line.replace('"first"', '"later"') + "\n")
    with RequestCache(path) as cache:
        assert len(cache) == 1 and cache.get("a").text == "first" and cache.get("b") is None


def test_cache_refuses_a_corrupt_line_in_the_middle(tmp_path):
    path = tmp_path / "requests.jsonl"
    with RequestCache(path) as cache:
        cache.put("a", TeacherResponse("first", "stop"))
    path.write_text("not json\n" + path.read_text())
    with pytest.raises(ValueError, match="line 1, is not a valid record"):
        RequestCache(path)
