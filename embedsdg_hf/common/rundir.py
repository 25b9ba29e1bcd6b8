"""Run directories that never lose finished work: atomic writes (temp name, then rename), a lock that refuses a
second run on the same dir at start, the ownership marker, and clear errors for corrupt run metadata. The paths of a
run dir and what a run may delete there are :class:`embedsdg_hf.run.rundir.RunDir`'s.

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> write_json_atomic(out / "run_config.json", {"seed": 0})
    >>> read_json(out / "run_config.json", what="run config", fix="delete it")
    {'seed': 0}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .progress import quiet_progress

LOCK_FILE = "run.lock"
PID_FILE = "run.lock.pid"
#: The ownership marker: only embedsdg writes it, into a folder that was empty or absent when the run started. A
#: folder without it is never deleted from nor rewritten (docs/reliability.md).
MARKER_FILE = ".embedsdg-run.json"
MARKER_TOOL = "embedsdg-hf"
MARKER_FORMAT = 1


class RunDirLockedError(RuntimeError):
    """Another process holds the run dir's lock."""


def with_path(err: OSError, path: Path) -> OSError:
    """The same error with ``filename`` set, so the message names the file being written."""
    if err.filename is None and err.errno is not None:
        return type(err)(err.errno, err.strerror or os.strerror(err.errno), str(path))
    return err


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temp file next to ``path``, fsync it, then rename it over ``path``: readers see the old
    file or the new one, never a torn or empty one (e.g. when the disk fills up)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise with_path(err, path) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """:func:`write_text_atomic` of ``data`` as indented JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: str | os.PathLike, *, what: str, fix: str) -> Any:
    """Read a JSON file; a corrupt one raises ``ValueError`` naming the file, what it is, and ``fix``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError as err:
        state = "empty" if not text.strip() else f"not valid JSON ({err})"
        raise ValueError(f"The {what} {str(path)!r} is {state}: {fix}") from None


def replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``, replacing what is there (the old one is removed last)."""
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)


def save_dataset_atomic(ds, path: str | os.PathLike) -> None:
    """``ds.save_to_disk`` into a temp folder next to ``path``, then rename it to ``path``: a folder at ``path`` is
    always complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with quiet_progress():  # bookkeeping: no bar of its own (embedsdg -v shows it)
            ds.save_to_disk(str(tmp))
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise with_path(err, path) from err
    replace_dir(tmp, path)


def to_json_atomic(ds, path: str | os.PathLike) -> None:
    """``ds.to_json`` (JSON lines) into a temp file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with quiet_progress():
            ds.to_json(str(tmp))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise with_path(err, path) from err


def read_marker(path: str | os.PathLike) -> dict | None:
    """The ownership marker of the run dir ``path`` (a dict with ``tool``, ``format``...), or None when it has none
    (or one another tool wrote)."""
    marker = Path(path) / MARKER_FILE
    if not marker.is_file() or marker.is_symlink():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == MARKER_TOOL else None


def write_marker(path: str | os.PathLike, **fields: Any) -> None:
    """Write (or update) the ownership marker of the run dir ``path``; ``fields`` are kept in it (e.g. the inputs'
    fingerprints)."""
    write_json_atomic(Path(path) / MARKER_FILE, {"tool": MARKER_TOOL, "format": MARKER_FORMAT, **fields})


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a run dir embedsdg made (it holds the ownership marker)."""
    return read_marker(path) is not None


def file_fingerprints(files: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """``{setting: {path: sha256 of the content}}`` of the local files each setting reads."""
    import hashlib

    prints: dict[str, dict[str, str]] = {}
    for key, paths in files.items():
        prints[key] = {}
        for name in paths:
            digest = hashlib.sha256()
            with open(name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            prints[key][str(name)] = digest.hexdigest()
    return prints


def is_fresh_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is absent or holds nothing but a run lock left by a run killed before it wrote anything."""
    path = Path(path)
    return not path.exists() or all(entry.name in (LOCK_FILE, PID_FILE) for entry in path.iterdir())


class RunLock:
    """An exclusive lock on a run dir for the life of one run; a second run is refused at once with the holder's
    PID. The lock is released when the run ends, however it ends (the OS drops it when the process dies).

    Example:
        >>> import tempfile
        >>> run_dir = Path(tempfile.mkdtemp())
        >>> with RunLock(run_dir):
        ...     RunLock(run_dir).acquire()  # a second run on the same dir
        Traceback (most recent call last):
        embedsdg_hf.common.rundir.RunDirLockedError: '...' is in use by another embedsdg run (PID ...). Wait ...
        >>> sorted(p.name for p in run_dir.iterdir())  # released: no lock file stays
        []
    """

    def __init__(self, directory: str | os.PathLike):
        import filelock

        self.directory = Path(directory)
        self._lock = filelock.FileLock(str(self.directory / LOCK_FILE), timeout=0)
        self._timeout = filelock.Timeout

    def acquire(self) -> RunLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        pid_file = self.directory / PID_FILE
        try:
            self._lock.acquire()
        except self._timeout:
            holder = pid_file.read_text().strip() if pid_file.is_file() else "unknown"
            raise RunDirLockedError(
                f"{str(self.directory)!r} is in use by another embedsdg run (PID {holder}). Wait for it to finish "
                "or stop it, or give this run another --output_dir."
            ) from None
        pid_file.write_text(f"{os.getpid()}\n")
        return self

    def release(self) -> None:
        """Release the lock and remove its files, so a finished or failed run dir holds none. The lock file is
        deleted while still held: a run that opens it afterwards makes a new one and may go ahead (this one is done).
        After a ``kill -9`` the file stays, but the OS has dropped the lock: the next run takes it at once."""
        if self._lock.is_locked:
            (self.directory / PID_FILE).unlink(missing_ok=True)
            (self.directory / LOCK_FILE).unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def load_saved_dataset(path: str | os.PathLike):
    """``load_from_disk``, also for an empty dataset: ``save_to_disk`` writes no shard for 0 rows (datasets 5), and
    ``load_from_disk`` then fails with an ``IndexError``; the features are read from ``dataset_info.json`` instead."""
    from datasets import Dataset, DatasetInfo, load_from_disk

    path = Path(path)
    if json.loads((path / "state.json").read_text(encoding="utf-8")).get("_data_files"):
        with quiet_progress():
            return load_from_disk(str(path))
    features = DatasetInfo.from_directory(str(path)).features
    return Dataset.from_dict({name: [] for name in features}, features=features)
