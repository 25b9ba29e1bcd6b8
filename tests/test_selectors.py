"""The Selector protocol (quality/selectors.py): one registry, no selector branch outside it, and a third selector
registered as one class is what `embedsdg run` uses (a tiny real pool, the real student)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import embedsdg_hf
from embedsdg_hf.quality.selectors import (
    SELECTORS,
    GridSelector,
    KnnSelector,
    Selector,
    get_selector,
    register_selector,
)

PACKAGE = Path(embedsdg_hf.__file__).parent
REGISTRY = PACKAGE / "quality" / "selectors.py"
# a branch on the selector's name: `selector == "knn"`, `config.get("selector") != ...`, `selector in ("grid", ...)`
BRANCH = re.compile(r"""selector['"]?\)?\s*(==|!=|\bin\s*[(\[{])|(==|!=)\s*['"](grid|knn)['"]""")


def test_no_selector_branch_outside_the_registry():
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != REGISTRY
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BRANCH.search(line)
    ]
    assert not found, "branch on the selector outside quality/selectors.py:\n" + "\n".join(found)
    assert BRANCH.search('if config.selector == "knn":') and BRANCH.search('config.get("selector") == "grid"')


def test_the_registry_holds_both_built_in_selectors_and_names_the_choices():
    assert SELECTORS["grid"] is GridSelector and SELECTORS["knn"] is KnnSelector
    for cls in SELECTORS.values():
        assert isinstance(cls.from_config({}), Selector)  # every method of the protocol is there
    with pytest.raises(ValueError, match=r"selector must be one of \['grid', 'knn', 'rarity'\]; got 'kde'"):
        get_selector("kde")
    with pytest.raises(TypeError, match="lacks"):
        register_selector(type("Half", (), {"name": "half", "config_fields": (), "saved_files": ()}))


def test_selectors_read_their_own_settings_from_a_config_object_or_a_run_config_dict():
    from embedsdg_hf.config import PipelineConfig

    config = PipelineConfig(selector="grid", knn_k=7, bins=9, threshold="5")
    assert KnnSelector.from_config(config).settings["k"] == 7
    assert KnnSelector.from_config(config.to_dict()).settings == KnnSelector.from_config(config).settings
    grid = GridSelector.from_config(config.to_dict())
    assert grid.settings["bins"] == 9 and grid.settings["threshold"] == 5
    known = {f for cls in SELECTORS.values() for f in cls.config_fields}
    assert known <= set(config.to_dict())  # every field a selector declares is a config field


class _FarthestSelector:
    """A toy third selector: the pool points farthest from the map's centre, each paired with its nearest map
    neighbour. Fitted part: the centre, saved as JSON."""

    name = "farthest"
    config_fields = ()
    saved_files = ("farthest.json",)
    plotted: list[str] = []

    def __init__(self):
        self.centre = None

    @classmethod
    def from_config(cls, config):
        return cls()

    def fit(self, ctx):
        self.centre = np.asarray(ctx.pool["coords"], dtype=np.float64).mean(axis=0)

    def select(self, ctx, *, n_pairs):
        from embedsdg_hf.space.pairs import pair_features
        from embedsdg_hf.space.regions import regions_dataset

        coords = np.asarray(ctx.pool["coords"], dtype=np.float64)
        far = np.argsort(-np.linalg.norm(coords - self.centre, axis=1))[:n_pairs]
        near = [int(np.argsort(np.linalg.norm(coords - coords[c], axis=1))[1]) for c in far]
        k = coords.shape[1]
        box = (
            [np.minimum(coords[a], coords[b]) for a, b in zip(far, near)],
            [np.maximum(coords[a], coords[b]) for a, b in zip(far, near)],
        )
        regions = regions_dataset(
            {"region_id": list(range(len(far))), "lower": box[0], "upper": box[1], "count": [2] * len(far),
             "members": [[int(a), b] for a, b in zip(far, near)]},
            k=k,
        )  # fmt: skip
        pairs = {
            "pair_id": list(range(len(far))), "region_id": list(range(len(far))), "region_lower": box[0],
            "region_upper": box[1], "region_count": [2] * len(far), "region_level": [0] * len(far),
            "axis": [0] * len(far), "seed_a": [int(a) for a in far], "seed_b": near, "dist_a": [0.0] * len(far),
            "dist_b": [0.0] * len(far), "source_a": ["region"] * len(far), "source_b": ["region"] * len(far),
            "coords_a": coords[far], "coords_b": coords[near],
        }  # fmt: skip
        from datasets import Dataset

        return regions, Dataset.from_dict(pairs, features=pair_features(k))

    def save(self, run_dir):
        (Path(run_dir) / "farthest.json").write_text(json.dumps({"centre": self.centre.tolist()}))

    def load(self, run_dir):
        path = Path(run_dir) / "farthest.json"
        if path.exists():
            self.centre = np.asarray(json.loads(path.read_text())["centre"])
        return path.exists()

    def describe(self):
        return {"selector": self.name, "region": "a far point and its nearest neighbour", "settings": {},
                "fitted": {"centre": None if self.centre is None else self.centre.tolist()}}  # fmt: skip

    def summarize(self, regions, pairs):
        return {"counts": {"farthest_regions": len(regions)}, "text": f"{len(pairs)} farthest pairs."}

    def plot(self, ctx, regions, pairs, out_dir):
        from embedsdg_hf.plots import plot_embedding_map

        path = plot_embedding_map(np.asarray(ctx.pool["coords"]), Path(out_dir) / "farthest_map.png", pairs=pairs)
        self.plotted.append(path.name)
        return {"map": path.name}

    def coverage(self, ctx, regions, synthetic):
        raise NotImplementedError("the toy selector measures no coverage")


@pytest.fixture
def farthest():
    register_selector(_FarthestSelector)
    yield _FarthestSelector
    SELECTORS.pop("farthest")


@pytest.mark.slow
def test_a_registered_third_selector_is_what_run_uses(farthest, student, gsm8k_rows, tmp_path):
    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.pipeline import run_pipeline
    from embedsdg_hf.report import format_summary

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(row) + "\n" for row in gsm8k_rows[:40]))
    out = tmp_path / "run"
    config = PipelineConfig(
        seed_pool=str(pool), student=student, selector="farthest", n_pairs=3, stage="analysis", output_dir=str(out)
    )
    manifest = run_pipeline(config)
    assert manifest["selection"]["selector"] == "farthest" and manifest["selection"]["fitted"]["centre"]
    assert manifest["counts"]["farthest_regions"] == 3 and manifest["counts"]["pairs"] == 3
    assert manifest["figures"] == {"map": "farthest_map.png"} and (out / "farthest_map.png").stat().st_size > 0
    assert (out / "farthest.json").is_file() and not (out / "grid.json").exists()
    assert not (out / "knn_space.npz").exists()
    assert "3 farthest pairs." in format_summary(manifest)
    assert any(step["step"] == "fit the farthest selector" for step in manifest["steps"])

    from datasets import load_from_disk

    pairs = load_from_disk(str(out / "pairs"))
    coords = np.asarray(load_from_disk(str(out / "pool"))["coords"])
    farthest_rows = np.argsort(-np.linalg.norm(coords - coords.mean(axis=0), axis=1))[:3]
    assert pairs["seed_a"] == farthest_rows.tolist() and "interp_coords" in pairs.column_names

    # the same command again: the fitted part is loaded, not refitted; the pairs are reused
    manifest = run_pipeline(config)
    assert any(step["step"] == "fit the farthest selector (reused from farthest.json)" for step in manifest["steps"])


def test_a_selector_setting_keeps_the_embedding_and_redoes_the_selection():
    from embedsdg_hf.run.stages import still_valid as _still_valid

    kept = _still_valid(["knn_k"])  # the k-NN selector's own setting: its fitted part and the pairs are redone
    assert {"pool", "reducer"} <= set(kept) and not {"knn_space.npz", "regions", "pairs"} & set(kept)
    assert {"knn_space.npz", "grid.json", "regions", "pairs"} <= set(_still_valid(["teacher"]))  # after decoding
    assert "grid.json" in kept and "grid.json" not in _still_valid(["bins"])  # the grid's own stage, as before
