"""The stages of a run before the teacher, in run order: each with its name, the settings it reads (declared once,
on the config fields' metadata: ``config.stage_fields``) and the run-dir entries it saves. A changed setting makes
its stage and every later one stale; the saved outputs of the stages before it are reused (pipeline.py).

Example:
    >>> [stage.name for stage in STAGES]
    ['embed', 'grid', 'select', 'decode', 'generate']
    >>> stage("embed").outputs
    ('pool', 'reducer')
    >>> "n_pairs" in stage("select").fields
    True
    >>> still_valid(["temperature"])  # a teacher setting: everything before generation is kept
    ('pool', 'reducer', 'grid.json', 'regions', 'pairs', 'decoded', 'knn_space.npz', 'rarity.json')
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import STAGES as STAGE_NAMES
from ..config import field_stage, stage_fields
from .rundir import RunDir

__all__ = ["STAGES", "Stage", "stage", "still_valid"]


@dataclass(frozen=True)
class Stage:
    """One stage: ``name`` (a ``config.STAGES`` name), ``own_outputs`` (the run-dir entries it saves), and with
    ``selector_parts`` the fitted parts of every registered selector go with it too."""

    name: str
    own_outputs: tuple[str, ...] = ()
    selector_parts: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        """The settings this stage reads (their ``stage`` metadata)."""
        return stage_fields(self.name)

    @property
    def outputs(self) -> tuple[str, ...]:
        """What this stage saves in the run dir."""
        if not self.selector_parts:
            return self.own_outputs
        from ..quality.selectors import SELECTORS

        taken = {f for other in _OWN for f in other.own_outputs}
        parts = (f for cls in SELECTORS.values() for f in cls.saved_files if f not in taken)
        return self.own_outputs + tuple(dict.fromkeys(parts))


# Decoding replaces pairs/, so the selection's outputs (and the selectors' fitted parts) go with the decode stage: a
# changed selection or decoding setting redoes both. grid.json goes with the grid stage (its settings are the grid's).
_OWN = (
    Stage("embed", (RunDir.POOL, RunDir.REDUCER)),
    Stage("grid", (RunDir.GRID,)),
    Stage("select"),
    Stage("decode", (RunDir.REGIONS, RunDir.PAIRS, RunDir.DECODED), selector_parts=True),
    Stage("generate"),
)
STAGES: tuple[Stage, ...] = _OWN
assert tuple(s.name for s in STAGES) == STAGE_NAMES, "run/stages.py and config.STAGES list the same stages"


def stage(name: str) -> Stage:
    """The stage called ``name``; an unknown name is a ``ValueError`` listing the stages."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"No stage {name!r}; the stages are {list(STAGE_NAMES)}.")


def still_valid(changed: list[str]) -> tuple[str, ...]:
    """The saved outputs a change of the settings ``changed`` leaves valid: those of the stages before the first one
    a changed setting feeds (a key no field declares, e.g. another version's, makes every stage stale)."""
    stages = [field_stage(key) for key in changed]
    if any(name not in STAGE_NAMES for name in stages):
        return ()
    first = min(STAGE_NAMES.index(name) for name in stages) if stages else len(STAGE_NAMES)
    return tuple(output for s in STAGES[:first] for output in s.outputs)
