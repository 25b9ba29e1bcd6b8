"""Teacher clients: OpenAITeacher against a real (scripted, faulty) HTTP server; TransformersTeacher with SmolLM2."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest
from _servers import FaultyOpenAIServer, delay, drop, empty, free_port, malformed, ok, status

from embedsdg_hf.generation.teachers import (
    OpenAITeacher,
    SamplingParams,
    Teacher,
    TeacherError,
    TeacherRequest,
    TeacherResponse,
    TransformersTeacher,
    load_teacher,
)
from embedsdg_hf.generation.teachers.openai_teacher import parse_retry_after

SECRET = "sk-test-very-secret-0123456789"


def make_requests(n: int, **kwargs) -> list[TeacherRequest]:
    return [TeacherRequest(messages=({"role": "user", "content": f"q{i}"},), **kwargs) for i in range(n)]


def run(teacher, requests) -> dict[int, TeacherResponse]:
    """Generate and collect the results, checking that each index is reported exactly once."""
    results: dict[int, TeacherResponse] = {}

    def on_result(index: int, response: TeacherResponse) -> None:
        assert index not in results, f"index {index} reported twice"
        results[index] = response

    teacher.generate(requests, on_result, progress=False)
    return results


def client(server_or_urls, **kwargs) -> OpenAITeacher:
    """An OpenAITeacher with fast back-off and a generous timeout (the test machine may be loaded)."""
    urls = server_or_urls.base_url if isinstance(server_or_urls, FaultyOpenAIServer) else server_or_urls
    return OpenAITeacher("test-model", urls, **{"backoff_base": 0.01, "timeout": 30.0, **kwargs})


@pytest.fixture
def server():
    with FaultyOpenAIServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# ---------------------------------------------------------------------------------------------------------------
# OpenAITeacher: the happy path and the request body
# ---------------------------------------------------------------------------------------------------------------


def test_on_result_once_per_request_with_matching_index(server):
    teacher = client(server, max_concurrency=8)
    assert isinstance(teacher, Teacher)
    results = run(teacher, make_requests(50))
    assert sorted(results) == list(range(50))
    assert all(results[i].text == f"q{i}" and results[i].ok and results[i].attempts == 1 for i in range(50))
    assert len(server.chat_requests) == 50


def test_request_body_and_headers(server):
    teacher = client(server, extra_body={"top_k": 20})
    sampling = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=77)
    run(teacher, [TeacherRequest(({"role": "user", "content": "hi"},), sampling, seed=11, prefill="### Q\n")])
    run(teacher, [TeacherRequest(({"role": "user", "content": "hi"},), sampling)])
    first, second = (r.body for r in server.chat_requests)
    assert first == {
        "model": "test-model",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 77,
        "seed": 11,
        "top_k": 20,
    }  # no prefill sent: assistant_prefill is off
    assert "seed" not in second
    assert "authorization" not in server.chat_requests[0].headers  # no key set: fine for local servers


def test_structured_output_reaches_the_server_and_its_json_is_parsed(server, gsm8k_rows):
    """response_format and extra_body go out with every request (part of the teacher's identity, so of the cache
    key); the server's JSON answers come back through make_synthetic_dataset as parsed examples."""
    import datasets

    from embedsdg_hf.generation.generate import make_synthetic_dataset
    from embedsdg_hf.generation.parse import json_response_format

    rows = gsm8k_rows[:3]
    answers = [
        json.dumps(
            {
                "question": r["question"],
                "answer": r["answer"].rsplit("####", 1)[0].strip(),
                "final_answer": r["answer"].rsplit("####", 1)[1].strip(),
            }
        )
        for r in rows[:2]
    ]
    server.script(ok(answers[0]), ok(answers[1]), ok('{"question": "Cut', finish_reason="length"))
    teacher = client(server, max_concurrency=1, response_format=json_response_format(), extra_body={"top_k": 20})
    assert teacher.identity()["response_format"] == json_response_format()
    pool = datasets.Dataset.from_list(rows)
    ds = make_synthetic_dataset(pool, teacher=teacher, method="random", n_samples=3)
    for request in server.chat_requests:
        assert request.body["response_format"] == json_response_format() and request.body["top_k"] == 20
    assert ds["reject_reason"][:] == [None, None, "truncated"]
    assert ds["question"][:2] == [r["question"] for r in rows[:2]]
    assert ds["final_answer"][:2] == [r["answer"].rsplit("####", 1)[1].strip() for r in rows[:2]]
    assert ds[0]["completion"][0]["content"].endswith(f"#### {ds[0]['final_answer']}")


