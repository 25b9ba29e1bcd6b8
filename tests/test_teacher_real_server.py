"""OpenAITeacher against a real ``transformers serve`` (CPU, SmolLM2-135M-Instruct) on 127.0.0.1.

What model name the server wants: ``transformers serve <folder>`` pins the server to that model, and a request's
``model`` must then be the folder path *exactly as given on the command line* (or be omitted); any other name gets
HTTP 400 (worded "Server is pinned to '<folder>'; requested '<name>'" so far). Responses name the served model:
``"<folder>"`` in current releases, ``"<folder>@main"`` (a revision suffix) in older ones. The tests assert these
contracts (the served model, with or without an ``@<revision>`` suffix; a 400 that is not retried), not one
release's wording. Older releases list only the Hugging Face hub cache at ``GET /v1/models`` (HTTP 500 when that
cache does not exist), so readiness is ``GET /health``.

The server starts in ~5-7 s here; the module takes ~15-35 s on 2 CPU cores (~60 s when they are fully loaded).
"""

from __future__ import annotations

import pytest
from _servers import start_transformers_serve, stop_transformers_serve

from embedsdg_hf.generation.teachers import (
    OpenAITeacher,
    SamplingParams,
    TeacherRequest,
    TeacherResponse,
    TransformersTeacher,
)

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0, top_p=1.0, max_tokens=16)
QUESTIONS = ["What is 2 + 3?", "Name a colour.", "Write a haiku about the sea."]


@pytest.fixture(scope="module")
def serve(student):
    from embedsdg_hf.common.models import resolve_model

    proc = start_transformers_serve(resolve_model(student), timeout=120)
    try:
        yield proc
    finally:
        stop_transformers_serve(proc)


def requests() -> list[TeacherRequest]:
    return [TeacherRequest(({"role": "user", "content": q},), GREEDY, seed=i) for i, q in enumerate(QUESTIONS)]


def names_served_model(reported: str, served: str) -> bool:
    """The contract on a response's ``model``: the served model, optionally with an ``@<revision>`` suffix
    (``transformers serve`` has reported both ``<folder>`` and ``<folder>@main``, depending on its release)."""
    return reported == served or reported.startswith(f"{served}@")


def generate(teacher, batch) -> dict[int, TeacherResponse]:
    results: dict[int, TeacherResponse] = {}
    teacher.generate(batch, results.__setitem__, progress=False)
    return results


def test_chat_requests_through_openai_teacher(serve):
    teacher = OpenAITeacher(serve.model, serve.base_url, max_concurrency=3, timeout=60.0)
    results = generate(teacher, requests())
    assert sorted(results) == [0, 1, 2]
    for response in results.values():
        assert response.ok and response.text.strip(), response
        assert response.finish_reason in ("stop", "length")
        assert response.prompt_tokens > 0 and 0 < response.completion_tokens <= GREEDY.max_tokens
        assert names_served_model(response.model, serve.model), (response.model, serve.model)
    usage = teacher.usage
    assert usage["requests"] == 3 and usage["failures"] == 0
    assert usage["prompt_tokens"] == sum(r.prompt_tokens for r in results.values())
    assert usage["completion_tokens"] == sum(r.completion_tokens for r in results.values())
    assert teacher.identity() == {"backend": "openai", "model": serve.model}


def test_server_matches_the_in_process_teacher(serve, student):
    """Same chat template and greedy decoding: the HTTP teacher and the in-process teacher agree."""
    over_http = generate(OpenAITeacher(serve.model, serve.base_url, timeout=60.0), requests()[:1])
    in_process = generate(TransformersTeacher(student, batch_size=1), requests()[:1])
    assert over_http[0].text == in_process[0].text
    assert over_http[0].prompt_tokens == in_process[0].prompt_tokens


def test_wrong_model_name_is_a_request_error(serve):
    teacher = OpenAITeacher("smollm2-135m-instruct", serve.base_url, timeout=60.0)
    results = generate(teacher, requests()[:1])
    # The same request under the served name succeeds (test above), so this 400 is the name's; its wording is the
    # server's own and differs between releases.
    assert results[0].error.startswith(f"HTTP 400 from {serve.base_url}"), results[0].error
    assert results[0].attempts == 1


def test_generation_and_validate_through_the_real_server(serve, student, tmp_path):
    """The whole generation step against the real server: make_synthetic_dataset, then `embedsdg validate`."""
    import subprocess
    import sys

    from embedsdg_hf import filter_accepted, load_teacher, make_synthetic_dataset
    from embedsdg_hf.data.word_problems import make_word_problems

    spec = f"openai:{serve.model}@{serve.base_url}"
    teacher = load_teacher(spec, max_concurrency=4)
    pool = make_word_problems(20, seed=0)
    sampling = SamplingParams(temperature=0, top_p=1.0, max_tokens=48)
    first = make_synthetic_dataset(
        pool, teacher=teacher, method="random", n_samples=3, sampling=sampling, cache_dir=tmp_path
    )
    assert len(first) == 3 and first["from_cache"] == [False] * 3
    assert all(first["raw_response"]) and sum(first["completion_tokens"]) > 0
    assert all(names_served_model(name, serve.model) for name in first["teacher_model"]), first["teacher_model"]
    assert len(first.filter(filter_accepted)) + sum(r is not None for r in first["reject_reason"]) == 3
    again = make_synthetic_dataset(
        pool, teacher=teacher, method="random", n_samples=3, sampling=sampling, cache_dir=tmp_path
    )
    assert again["from_cache"] == [True] * 3 and again["raw_response"] == first["raw_response"]
    assert teacher.usage["requests"] == 3  # the second call sent nothing

    checked = subprocess.run(
        [sys.executable, "-m", "embedsdg_hf.cli", "validate", "--pool_size", "10", "--teacher", spec],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"[ok] teacher reachable: {serve.base_url} answered" in checked.stdout
