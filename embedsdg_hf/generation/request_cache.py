"""An append-only, crash-safe record of finished teacher requests, so an interrupted generation run resumes.

Like lm-evaluation-harness' request cache, a result is keyed by everything that defines it: the teacher's identity,
the messages, the sampling settings, the request seed, the prefill and the sample index (:func:`request_key`). The
file is JSON Lines, one record per finished request, each written with ``flush`` + ``os.fsync`` before the next
request's result is handled, so a ``kill -9`` loses at most the line being written. On load, a torn last line is
cut off (with a warning) and a repeated key keeps its first record.

Only successful responses are cached: a failed request is sent again on the next run. One process writes a file at a
time, which a lock file (``<path>.lock``) enforces; a second writer gets a clear error instead of interleaved lines.

Public API: :class:`RequestCache`, :func:`request_key`, :func:`run_cached` (send what is not cached, cache what comes
back).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock

from ..common.rundir import with_path
from .teachers.base import Teacher, TeacherError, TeacherRequest, TeacherResponse

logger = logging.getLogger(__name__)

__all__ = ["RequestCache", "request_key", "run_cached"]

_FORMAT = 1
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
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except TypeError as err:
        raise TypeError(f"The teacher identity must be JSON-serialisable to key the request cache: {err}.") from None
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _parse_record(line: bytes) -> tuple[str, TeacherResponse] | None:
    """(key, response) of one JSONL line, or None when it is not a complete, valid record."""
    try:
        record = json.loads(line)
        return record["key"], TeacherResponse(**{f: record["response"][f] for f in _RESPONSE_FIELDS})
    except (ValueError, KeyError, TypeError):
        return None


class RequestCache:
    """Finished teacher responses by :func:`request_key`, persisted to an append-only JSONL file.

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
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = filelock.FileLock(f"{self.path}.lock", timeout=0)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise RuntimeError(
                f"The request cache {str(self.path)!r} is in use by another writer (lock file {self._lock.lock_file!r}"
                "). Wait for that run to finish, or give this run its own cache_dir."
            ) from None
        try:
            self._records = self._load()
            self._handle = open(self.path, "a", encoding="utf-8")  # appended to until close()
        except BaseException:
            self._lock.release()
            raise

    def _load(self) -> dict[str, TeacherResponse]:
        records: dict[str, TeacherResponse] = {}
        if not self.path.exists():
            return records
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        parsed = [_parse_record(line) for line in lines]
        if lines and (parsed[-1] is None or not lines[-1].endswith(b"\n")):
            logger.warning(
                "Request cache %s ends with a partial record (%d bytes, from an interrupted write); dropping it.",
                self.path,
                len(lines[-1]),
            )
            os.truncate(self.path, len(data) - len(lines[-1]))
            lines, parsed = lines[:-1], parsed[:-1]
        duplicates = 0
        for number, (line, record) in enumerate(zip(lines, parsed), start=1):
            if record is None:
                if not line.strip():
                    continue
                raise ValueError(
                    f"Request cache {str(self.path)!r}, line {number}, is not a valid record. The file was edited or "
                    "written by something else: remove that line (or the file, to start over)."
                )
            key, response = record
            if key in records:
                duplicates += 1
            else:
                records[key] = response
        if duplicates:
            logger.warning(
                "Request cache %s holds %d repeated key(s); keeping the first of each.",
                self.path,
                duplicates,
            )
        logger.info("Request cache %s: %d finished request(s) loaded.", self.path, len(records))
        return records

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> TeacherResponse | None:
        """The cached response for ``key``, or None."""
        return self._records.get(key)

    def put(self, key: str, response: TeacherResponse) -> None:
        """Append a successful response durably (flush + fsync). A key already cached is left as it is."""
        if not response.ok:
            raise ValueError(f"Only successful responses are cached; this one failed: {response.error!r}.")
        if self._handle is None:
            raise RuntimeError(f"The request cache {str(self.path)!r} is closed.")
        if key in self._records:
            return
        record = {"format": _FORMAT, "key": key, "response": {f: getattr(response, f) for f in _RESPONSE_FIELDS}}
        try:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as err:  # e.g. a full disk: say which file (the records written before stay)
            raise with_path(err, self.path) from err
        self._records[key] = response

    def close(self) -> None:
        """Close the file and release the writer lock (idempotent)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._lock.release()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_NO_RESULT = "the teacher reported no result for this request"


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
            if cached is not None:
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
            if cache is not None and response.ok:
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
