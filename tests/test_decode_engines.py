"""Decode engines: the HTTP Completions path with base64 ``prompt_embeds`` (vLLM's encoding), against a real server
on 127.0.0.1 that decodes with the real built-in student, must give the in-process text."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
import torch
from _pairs import interpolated_pairs
from datasets import Dataset

from embedsdg_hf import add_decoded_text
from embedsdg_hf.common.models import resolve_model
from embedsdg_hf.generation.decode import generate_from_embeddings
from embedsdg_hf.generation.decode_engines import decode_prompt_embeds, encode_prompt_embeds, parse_engine


class PromptEmbedsServer:
    """``POST /v1/completions`` as ``vllm serve --enable-prompt-embeds`` takes it, decoded by the real student."""

    def __init__(self, model: str):
        self.model, self.requests = model, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if self.path != "/v1/completions" or body.get("model") != resolve_model(outer.model):
                    self.send_response(404)
                    self.end_headers()
                    return
                embeds = decode_prompt_embeds(body["prompt_embeds"])
                texts, finish = generate_from_embeddings(outer.model, [embeds], max_new_tokens=body["max_tokens"])
                choice = {"index": 0, "text": texts[0], "finish_reason": finish[0]}
                data = json.dumps({"object": "text_completion", "choices": [choice]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def pool(gsm8k_rows):
    return Dataset.from_list(gsm8k_rows[:40])


@pytest.fixture(scope="module")
def pairs(student, pool):
    return interpolated_pairs(pool, student)


def test_prompt_embeds_encoding_round_trips_exactly():
    tensor = torch.randn(7, 5)
    assert torch.equal(decode_prompt_embeds(encode_prompt_embeds(tensor)), tensor)


def test_http_engine_gives_the_in_process_text(student, pool, pairs):
    local = add_decoded_text(pairs, pool, model=student, max_new_tokens=16, shared_prefix=False, batch_size=1)
    with PromptEmbedsServer(student) as one, PromptEmbedsServer(student) as two:
        remote = add_decoded_text(
            pairs, pool, model=student, max_new_tokens=16, engine=f"{one.base_url},{two.base_url}"
        )
    assert remote["decoded_text"] == local["decoded_text"]
    assert remote["decoded_finish_reason"] == local["decoded_finish_reason"]
    assert len(one.requests) + len(two.requests) == len(pairs) and one.requests and two.requests
    sent = one.requests[0]
    assert sent["max_tokens"] == 16 and sent["temperature"] == 0.0
    assert decode_prompt_embeds(sent["prompt_embeds"]).shape[1] == 576  # (L, hidden) of the student
    assert remote._fingerprint != local._fingerprint


def test_engine_errors_name_what_is_allowed(student, pool, pairs):
    assert parse_engine("vllm") == ("vllm", [])
    with pytest.raises(ValueError, match=r"engine='tgi' is not supported: use 'transformers', 'vllm', or the base"):
        add_decoded_text(pairs, pool, model=student, engine="tgi")
