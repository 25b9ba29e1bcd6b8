"""An append-only, crash-safe key -> record store in one JSON Lines file: the body of every result cache here.

Each ``put`` appends one line (``{"format": 1, "key": ..., <field>: record}``) with ``flush`` + ``os.fsync`` before
it returns, so a ``kill -9`` loses at most the line being written. On open, a torn last line is cut off (with a
warning), a repeated key keeps its first record, and a corrupt line in the middle is refused with its number. One
process writes a file at a time, which a lock file (``<path>.lock``) enforces: a second writer gets a clear error
instead of interleaved lines.

Used by the teacher's request cache (:mod:`embedsdg_hf.generation.request_cache`) and the decode cache
(:mod:`embedsdg_hf.generation.decode_cache`), which add what a key is and what a record holds.

Example:
    >>> import tempfile
    >>> with JsonlStore(Path(tempfile.mkdtemp()) / "cache.jsonl") as store:
    ...     store.put("k1", {"text": "hello"})
    ...     store.get("k1")["text"]
    'hello'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import filelock

from .rundir import with_path

logger = logging.getLogger(__name__)

__all__ = ["JsonlStore", "canonical_key"]

FORMAT = 1


def canonical_key(payload: Any) -> str:
    """The sha256 of the canonical JSON of ``payload`` (sorted keys, no spaces): a content address.

    Example:
        >>> canonical_key({"b": 1, "a": [2]}) == canonical_key({"a": [2], "b": 1})
        True
    """
    try:
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except TypeError as err:
        raise TypeError(f"A cache key must be built from JSON-serialisable values: {err}.") from None
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class StoreBusyError(RuntimeError):
    """Another process is writing the store (its lock file is held)."""


class JsonlStore:
    """Records by key, persisted to an append-only JSONL file (see the module docstring).

    Args:
        path: the JSONL file (created with its folder when missing).
        what: how messages name the file, e.g. ``"request cache"``.
        field: the JSON field a record is stored under.
        parse: turns a stored record back into a value (raise ``KeyError``/``TypeError``/``ValueError`` when it is
            not one); the identity by default.
        busy_fix: what a second writer is told to do.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        what: str = "cache",
        field: str = "record",
        parse: Callable[[Any], Any] | None = None,
        busy_fix: str = "Wait for that run to finish, or give this run its own cache file.",
    ):
        self.path, self.what, self.field = Path(path), what, field
        self._parse = parse or (lambda record: record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = filelock.FileLock(f"{self.path}.lock", timeout=0)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise StoreBusyError(
                f"The {what} {str(self.path)!r} is in use by another writer (lock file {self._lock.lock_file!r}). "
                f"{busy_fix}"
            ) from None
        self._handle = None
        try:
            self._records = self._load()
            self._handle = open(self.path, "a", encoding="utf-8")  # appended to until close()
        except BaseException:
            self._lock.release()
            raise

    def _parse_line(self, line: bytes) -> tuple[str, Any] | None:
        try:
            record = json.loads(line)
            return record["key"], self._parse(record[self.field])
        except (ValueError, KeyError, TypeError):
            return None

    def _load(self) -> dict[str, Any]:
        records: dict[str, Any] = {}
        if not self.path.exists():
            return records
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        parsed = [self._parse_line(line) for line in lines]
        if lines and (parsed[-1] is None or not lines[-1].endswith(b"\n")):
            logger.warning(
                "%s %s ends with a partial record (%d bytes, from an interrupted write); dropping it.",
                self.what.capitalize(),
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
                    f"{self.what.capitalize()} {str(self.path)!r}, line {number}, is not a valid record. The file was "
                    "edited or written by something else: remove that line (or the file, to start over)."
                )
            key, value = record
            if key in records:
                duplicates += 1
            else:
                records[key] = value
        if duplicates:
            what = self.what.capitalize()
            logger.warning("%s %s holds %d repeated key(s); keeping the first of each.", what, self.path, duplicates)
        logger.info("%s %s: %d record(s) loaded.", self.what.capitalize(), self.path, len(records))
        return records

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> Any:
        """The stored value for ``key``, or None."""
        return self._records.get(key)

    def put(self, key: str, value: Any, record: dict | None = None) -> None:
        """Append ``record`` (default: ``value`` itself, which must then be JSON) durably under ``key`` (flush +
        fsync); ``value`` is what :meth:`get` returns from now on. A key already stored is left as it is."""
        if self._handle is None:
            raise RuntimeError(f"The {self.what} {str(self.path)!r} is closed.")
        if key in self._records:
            return
        line = {"format": FORMAT, "key": key, self.field: value if record is None else record}
        try:
            self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as err:  # e.g. a full disk: say which file (the records written before stay)
            raise with_path(err, self.path) from err
        self._records[key] = value

    def close(self) -> None:
        """Close the file and release the writer lock (idempotent)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