def test_assistant_prefill_uses_continue_final_message(server):
    teacher = client(server, assistant_prefill=True)
    requests = [
        TeacherRequest(({"role": "user", "content": "hi"},), prefill="### Question\n"),
        TeacherRequest(({"role": "user", "content": "hi"},)),
    ]
    results = run(teacher, requests)
    assert results[0].prefill_applied and not results[1].prefill_applied
    bodies = sorted((r.body for r in server.chat_requests), key=lambda b: len(b["messages"]))
    assert "continue_final_message" not in bodies[0]
    assert bodies[1]["messages"][-1] == {"role": "assistant", "content": "### Question\n"}
    assert bodies[1]["continue_final_message"] is True and bodies[1]["add_generation_prompt"] is False


def test_prefill_not_applied_without_the_option(server):
    results = run(client(server), [TeacherRequest(({"role": "user", "content": "hi"},), prefill="### Q\n")])
    assert not results[0].prefill_applied
    assert server.chat_requests[0].body["messages"] == [{"role": "user", "content": "hi"}]


def test_identity_has_model_and_extra_body_but_no_urls_or_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    teacher = OpenAITeacher("m", ["http://a:1/v1", "http://b:2/v1/"], extra_body={"top_k": 5})
    assert teacher.identity() == {"backend": "openai", "model": "m", "top_k": 5}
    assert teacher.base_urls == ["http://a:1/v1", "http://b:2/v1"]
    assert SECRET not in repr(teacher)


def test_empty_content_and_length_are_passed_through(server):
    server.script(empty(), ok("cut sho", finish_reason="length"))
    results = run(client(server, max_concurrency=1), make_requests(2))
    assert results[0].ok and results[0].text == "" and results[0].finish_reason == "stop"
    assert results[1].ok and results[1].text == "cut sho" and results[1].finish_reason == "length"
    assert all(r.attempts == 1 for r in results.values())


def test_usage_totals(server):
    server.default = ok(prompt_tokens=10, completion_tokens=4)
    server.script(malformed('{"choices": [{"message": {"content": "no usage"}, "finish_reason": "stop"}]}'))
    teacher = client(server, max_concurrency=1)
    results = run(teacher, make_requests(3))
    assert (results[0].prompt_tokens, results[0].completion_tokens, results[0].text) == (0, 0, "no usage")
    assert (results[1].prompt_tokens, results[1].completion_tokens) == (10, 4)
    run(teacher, make_requests(2))  # totals accumulate over calls
    assert teacher.usage == {"requests": 5, "prompt_tokens": 40, "completion_tokens": 16, "retries": 0, "failures": 0}


def test_empty_request_list_sends_nothing(server):
    run(client(server), [])
    assert server.requests == []


# ---------------------------------------------------------------------------------------------------------------
# OpenAITeacher: retries and errors
# ---------------------------------------------------------------------------------------------------------------


def test_429_retry_after_is_honoured(server):
    server.script(status(429, retry_after=1))
    teacher = client(server, backoff_base=0.0, backoff_max=30.0)
    start = time.monotonic()
    results = run(teacher, make_requests(1))
    assert time.monotonic() - start >= 0.95  # the header asked for 1 s; back-off alone would be ~0 s
    assert results[0].ok and results[0].attempts == 2
    first, second = server.chat_requests
    assert second.received_at - first.received_at >= 0.95
    assert teacher.usage["retries"] == 1


def test_retry_after_http_date_and_cap():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    teacher = OpenAITeacher("m", "http://127.0.0.1:1/v1", backoff_max=3.0)
    assert teacher._delay(1, retry_after=120.0) == 3.0


