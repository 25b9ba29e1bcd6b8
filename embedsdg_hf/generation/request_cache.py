"""An append-only, crash-safe record of finished teacher requests, so an interrupted generation run resumes.

Like lm-evaluation-harness' request cache, a result is keyed by everything that defines it: the teacher's identity,
the messages, the sampling settings, the request seed, the prefill and the sample index (:func:`request_key`). The
file is JSON Lines (:class:`~embedsdg_hf.common.jsonl_store.JsonlStore`), one record per finished request, each
written with ``flush`` + ``os.fsync`` before the next request's result is handled, so a ``kill -9`` loses at most the
line being written. On load, a torn last line is cut off (with a warning) and a repeated key keeps its first record.

Only successful, non-empty responses are cached: a failed request, or an empty answer (a server that returned
no text), is sent again on the next run; an empty answer an older version cached is not reused. One process writes
a file at a time, which a lock file (``<path>.lock``) enforces; a second writer gets a clear error instead of
interleaved lines.

Public API: :class:`RequestCache`, :func:`request_key`, :func:`run_cached` (send what is not cached, cache what comes
back).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path  # noqa: F401 - the doctest uses it
from typing import Any

from ..common.jsonl_store import JsonlStore, canonical_key
from .teachers.base import Teacher, TeacherError, TeacherRequest, TeacherResponse

logger = logging.getLogger(__name__)

__all__ = ["RequestCache", "request_key", "run_cached"]

_RESPONSE_FIELDS = ("text", "finish_reason", "prompt_tokens", "completion_tokens", "model", "prefill_applied")


def request_key(teacher_identity: Mapping[str, Any], request: TeacherRequest, sample_index: int) -> str:
    """The sha256 of the canonical JSON of what defines a teacher result.

    Example:
        >>> from embedsdg_hf.generation.teachers.base import TeacherRequest
        >>> request = TeacherRequest(({"role": "user", "content": "hi"},))
        >>> key = request_key({"backend": "fake", "model": "m"}, request, 0)
        >>> len(key)
        64
    """
    payload = {
        "teacher": dict(teacher_identity),
        "messages": [dict(message) for message in request.messages],
        "sampling": request.sampling.to_dict(),
        "seed": request.seed,
        "prefill": request.prefill,
        "sample_index": sample_index,
    }
    try:
        return canonical_key(payload)
    except TypeError as err:
        raise TypeError(f"The teacher identity must be JSON-serialisable to key the request cache: {err}") from None


def _response(record: Mapping[str, Any]) -> TeacherResponse:
    return TeacherResponse(**{f: record[f] for f in _RESPONSE_FIELDS})


class RequestCache(JsonlStore):
    """Finished teacher responses by :func:`request_key`, persisted to an append-only JSONL file
    (:class:`~embedsdg_hf.common.jsonl_store.JsonlStore`).

    Use it as a context manager (or call :meth:`close`) so the writer lock is released.

    Example:
        >>> import tempfile
        >>> from embedsdg_hf.generation.teachers.base import TeacherResponse
        >>> with RequestCache(Path(tempfile.mkdtemp()) / "requests.jsonl") as cache:
        ...     cache.put("k1", TeacherResponse(text="### Question ...", finish_reason="stop"))
        ...     cache.get("k1").finish_reason
        'stop'
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__(
            path,
            what="request cache",
            field="response",
            parse=_response,
            busy_fix="Wait for that run to finish, or give this run its own cache_dir.",
        )

    def put(self, key: str, response: TeacherResponse) -> None:
        """Append a successful response durably (flush + fsync). A key already cached is left as it is."""
        if not response.ok:
            raise ValueError(f"Only successful responses are cached; this one failed: {response.error!r}.")
        super().put(key, response, {f: getattr(response, f) for f in _RESPONSE_FIELDS})


_NO_RESULT = "the teacher reported no result for this request"


def _cacheable(response: TeacherResponse | None) -> bool:
    """A response worth keeping: it succeeded and holds some text (an empty answer is asked again next run)."""
    return response is not None and response.ok and bool((response.text or "").strip())


def run_cached(
    teacher: Teacher,
    requests: Sequence[TeacherRequest],
    keys: Sequence[str],
    cache_path: str | os.PathLike | None,
    *,
    what: str = "rows",
) -> list[tuple[TeacherResponse, bool]]:
    """``(response, from_cache)`` for every request: cached ones from ``cache_path``, the rest from the teacher.

    Each successful result is written to the cache the moment the teacher reports it, so a crash or a
    :class:`~embedsdg_hf.generation.teachers.base.TeacherError` loses nothing finished. A request the teacher returned
    no result for comes back as a failed response (``ok`` False), never silently dropped.
    """
    from datasets.utils import is_progress_bar_enabled

    if len(requests) != len(keys):
        raise ValueError(f"run_cached got {len(requests)} requests but {len(keys)} keys.")
    cache = RequestCache(cache_path) if cache_path is not None else None
    results: list[tuple[TeacherResponse, bool] | None] = [None] * len(requests)
    try:
        pending = []
        for index, key in enumerate(keys):
            cached = cache.get(key) if cache is not None else None
            if _cacheable(cached):
                results[index] = (cached, True)
            else:
                pending.append(index)
        logger.info(
            "Teacher requests: %d in all, %d from the cache, %d to send.",
            len(requests),
            len(requests) - len(pending),
            len(pending),
        )

        def on_result(index: int, response: TeacherResponse) -> None:
            if not 0 <= index < len(pending):
                raise IndexError(f"The teacher reported a result for request {index}; it was given {len(pending)}.")
            request_index = pending[index]
            if results[request_index] is not None:
                logger.warning("The teacher reported request %d twice; keeping the first result.", index)
                return
            results[request_index] = (response, False)
            if cache is not None and _cacheable(response):
                cache.put(keys[request_index], response)

        if pending:
            teacher.generate([requests[i] for i in pending], on_result, progress=is_progress_bar_enabled())
    except TeacherError:
        done = sum(r is not None and not r[1] and r[0].ok for r in results)
        where = "lost (no cache)" if cache is None else f"saved in {cache.path}; rerun with the same cache to resume"
        logger.error("The teacher stopped the run; %d new result(s) were %s.", done, where)
        raise
    finally:
        if cache is not None:
            cache.close()
    missing = [i for i, result in enumerate(results) if result is None]
    if missing:
        logger.warning(
            "The teacher returned without a result for %d request(s); they are kept as failed %s.", len(missing), what
        )
    return [result or (TeacherResponse(text=None, error=_NO_RESULT), False) for result in results]
