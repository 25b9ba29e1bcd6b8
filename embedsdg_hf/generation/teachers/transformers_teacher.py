"""A teacher run in-process with ``transformers`` (offline; the built-in SmolLM2 by default).

Meant for tests, smoke runs and small teachers. The prompts of one call share their leading tokens (the chat
header and the instructions): that prefix is run once and kept once, each batch runs only its own prompt tails, and a
request leaves its batch as soon as it ends (:mod:`~embedsdg_hf.generation.shared_prefix`). For real runs serve a
large teacher with vLLM and use :class:`~embedsdg_hf.generation.teachers.openai_teacher.OpenAITeacher`.

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

from ...common.models import stop_token_ids
from .base import SamplingParams, TeacherRequest, TeacherResponse

logger = logging.getLogger(__name__)

CONSTRAINTS_VERSION = "v4"  # bump when the calculator / grammar / budget rules change what is generated


class TransformersTeacher:
    """Generate with a local ``transformers`` causal LM, loaded lazily from a model spec.

    Requests are grouped by equal :class:`SamplingParams` (in their original order) and generated ``batch_size`` at
    a time: greedy when ``temperature == 0``, else sampling with ``temperature``/``top_p`` (no top-k, like the
    OpenAI API). Each sampled request draws from its own generator seeded with its ``seed``, so its text is
    reproducible and does not depend on ``batch_size`` or the other requests. The prompt is the tokenizer's chat
    template (with the generation prompt) followed by :attr:`TeacherRequest.prefill`; the returned text is only what
    the model generated after it. The tokens all prompts of a group share are run once for the whole call.

    With ``calculator`` and/or ``grammar`` the decoding is constrained (:mod:`~embedsdg_hf.generation.constrained`):
    ``<<expr=`` is answered with the evaluator's value, and the text follows the example format of the answer format
    named by ``grammar`` (``"gsm8k"``: a numeric final answer, made to equal the solution's result when the
    calculator is on too). Both are part of :meth:`identity` (so of the request cache key) when set.

    Args:
        model: a model spec accepted by :func:`embedsdg_hf.common.models.resolve_model` (built-in name, path, Hub id).
        batch_size: requests per ``generate`` call.
        device: torch device of the model.
        calculator: evaluate ``<<expr=`` and force the result.
        grammar: ``"gsm8k"`` or ``"math"``: constrain responses to that example format; None: free text.

    Example:
        >>> TransformersTeacher("smollm2-135m-instruct").identity()  # doctest: +SKIP
        {'backend': 'transformers', 'model': 'smollm2-135m-instruct', 'revision': '3f1c...'}
    """

    def __init__(
        self,
        model: str = "smollm2-135m-instruct",
        *,
        batch_size: int = 32,
        device: str = "cpu",
        calculator: bool = False,
        grammar: str | None = None,
    ):
        from ..parse import FINAL_ANSWER_PATTERNS

        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty model spec string, got {model!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if grammar is not None and grammar not in FINAL_ANSWER_PATTERNS:
            raise ValueError(f"grammar must be one of {sorted(FINAL_ANSWER_PATTERNS)} or None, got {grammar!r}.")
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.calculator = bool(calculator)
        self.grammar = grammar
        from ..shared_prefix import TailCache

        self._tails = TailCache()  # a prompt asked again (best-of-n) skips its prefill

    def __repr__(self) -> str:
        extra = (", calculator=True" if self.calculator else "") + (
            f", grammar={self.grammar!r}" if self.grammar else ""
        )
        return (
            f"TransformersTeacher(model={self.model!r}, batch_size={self.batch_size}, device={self.device!r}{extra})"
        )

    def identity(self) -> dict[str, Any]:
        """Backend, model spec and a content stamp of the local model folder (and the constraints, when set)."""
        from ...space.embed import model_revision

        identity = {"backend": "transformers", "model": self.model, "revision": model_revision(self.model)}
        if self.calculator:
            identity["calculator"] = CONSTRAINTS_VERSION
        if self.grammar:
            identity["grammar"] = f"{self.grammar}:{CONSTRAINTS_VERSION}"
        return identity

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
        from ..shared_prefix import common_prefix_length

        requests = list(requests)
        if not requests:
            return
        model, tokenizer = load_student(self.model, device=self.device)
        groups: dict[SamplingParams, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.sampling, []).append(index)
        with tqdm(total=len(requests), desc="Teacher generation", unit="req", disable=not progress) as bar:
            for sampling, indices in groups.items():
                ids = {i: self.prompt_ids(tokenizer, requests[i]) for i in indices}
                shared = common_prefix_length(list(ids.values()))
                for start in range(0, len(indices), self.batch_size):
                    batch = indices[start : start + self.batch_size]
                    responses = self._generate_batch(
                        model, tokenizer, [requests[i] for i in batch], [ids[i] for i in batch], shared, sampling
                    )
                    for index, response in zip(batch, responses):
                        on_result(index, response)
                    bar.update(len(batch))
        if self._tails.hits:
            logger.info("Teacher: %d prompt prefills reused so far (best-of-n retries).", self._tails.hits)

    def prompt_text(self, tokenizer, request: TeacherRequest) -> str:
        """The exact prompt text: chat template with the generation prompt, then the prefill."""
        messages = [dict(message) for message in request.messages]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + request.prefill

    def prompt_ids(self, tokenizer, request: TeacherRequest) -> list[int]:
        """The prompt's token ids (the chat template already holds the special tokens it needs)."""
        return tokenizer(self.prompt_text(tokenizer, request), add_special_tokens=False)["input_ids"]

    def _generate_batch(
        self, model, tokenizer, batch: list[TeacherRequest], ids: list[list[int]], shared: int, sampling
    ) -> list[TeacherResponse]:
        """Generate one batch: ``ids[i][:shared]`` is the prefix every prompt of the call starts with."""
        from ...common.models import fork_safe_torch
        from ..shared_prefix import generate_after_prefix

        torch = fork_safe_torch()
        embed = model.get_input_embeddings()
        with torch.inference_mode():
            tails = [embed(torch.tensor(row[shared:], device=model.device)) for row in ids]
        budgets = [sampling.max_tokens] * len(batch)
        control = None
        if self.calculator or self.grammar:
            from ..constrained import RowConstraints
            from ..parse import example_grammar

            control = RowConstraints(
                tokenizer, budgets, calculator=self.calculator, prefills=[request.prefill for request in batch],
                grammar=example_grammar(self.grammar) if self.grammar else None,
            )  # fmt: skip
        tokens, finish = generate_after_prefix(
            model, ids[0][:shared], tails, budgets, stops=stop_token_ids(model, tokenizer),
            do_sample=sampling.temperature > 0, temperature=sampling.temperature, top_p=sampling.top_p,
            seed=[request.seed for request in batch], control=control,
            tail_cache=self._tails, tail_keys=[tuple(row[shared:]) for row in ids],
        )  # fmt: skip
        if control is not None:
            logger.info("Constrained decoding of %d requests: %s", len(batch), control.counts)
        return [
            TeacherResponse(
                text=tokenizer.decode(row, skip_special_tokens=True),
                finish_reason=reason,
                prompt_tokens=len(prompt),
                completion_tokens=len(row),
                model=self.model,
                prefill_applied=bool(request.prefill),
            )
            for row, reason, prompt, request in zip(tokens, finish, ids, batch)
        ]