@pytest.mark.parametrize(
    "fault",
    [status(500), status(503, body="overloaded"), drop(), malformed()],
    ids=["500", "503", "dropped-connection", "malformed-json"],
)
def test_transient_fault_then_success(server, fault):
    server.script(fault)
    teacher = client(server)
    results = run(teacher, make_requests(1))
    assert results[0].ok and results[0].text == "q0" and results[0].attempts == 2
    assert len(server.chat_requests) == 2
    assert teacher.usage["retries"] == 1 and teacher.usage["failures"] == 0


def test_read_timeout_is_retried(server):
    server.script(delay(3.0))
    results = run(client(server, timeout=0.5), make_requests(1))
    assert results[0].ok and results[0].attempts == 2


@pytest.mark.parametrize(
    "body", ['{"choices": [', '{"id": "x", "object": "chat.completion"}', "[]"], ids=["bad-json", "no-choices", "list"]
)
def test_malformed_response_is_an_error_after_retries(server, body):
    server.default = malformed(body)
    teacher = client(server, max_retries=2)
    results = run(teacher, make_requests(1))
    assert not results[0].ok and results[0].text is None
    assert results[0].error.startswith("malformed response: ")
    assert results[0].attempts == 3 and len(server.chat_requests) == 3
    assert teacher.usage["failures"] == 1


def test_other_4xx_is_an_error_without_retry(server):
    server.script(status(400, body='{"error": "max_tokens is too large"}'))
    results = run(client(server, max_concurrency=1), make_requests(2))
    assert results[0].error == f'HTTP 400 from {server.base_url}: {{"error": "max_tokens is too large"}}'
    assert results[0].attempts == 1 and results[1].ok
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize("code", [401, 403])
def test_rejected_key_raises_without_retry_and_never_shows_the_key(server, monkeypatch, caplog, code):
    monkeypatch.setenv("MY_TEACHER_KEY", SECRET)
    server.script(ok("first"), status(code, body=f'{{"error": "invalid key {SECRET}"}}'))
    teacher = client(server, api_key_env="MY_TEACHER_KEY", max_concurrency=1)
    results: dict[int, TeacherResponse] = {}
    with caplog.at_level(logging.DEBUG), pytest.raises(TeacherError) as excinfo:
        teacher.generate(make_requests(3), results.__setitem__, progress=False)
    message = str(excinfo.value)
    assert "rejected the API key" in message and server.base_url in message and "MY_TEACHER_KEY" in message
    assert SECRET not in message and SECRET not in caplog.text
    assert len(server.chat_requests) == 2  # no retry, and nothing sent after the fatal error
    assert server.chat_requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert list(results) == [0] and results[0].text == "first"  # what was reported before stands


def test_unreachable_server_raises_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    teacher = client(url, max_retries=3, backoff_base=0.001)
    with pytest.raises(TeacherError, match=r"could not reach http://127\.0\.0\.1:\d+/v1 after 4 attempts"):
        run(teacher, make_requests(2))


def test_two_base_urls_share_the_load():
    with FaultyOpenAIServer(delay(0.05)) as a, FaultyOpenAIServer(delay(0.05)) as b:
        results = run(client([a.base_url, b.base_url], max_concurrency=4), make_requests(24))
        assert all(r.ok for r in results.values())
        assert len(a.chat_requests) >= 4 and len(b.chat_requests) >= 4
        assert len(a.chat_requests) + len(b.chat_requests) == 24


def test_retries_go_to_another_base_url(server):
    down = f"http://127.0.0.1:{free_port()}/v1"
    teacher = client([down, server.base_url], max_concurrency=2, max_retries=2)
    results = run(teacher, make_requests(10))
    assert all(r.ok for r in results.values()) and len(server.chat_requests) == 10


def test_concurrency_bound_is_respected():
    with FaultyOpenAIServer(delay(0.2)) as server:
        results = run(client(server, max_concurrency=4), make_requests(24))
        assert len(results) == 24
        assert 1 < server.max_in_flight <= 4


def test_on_result_error_stops_the_run(server):
    def on_result(index: int, response: TeacherResponse) -> None:
        raise KeyError("caller bug")

    with pytest.raises(KeyError, match="caller bug"):
        client(server, max_concurrency=1).generate(make_requests(5), on_result, progress=False)
    assert len(server.chat_requests) < 5


