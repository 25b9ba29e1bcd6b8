"""A teacher run in-process with ``transformers`` (offline; the built-in SmolLM2 by default).

Meant for tests, smoke runs and small teachers: requests are batched (left padding) and generated with
``model.generate``. For real runs serve a large teacher with vLLM and use
:class:`~embedsdg_hf.generation.teachers.openai_teacher.OpenAITeacher`.

Example:
    >>> from embedsdg_hf.generation.teachers import SamplingParams, TeacherRequest, TransformersTeacher
    >>> teacher = TransformersTeacher("smollm2-135m-instruct", batch_size=8)
    >>> request = TeacherRequest(({"role": "user", "content": "2+2?"},), SamplingParams(temperature=0, max_tokens=8))
    >>> teacher.generate([request], lambda i, r: print(i, r.text))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ...common.models import cut_at_stop, stop_token_ids
from .base import SamplingParams, TeacherRequest, TeacherResponse

logger = logging.getLogger(__name__)


class TransformersTeacher:
    """Generate with a local ``transformers`` causal LM, loaded lazily from a model spec.

    Requests are grouped by equal :class:`SamplingParams` (in their original order) and generated ``batch_size`` at
    a time: greedy when ``temperature == 0``, else sampling with ``temperature``/``top_p`` (no top-k, like the
    OpenAI API). A sampled batch is seeded with its first request's seed, so a run is reproducible for the same
    requests and ``batch_size``. The prompt is the tokenizer's chat template (with the generation prompt) followed
    by :attr:`TeacherRequest.prefill`; the returned text is only what the model generated after it.

    Args:
        model: a model spec accepted by :func:`embedsdg_hf.common.models.resolve_model` (built-in name, path, Hub id).
        batch_size: requests per ``generate`` call.
        device: torch device of the model.

    Example:
        >>> TransformersTeacher("smollm2-135m-instruct").identity()  # doctest: +SKIP
        {'backend': 'transformers', 'model': 'smollm2-135m-instruct', 'revision': '3f1c...'}
    """

    def __init__(self, model: str = "smollm2-135m-instruct", *, batch_size: int = 8, device: str = "cpu"):
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty model spec string, got {model!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.model = model
        self.batch_size = batch_size
        self.device = device

    def __repr__(self) -> str:
        return f"TransformersTeacher(model={self.model!r}, batch_size={self.batch_size}, device={self.device!r})"

    def identity(self) -> dict[str, Any]:
        """Backend, model spec and a content stamp of the local model folder."""
        from ...space.embed import model_revision

        return {"backend": "transformers", "model": self.model, "revision": model_revision(self.model)}

    def generate(
        self,
        requests: Sequence[TeacherRequest],
        on_result: Callable[[int, TeacherResponse], None],
        *,
        progress: bool = True,
    ) -> None:
        """Generate every request; call ``on_result(index, response)`` for each one after its batch."""
        from datasets.utils.tqdm import tqdm  # silenced by datasets.disable_progress_bars()

        from ...common.models import load_student

        requests = list(requests)
        if not requests:
            return
        model, tokenizer = load_student(self.model, device=self.device)
        groups: dict[SamplingParams, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.sampling, []).append(index)
        with tqdm(total=len(requests), desc="Teacher generation", unit="req", disable=not progress) as bar:
            for sampling, indices in groups.items():
                for start in range(0, len(indices), self.batch_size):
                    batch = indices[start : start + self.batch_size]
                    responses = self._generate_batch(model, tokenizer, [requests[i] for i in batch], sampling)
                    for index, response in zip(batch, responses):
                        on_result(index, response)
                    bar.update(len(batch))

    def prompt_text(self, tokenizer, request: TeacherRequest) -> str:
        """The exact prompt text: chat template with the generation prompt, then the prefill."""
        messages = [dict(message) for message in request.messages]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + request.prefill

    def _generate_batch(
        self, model, tokenizer, batch: list[TeacherRequest], sampling: SamplingParams
    ) -> list[TeacherResponse]:
        from ...common.models import fork_safe_torch

        torch = fork_safe_torch()
        prompts = [self.prompt_text(tokenizer, request) for request in batch]
        # The chat template already holds the special tokens it needs.
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens, "pad_token_id": tokenizer.pad_token_id}
        if sampling.temperature == 0:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        seed = batch[0].seed
        with torch.random.fork_rng(devices=[]), torch.inference_mode():  # leave the caller's RNG state alone
            if seed is not None and sampling.temperature > 0:
                torch.manual_seed(seed)
            output = model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        stops = stop_token_ids(model, tokenizer)
        responses = []
        for tokens, prompt_length, request in zip(new_tokens, prompt_lengths, batch):
            kept, finish_reason = cut_at_stop(tokens, stops)
            if finish_reason == "length" and len(tokens) < sampling.max_tokens:
                finish_reason = "stop"  # ended without EOS before the budget (e.g. every row finished)
            responses.append(
                TeacherResponse(
                    text=tokenizer.decode(kept, skip_special_tokens=True),
                    finish_reason=finish_reason,
                    prompt_tokens=int(prompt_length),
                    completion_tokens=len(kept),
                    model=self.model,
                    prefill_applied=bool(request.prefill),
                )
            )
        return responses
