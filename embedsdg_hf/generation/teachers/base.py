"""The Teacher protocol: what the generation step needs from a teacher LLM, whatever serves it.

A teacher takes a list of :class:`TeacherRequest` and reports each :class:`TeacherResponse` through a callback *as
soon as it completes*, so the caller can persist finished work immediately (a crash never loses it). Backends:

- :class:`~embedsdg_hf.generation.teachers.transformers_teacher.TransformersTeacher`: in-process ``transformers``
(offline);
- :class:`~embedsdg_hf.generation.teachers.openai_teacher.OpenAITeacher`: any OpenAI-compatible HTTP server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings sent with every request (part of the request cache key)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TeacherRequest:
    """One chat request.

    Attributes:
        messages: OpenAI-style chat messages (``{"role": ..., "content": ...}``).
        sampling: the sampling settings.
        seed: per-request sampling seed (run seed + sample index), sent where the backend supports it.
        prefill: text the assistant turn starts with (e.g. ``"### Question\\n"``), used by backends that can
            continue an assistant message; :attr:`TeacherResponse.prefill_applied` says whether it was.
    """

    messages: tuple[dict[str, str], ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None
    prefill: str = ""


@dataclass
class TeacherResponse:
    """The outcome of one request. ``error`` is set (and ``text`` is None) when it failed after all retries."""

    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    prefill_applied: bool = False
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class TeacherError(RuntimeError):
    """A fault that retrying cannot fix (e.g. 401 Unauthorized, unreachable after all retries): stop the run."""


@runtime_checkable
class Teacher(Protocol):
    """What ``make_synthetic_dataset`` needs from a teacher."""

    def identity(self) -> dict[str, Any]:
        """What defines the teacher's outputs (backend, model; never secrets or base URLs). Part of cache keys."""
        ...

    def generate(
        self,
        requests: Sequence[TeacherRequest],
        on_result: Callable[[int, TeacherResponse], None],
        *,
        progress: bool = True,
    ) -> None:
        """Run all requests; call ``on_result(index, response)`` in the caller's thread as each one completes.

        Transient failures are retried inside; a request that still fails is reported with ``error`` set.
        Raises :class:`TeacherError` for faults no retry can fix (the results reported so far stand).
        """
        ...