def test_generate_inside_a_running_event_loop(server):
    teacher = client(server, max_concurrency=4)
    threads: set[int] = set()
    results: dict[int, TeacherResponse] = {}

    def on_result(index: int, response: TeacherResponse) -> None:
        threads.add(threading.get_ident())
        results[index] = response

    async def main() -> None:
        teacher.generate(make_requests(6), on_result, progress=False)

    asyncio.run(main())
    assert sorted(results) == list(range(6)) and threads == {threading.get_ident()}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"base_urls": []}, "base_urls is empty"),
        ({"base_urls": "gpu1:8000/v1"}, "not an http"),
        ({"extra_body": {"temperature": 1.0}}, "extra_body may not set"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"response_format": {"json_schema": {}}}, "response_format must be an OpenAI response_format object"),
        ({"response_format": {"type": "json_object"}, "extra_body": {"response_format": {}}}, "given twice"),
        ({"response_format": {"type": "json_object"}, "assistant_prefill": True}, "assistant_prefill cannot"),
    ],
)
def test_openai_teacher_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OpenAITeacher(**{"model": "m", "base_urls": "http://127.0.0.1:1/v1", **kwargs})


# ---------------------------------------------------------------------------------------------------------------
# load_teacher
# ---------------------------------------------------------------------------------------------------------------


def test_load_teacher_openai_spec():
    teacher = load_teacher(
        "openai:meta-llama/Llama-3.1-70B-Instruct@http://gpu1:8000/v1,http://gpu2:8000/v1", max_concurrency=8
    )
    assert isinstance(teacher, OpenAITeacher)
    assert teacher.model == "meta-llama/Llama-3.1-70B-Instruct" and teacher.max_concurrency == 8
    assert teacher.base_urls == ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]
    assert load_teacher("openai:org/m@2024@https://api.example.com/v1").model == "org/m@2024"


def test_load_teacher_transformers_spec():
    teacher = load_teacher("transformers:smollm2-135m-instruct", batch_size=4)
    assert isinstance(teacher, TransformersTeacher) and isinstance(teacher, Teacher)
    assert (teacher.model, teacher.batch_size) == ("smollm2-135m-instruct", 4)


@pytest.mark.parametrize(
    "spec",
    [
        "smollm2-135m-instruct",
        "vllm:m@http://x/v1",
        "openai:m",
        "openai:@http://x/v1",
        "openai:m@ftp://x",
        "transformers:",
    ],
)
def test_load_teacher_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match=r"transformers:<model spec>.*openai:<model name>@<base_url>"):
        load_teacher(spec)


# ---------------------------------------------------------------------------------------------------------------
# TransformersTeacher (real SmolLM2-135M-Instruct)
# ---------------------------------------------------------------------------------------------------------------

QUESTIONS = ["What is 2 + 3?", "Name a colour.", "Write one word about the sea, then explain it in a long paragraph."]


@pytest.fixture(scope="module")
def smol(student):
    from embedsdg_hf.common.models import load_student

    model, tokenizer = load_student(student)
    return student, model, tokenizer


