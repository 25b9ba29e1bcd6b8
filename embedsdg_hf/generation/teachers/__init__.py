"""Teacher LLM clients behind one small protocol (:class:`Teacher`), and :func:`load_teacher` to build one from a
spec string.

Example:
    >>> from embedsdg_hf.generation.teachers import load_teacher
    >>> load_teacher("openai:meta-llama/Llama-3.1-70B-Instruct@http://gpu1:8000/v1,http://gpu2:8000/v1")
    OpenAITeacher(model='meta-llama/Llama-3.1-70B-Instruct', base_urls=['http://gpu1:8000/v1', 'http://gpu2:8000/v1'])
    >>> load_teacher("transformers:smollm2-135m-instruct", batch_size=16)
    TransformersTeacher(model='smollm2-135m-instruct', batch_size=16, device='cpu')
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .base import SamplingParams, Teacher, TeacherError, TeacherRequest, TeacherResponse
from .family_teacher import FamilyTeacher, load_family_teacher
from .openai_teacher import OpenAITeacher
from .transformers_teacher import TransformersTeacher

__all__ = [
    "FamilyTeacher",
    "OpenAITeacher",
    "SamplingParams",
    "Teacher",
    "TeacherError",
    "TeacherRequest",
    "TeacherResponse",
    "TransformersTeacher",
    "load_teacher",
]

logger = logging.getLogger(__name__)

SPEC_FORMS = (
    "'transformers:<model spec>' (e.g. 'transformers:smollm2-135m-instruct') or "
    "'openai:<model name>@<base_url>[,<base_url>...]' (e.g. 'openai:meta-llama/Llama-3.1-70B-Instruct@"
    "http://gpu1:8000/v1,http://gpu2:8000/v1'), or the testbed's control 'family:<pool file>' / "
    "'family:word-problems'"
)
# The model name ends at the first '@' that starts an http(s) URL (model names may not contain '@http').
_OPENAI_SPEC = re.compile(r"^(?P<model>[^\s].*?)@(?P<urls>https?://\S+)$")


def load_teacher(spec: str, **kwargs: Any) -> Teacher:
    """Build a teacher from a spec string; ``kwargs`` go to the teacher's constructor.

    Forms: ``"transformers:<model spec>"`` for :class:`TransformersTeacher`,
    ``"openai:<model name>@<base_url>[,<base_url>...]"`` for :class:`OpenAITeacher`, and ``"family:<pool file>"``
    for :class:`FamilyTeacher` (the targeting testbed's control: fresh problems of a seed's family; ``kwargs`` that
    only apply to LLM backends, such as ``batch_size``, are ignored with a warning).

    Example:
        >>> load_teacher("openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1", max_concurrency=8).identity()
        {'backend': 'openai', 'model': 'Qwen/Qwen2.5-7B-Instruct'}
    """
    if not isinstance(spec, str):
        raise ValueError(f"A teacher spec must be a string, got {type(spec).__name__}. Use {SPEC_FORMS}.")
    backend, sep, rest = spec.strip().partition(":")
    if sep and backend == "transformers" and rest.strip():
        return TransformersTeacher(rest.strip(), **kwargs)
    if sep and backend == "family" and rest.strip():
        ignored = sorted(set(kwargs) - {"question_column", "family_column"})
        if ignored:
            logger.warning("The family teacher ignores %s (they apply to LLM backends).", ignored)
        return load_family_teacher(rest.strip(), **{k: v for k, v in kwargs.items() if k not in ignored})
    if sep and backend == "openai":
        match = _OPENAI_SPEC.match(rest.strip())
        if match is None:
            raise ValueError(
                f"Teacher spec {spec!r} has no '<model name>@<base_url>' part after 'openai:'. Use {SPEC_FORMS}."
            )
        urls = [url.strip() for url in match["urls"].split(",") if url.strip()]
        return OpenAITeacher(match["model"].strip(), urls, **kwargs)
    raise ValueError(f"Unknown teacher spec {spec!r}. Use {SPEC_FORMS}.")
