"""The run dir of ``embedsdg run``: one object owns every path in it and reads its saved config back.

Everything that reads or writes a run dir (pipeline.py, the CLI, hub.py, the experiments) asks :class:`RunDir` for
a path instead of joining names by hand, and reads ``run_config.json`` back as a :class:`~embedsdg_hf.PipelineConfig`
(:meth:`RunDir.config`), not as a raw dict. What the run owns (and so may delete on ``--overwrite``) is
:data:`RUN_OUTPUTS` plus every registered selector's fitted parts (:meth:`RunDir.outputs`); the low-level helpers
(atomic writes, the lock, the ownership marker) are in ``common/rundir.py``.

Example:
    >>> import tempfile
    >>> from embedsdg_hf.common.rundir import write_json_atomic
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.train.name, run.pool.name, run.decoded_part(0, 32).name
    ('train.jsonl', 'pool', 'part-000000-000032')
    >>> write_json_atomic(run.config_file, PipelineConfig(n_pairs=8).to_dict())
    >>> run.config().n_pairs, run.embedding().weights
    (8, 'mean')
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from ..common.rundir import LOCK_FILE, MARKER_FILE, read_json
from ..config import PipelineConfig, accepts_none

logger = logging.getLogger(__name__)

__all__ = ["RUN_MARKERS", "RUN_OUTPUTS", "RunDir", "clear_run_outputs", "is_run_output"]


class RunDir:
    """The paths of one run dir (``RunDir(config.output_dir)``); nothing is created or read until asked.

    The names are class attributes (``RunDir.TRAIN == "train.jsonl"``) so that messages and docs can name a file
    without a run dir at hand.
    """

    CONFIG = "run_config.json"
    MANIFEST = "manifest.json"
    CACHE = "cache"  # the teacher's request cache: kept on --overwrite and on a changed setting
    POOL = "pool"
    REDUCER = "reducer"
    REGIONS = "regions"
    PAIRS = "pairs"
    DECODED = "decoded"
    SYNTHETIC = "synthetic"
    SYNTHETIC_JSONL = "synthetic.jsonl"
    QUALITY = "quality"
    TRAIN = "train.jsonl"
    DROPPED = "dropped.jsonl"
    REGIONS_JSONL = "regions.jsonl"
    PAIRS_JSONL = "pairs.jsonl"
    CARD = "README.md"
    DENSITY_HISTOGRAM = "density_histogram.png"
    EMBEDDING_MAP = "embedding_map.png"
    COVERAGE_JSON = "coverage.json"
    COVERAGE_MD = "coverage.md"
    COVERAGE_PNG = "coverage.png"
    GRID = "grid.json"  # the grid selector's fitted grid (a run dir before selectors had it at the top as well)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    config_file = property(lambda self: self.path / self.CONFIG, doc="``run_config.json``: the run's settings.")
    manifest_file = property(lambda self: self.path / self.MANIFEST, doc="``manifest.json``: counts, timings.")
    cache = property(lambda self: self.path / self.CACHE, doc="``cache/``: the teacher's request cache.")
    pool = property(lambda self: self.path / self.POOL, doc="``pool/``: the pool with embedding + coords.")
    reducer = property(lambda self: self.path / self.REDUCER, doc="``reducer/``: the fitted reducer.")
    regions = property(lambda self: self.path / self.REGIONS, doc="``regions/``: the selected regions.")
    pairs = property(lambda self: self.path / self.PAIRS, doc="``pairs/``: seed pairs (+ decoded text).")
    decoded = property(lambda self: self.path / self.DECODED, doc="``decoded/``: finished decoding batches.")
    synthetic = property(lambda self: self.path / self.SYNTHETIC, doc="``synthetic/``: every generated row.")
    synthetic_jsonl = property(lambda self: self.path / self.SYNTHETIC_JSONL, doc="``synthetic/`` as JSON lines.")
    quality = property(lambda self: self.path / self.QUALITY, doc="``quality/``: accepted rows + gate columns.")
    train = property(lambda self: self.path / self.TRAIN, doc="``train.jsonl``: rows that passed every gate.")
    dropped = property(lambda self: self.path / self.DROPPED, doc="``dropped.jsonl``: rows a gate dropped.")
    regions_jsonl = property(lambda self: self.path / self.REGIONS_JSONL, doc="``regions/`` as JSON lines.")
    pairs_jsonl = property(lambda self: self.path / self.PAIRS_JSONL, doc="``pairs/`` as JSON lines.")
    card = property(lambda self: self.path / self.CARD, doc="``README.md``: makes ``load_dataset(dir)`` work.")
    marker = property(lambda self: self.path / MARKER_FILE, doc="The ownership marker (common/rundir.py).")
    lock_file = property(lambda self: self.path / LOCK_FILE, doc="The run lock (common/rundir.py).")

    def decoded_part(self, start: int, stop: int) -> Path:
        """``decoded/part-<start>-<stop>/``: one finished decoding batch."""
        return self.decoded / f"part-{start:06d}-{stop:06d}"

    def coverage_files(self, folder: str | os.PathLike | None = None) -> tuple[Path, Path, Path]:
        """``coverage.json``, ``coverage.md``, ``coverage.png`` in ``folder`` (default: the run dir)."""
        base = Path(folder) if folder is not None else self.path
        return base / self.COVERAGE_JSON, base / self.COVERAGE_MD, base / self.COVERAGE_PNG

    @staticmethod
    def outputs() -> tuple[str, ...]:
        """Every top-level name a run writes: :data:`RUN_OUTPUTS` and each registered selector's fitted parts."""
        from ..quality.selectors import SELECTORS

        saved = (f for cls in SELECTORS.values() for f in cls.saved_files)
        return tuple(dict.fromkeys((*RUN_OUTPUTS, *saved)))

    # ------------------------------------------------------------------------------------------------------------
    # What the run saved, read back

    def config_dict(self, *, fix: str = "") -> dict[str, Any]:
        """``run_config.json`` as written (another version's keys included): what a resumed run is compared with.
        A missing file is a ``FileNotFoundError``, a corrupt one a ``ValueError`` naming it (and ``fix``)."""
        if not self.config_file.is_file():
            what = f"no {self.CONFIG}" if self.path.is_dir() else "it does not exist, or is not a folder"
            raise FileNotFoundError(f"{str(self.path)!r} is not an `embedsdg run` output dir ({what}).")
        data = read_json(self.config_file, what="run config", fix=fix or "it is not a run's config")
        if not isinstance(data, dict):
            raise ValueError(f"The run config {str(self.config_file)!r} is not a JSON object.")
        return data

    def config(self) -> PipelineConfig:
        """``run_config.json`` read back as a :class:`~embedsdg_hf.PipelineConfig`. A run dir written by another
        version reads back too: a key this version does not know is left out (logged), a missing key takes its
        default, and a ``null`` where the setting now takes no null (an older way to say "the default") is the
        default."""
        data = config_from_saved(self.config_dict())
        try:
            return PipelineConfig(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"The run config {str(self.config_file)!r} does not read back: {err}") from None

    def embedding(self):
        """How the run embedded its pool (:class:`~embedsdg_hf.quality.selectors.EmbeddingSettings`)."""
        from ..quality.selectors import EmbeddingSettings

        return EmbeddingSettings.from_config(self.config())

    def manifest(self) -> dict[str, Any]:
        """``manifest.json``; missing: ``FileNotFoundError``; corrupt: ``ValueError`` naming it."""
        return read_json(self.manifest_file, what="manifest", fix="rerun `embedsdg run` with the same settings")

    def finished(self) -> bool:
        """Whether the run dir holds the result of a run that ended well (a manifest not marked failed)."""
        try:
            return self.manifest().get("status") != "failed"
        except (OSError, ValueError, AttributeError):
            return False