def direct_greedy(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """What the teacher should match: plain ``model.generate`` on the templated prompt texts."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    output = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def chat(question: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": question},)


def test_transformers_greedy_matches_direct_generate(smol):
    spec, model, tokenizer = smol
    greedy = SamplingParams(temperature=0, max_tokens=12)
    one = [TeacherRequest(chat(QUESTIONS[0]), greedy)]
    template = tokenizer.apply_chat_template(list(one[0].messages), tokenize=False, add_generation_prompt=True)
    results = run(TransformersTeacher(spec, batch_size=1), one)
    assert results[0].text == direct_greedy(model, tokenizer, [template], 12)[0]
    assert results[0].model == spec and results[0].ok

    batch = [TeacherRequest(chat(q), greedy) for q in QUESTIONS]
    prompts = [
        tokenizer.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True) for r in batch
    ]
    results = run(TransformersTeacher(spec, batch_size=3), batch)
    assert [results[i].text for i in range(3)] == direct_greedy(model, tokenizer, prompts, 12)
    for i, prompt in enumerate(prompts):
        assert results[i].prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def test_transformers_prefill_is_applied(smol):
    spec, model, tokenizer = smol
    request = TeacherRequest(chat(QUESTIONS[1]), SamplingParams(temperature=0, max_tokens=8), prefill="My answer is")
    results = run(TransformersTeacher(spec), [request])
    prompt = tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
    assert results[0].prefill_applied
    assert results[0].text == direct_greedy(model, tokenizer, [prompt + "My answer is"], 8)[0]
    assert not results[0].text.startswith("My answer is")


def test_transformers_finish_reason_and_token_counts(smol):
    spec, _, _ = smol
    requests = [TeacherRequest(chat(q), SamplingParams(temperature=0, max_tokens=3)) for q in QUESTIONS]
    requests.append(
        TeacherRequest(chat("Reply with only the word: yes"), SamplingParams(temperature=0, max_tokens=48))
    )
    results = run(TransformersTeacher(spec, batch_size=2), requests)
    for i in range(3):
        assert results[i].finish_reason == "length" and results[i].completion_tokens == 3
    last = results[3]  # greedy, so deterministic: SmolLM2 ends its turn well before 48 tokens
    assert last.finish_reason == "stop" and 0 < last.completion_tokens < 48 and last.text


def test_transformers_seeded_sampling_is_reproducible(smol):
    spec, _, _ = smol
    teacher = TransformersTeacher(spec, batch_size=4)
    hot = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=16)

    def sample(seed: int) -> list[str]:
        results = run(teacher, [TeacherRequest(chat(q), hot, seed=seed) for q in QUESTIONS])
        return [results[i].text for i in range(len(QUESTIONS))]

    first = sample(1)
    assert sample(1) == first
    assert any(sample(seed) != first for seed in (2, 3))


def test_transformers_groups_by_sampling_and_reports_every_index(smol):
    spec, _, _ = smol
    short, longer = SamplingParams(temperature=0, max_tokens=2), SamplingParams(temperature=0, max_tokens=4)
    requests = [TeacherRequest(chat(f"Say {i}"), short if i % 2 else longer) for i in range(5)]
    results = run(TransformersTeacher(spec, batch_size=2), requests)
    assert sorted(results) == list(range(5))
    assert all(results[i].completion_tokens <= (2 if i % 2 else 4) for i in range(5))


def test_transformers_identity(smol):
    spec, _, _ = smol
    identity = TransformersTeacher(spec).identity()
    assert identity["backend"] == "transformers" and identity["model"] == spec
    assert isinstance(identity["revision"], str) and len(identity["revision"]) == 16
    with pytest.raises(ValueError, match="batch_size"):
        TransformersTeacher(spec, batch_size=0)


# ---------------------------------------------------------------------------------------------------------------
# Recipes: teacher_response_format / teacher_extra_body reach the HTTP teacher
# ---------------------------------------------------------------------------------------------------------------


def test_recipe_response_format_and_extra_body(tmp_path):
    from trl import TrlParser

    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.generation.parse import json_response_format
    from embedsdg_hf.pipeline import _make_teacher

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nteacher: openai:m@http://127.0.0.1:1/v1\nteacher_response_format: json\n"
        "teacher_extra_body: {top_k: 20, chat_template_kwargs: {enable_thinking: false}}\n"
    )
    (config,) = TrlParser((PipelineConfig,)).parse_args_and_config(["--config", str(recipe)])
    assert config.teacher_extra_body == {"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}}
    teacher = _make_teacher(config, config.teacher)
    assert teacher.extra_body == {**config.teacher_extra_body, "response_format": json_response_format()}
    solver = _make_teacher(config, config.teacher, writes_examples=False)  # self-consistency: solutions, not JSON
    assert solver.extra_body == config.teacher_extra_body
    (flags,) = TrlParser((PipelineConfig,)).parse_args_and_config(
        ["--teacher", "openai:m@http://127.0.0.1:1/v1", "--teacher_extra_body", '{"top_k": 5}']
    )
    assert flags.teacher_extra_body == {"top_k": 5} and flags.teacher_response_format is None
    with pytest.raises(ValueError, match="apply to 'openai:' teachers only"):
        PipelineConfig(teacher_response_format="json")
    with pytest.raises(ValueError, match="teacher_extra_body must be a JSON object"):
        PipelineConfig(teacher="openai:m@http://127.0.0.1:1/v1", teacher_extra_body="top_k=5")
