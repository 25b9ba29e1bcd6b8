"""Decoding engines for GPUs: the spliced embedding sequences of
:func:`~embedsdg_hf.generation.decode.add_decoded_text` sent to vLLM instead of ``transformers.generate``.

- ``engine="vllm"``: offline, in this process: ``vllm.LLM(model, enable_prompt_embeds=True)`` and one
  ``{"prompt_embeds": tensor}`` (``EmbedsPrompt``) per pair; vLLM batches and schedules them itself.
- ``engine="http://host:8000/v1"`` (several, comma-separated): the Completions API of
  ``vllm serve <model> --enable-prompt-embeds``, one request per pair with ``prompt_embeds`` = base64 of the
  ``torch.save``-d (L, N) tensor (vLLM's own ``tensor2base64`` encoding), spread over the servers.

Both send the whole sequence (copy prompt, averaged seeds, ``Output:`` cue); vLLM's prefix caching does what the
shared-prefix KV cache does in-process. Greedy by default, like the in-process path; texts are stripped the same way.

Example:
    >>> pairs = add_decoded_text(pairs, pool, model="meta-llama/Llama-3.1-8B-Instruct",
    ...                          engine="http://gpu1:8000/v1,http://gpu2:8000/v1")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

ENGINES = ("transformers", "vllm")


def parse_engine(engine: str) -> tuple[str, list[str]]:
    """``("transformers" | "vllm" | "http", base_urls)`` from an ``engine`` string; a clear error otherwise.

    Example:
        >>> parse_engine("http://127.0.0.1:8000/v1, http://127.0.0.1:8001/v1/")
        ('http', ['http://127.0.0.1:8000/v1', 'http://127.0.0.1:8001/v1'])
    """
    if engine in ENGINES:
        return engine, []
    urls = [url.strip().rstrip("/") for url in str(engine).split(",") if url.strip()]
    if urls and all(urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc for url in urls):
        return "http", urls
    raise ValueError(
        f"engine={engine!r} is not supported: use 'transformers', 'vllm', or the base URL(s) of "
        "`vllm serve ... --enable-prompt-embeds` servers, comma-separated ('http://host:8000/v1')."
    )


def per_row(max_new_tokens, n: int) -> list[int]:
    """One budget per sequence from an int (the same for all) or a sequence of ``n`` ints.

    Example:
        >>> per_row(8, 2), per_row([8, 12], 2)
        ([8, 8], [8, 12])
    """
    budgets = [int(max_new_tokens)] * n if isinstance(max_new_tokens, int) else [int(b) for b in max_new_tokens]
    if len(budgets) != n or min(budgets, default=1) < 1:
        raise ValueError(f"max_new_tokens must be >= 1, once or once per sequence ({n}), got {max_new_tokens!r}.")
    return budgets


def encode_prompt_embeds(tensor) -> str:
    """Base64 of ``torch.save(tensor)``: the ``prompt_embeds`` encoding of vLLM's Completions API."""
    import torch

    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_prompt_embeds(text: str):
    """The tensor of :func:`encode_prompt_embeds` (``weights_only``: no code runs while loading)."""
    import torch

    return torch.load(io.BytesIO(base64.b64decode(text)), weights_only=True, map_location="cpu")


def generate_via_http(
    base_urls: list[str],
    served_model: str,
    sequences: list,
    *,
    max_new_tokens: int | Sequence[int],
    temperature: float = 0.0,
    seed: int = 0,
    timeout: float = 600.0,
    max_concurrency: int = 16,
) -> tuple[list[str], list[str]]:
    """POST one ``/completions`` request with ``prompt_embeds`` per sequence, round-robin over ``base_urls``
    (``max_new_tokens``: one budget, or one per sequence)."""
    try:
        import httpx
    except ImportError:  # the same client under its new distribution/module name
        import httpx2 as httpx

    budgets = per_row(max_new_tokens, len(sequences))

    def one(index: int) -> tuple[str, str]:
        url = f"{base_urls[index % len(base_urls)]}/completions"
        body = {
            "model": served_model,
            "prompt_embeds": encode_prompt_embeds(sequences[index]),
            "max_tokens": budgets[index],
            "temperature": temperature,
            "seed": seed,
        }
        response = httpx.post(
            url, content=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=timeout
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"{url} answered {response.status_code}: {response.text[:300]!r} (is it `vllm serve "
                f"{served_model} --enable-prompt-embeds`?)"
            )
        choice = response.json()["choices"][0]
        return choice["text"].strip(), "length" if choice.get("finish_reason") == "length" else "stop"

    with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(sequences)))) as pool:
        results = list(pool.map(one, range(len(sequences))))
    return [text for text, _ in results], [finish for _, finish in results]


@functools.lru_cache(maxsize=1)
def _vllm_llm(model: str):
    from vllm import LLM  # imported here: vLLM is an optional, GPU-only dependency

    return LLM(model=model, enable_prompt_embeds=True)


def generate_via_vllm(
    model: str, sequences: list, *, max_new_tokens: int | Sequence[int], temperature: float = 0.0, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Offline vLLM: one ``EmbedsPrompt`` per sequence (each with its own budget), one ``LLM.generate`` call."""
    from ..common.models import resolve_model

    try:
        from vllm import SamplingParams
    except ImportError as exc:
        raise ImportError("engine='vllm' needs vLLM on a GPU machine: `pip install vllm`.") from exc
    llm = _vllm_llm(resolve_model(model))
    params = [
        SamplingParams(temperature=temperature, max_tokens=budget, seed=seed)
        for budget in per_row(max_new_tokens, len(sequences))
    ]
    outputs = llm.generate([{"prompt_embeds": seq} for seq in sequences], params, use_tqdm=False)
    texts = [out.outputs[0].text.strip() for out in outputs]
    finish = ["length" if out.outputs[0].finish_reason == "length" else "stop" for out in outputs]
    return texts, finish