def config_from_saved(saved: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :class:`~embedsdg_hf.PipelineConfig` a saved ``run_config.json`` dict gives (see
    :meth:`RunDir.config`)."""
    known = {f.name: f for f in fields(PipelineConfig)}
    unknown = sorted(k for k in saved if k not in known)
    if unknown:
        logger.info("run_config.json keys this version does not know, left out: %s", unknown)
    kwargs = {}
    for name, value in saved.items():
        if name not in known:
            continue
        if value is None and not accepts_none(name):
            if known[name].default is not MISSING:
                continue
        kwargs[name] = value
    return kwargs


#: What a run writes at the top of its dir. Only these (and their hidden temp/old copies) are ever deleted, by
#: ``--overwrite`` or a changed setting; anything else in the folder (a user's notes, a training/ folder) stays.
RUN_OUTPUTS = (
    *(RunDir.CONFIG, RunDir.MANIFEST, RunDir.CACHE, RunDir.POOL, RunDir.REDUCER, RunDir.GRID, RunDir.REGIONS),
    *(RunDir.PAIRS, RunDir.DECODED, RunDir.SYNTHETIC, RunDir.SYNTHETIC_JSONL, RunDir.QUALITY, RunDir.TRAIN),
    *(RunDir.DROPPED, RunDir.REGIONS_JSONL, RunDir.PAIRS_JSONL, RunDir.DENSITY_HISTOGRAM, RunDir.EMBEDDING_MAP),
    *(RunDir.COVERAGE_JSON, RunDir.COVERAGE_MD, RunDir.COVERAGE_PNG, RunDir.CARD),
)
#: Files that mark a folder as an older embedsdg's run dir (or another tool's): refused without the marker.
RUN_MARKERS = (RunDir.CONFIG, RunDir.MANIFEST)


def is_run_output(name: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a top-level entry called ``name`` is one a run writes (or a temp / old copy of one); ``extra``: more
    names a run writes."""
    outputs = (*RUN_OUTPUTS, *extra)
    if name in outputs:
        return True
    if name.startswith(".") and name.endswith((".tmp", ".old")):
        return any(name[1:].startswith(f"{output}.") for output in outputs)
    return False


def clear_run_outputs(path: str | os.PathLike, keep: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> list[str]:
    """Delete what a run wrote into ``path`` (:data:`RUN_OUTPUTS` and ``extra``) except ``keep``; return the names
    deleted. Nothing else is touched, and links are removed, never followed (a link to a user's folder leaves it
    intact)."""
    deleted = []
    for entry in sorted(Path(path).iterdir()):
        if entry.name in keep or not is_run_output(entry.name, extra):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        deleted.append(entry.name)
    return deleted
