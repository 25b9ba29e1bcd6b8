"""Dataset card content, and the push call path without network (it must fail clearly, never fake success)."""

from __future__ import annotations

import json

import pytest
import yaml
from _runs import write_run_dir

from embedsdg_hf.hub import make_dataset_card, push_run_to_hub, stage_run_for_hub

MANIFEST = {
    "config": {
        "method": "embedsdg",
        "student": "smollm2-135m-instruct",
        "teacher": "transformers:smollm2-135m-instruct",
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 320,
        "seed_pool": "word-problems",
        "seed": 0,
        "push_to_hub": "me/x",
        "overwrite": False,
    },
    "counts": {"pool": 1000, "regions": 36, "pairs": 24, "synthetic": 24, "accepted": 9},
    "generation": {
        "rejects_by_reason": {"truncated": 10, "missing_final_answer": 5},
        "prompt_tokens": 12345,
        "completion_tokens": 6789,
        "rows": 24,
        "accepted": 9,
        "from_cache": 0,
    },
    "figures": {"density": "density_histogram.png", "map": "embedding_map.png"},
    "versions": {"datasets": "5.2.0", "embedsdg-hf": "0.1.0.dev0"},
}


def test_card_has_metadata_method_counts_rejects_figures_and_recipe():
    card = make_dataset_card(MANIFEST, repo_id="me/gsm8k-embedsdg")
    front = yaml.safe_load(card.split("---")[1])
    assert front["tags"] == ["synthetic", "embedsdg", "math"]  # no duplicates
    assert front["license"] == "other" and front["license_name"] == "teacher-and-seed-data-terms"
    assert "pip install embedsdg-hf" not in card and "https://github.com/)" not in card
    assert front["size_categories"] == ["n<1K"]
    assert "**Method**: `embedsdg`" in card and "sparse regions" in card
    for line in (
        "| pairs | 24 |",
        "| accepted | 9 |",
        "| rejected by the parser: truncated | 10 |",
        "| rejected by the parser: missing_final_answer | 5 |",
    ):
        assert line in card
    assert "12,345 prompt" in card
    assert "![map](figures/embedding_map.png)" in card and "![density](figures/density_histogram.png)" in card
    recipe = yaml.safe_load(card.split("```yaml")[1].split("```")[0])
    assert recipe["teacher"] == "transformers:smollm2-135m-instruct" and "push_to_hub" not in recipe
    random_card = make_dataset_card({**MANIFEST, "config": {**MANIFEST["config"], "method": "random"}}, repo_id="me/r")
    assert "RandomSDG baseline" in random_card


def test_push_offline_fails_clearly_and_sends_nothing(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set.*nothing was sent"):
        push_run_to_hub(tmp_path, "me/gsm8k-embedsdg")


def test_push_to_an_unreachable_hub_reports_the_endpoint(tmp_path, monkeypatch):
    from datasets import Dataset

    from embedsdg_hf.generation.generate import FEATURES

    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    row = {name: "" if getattr(f, "dtype", None) == "string" else 0 for name, f in FEATURES.items()}
    row |= {"messages": [], "prompt": [], "completion": [], "reject_reason": None, "error": None, "from_cache": False}
    Dataset.from_list([row], features=FEATURES).save_to_disk(str(tmp_path / "synthetic"))
    for figure in MANIFEST["figures"].values():
        (tmp_path / figure).write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(RuntimeError, match=r"Could not push to 'me/gsm8k-embedsdg' at http://127.0.0.1:9"):
        push_run_to_hub(tmp_path, "me/gsm8k-embedsdg", token="hf_dummy_token_for_the_test")


def test_staged_repo_round_trips_through_dataset_card_and_load_dataset(tmp_path, gsm8k_rows):
    """The folder push_run_to_hub uploads in one commit: DatasetCard.load reads its card back (dataset_info for each
    config, as push_to_hub writes it), and load_dataset reads each config from the card's `configs` block."""
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    run = write_run_dir(tmp_path / "run", gsm8k_rows, n=5, wrong=(1, 3))
    folder = stage_run_for_hub(run, "me/gsm8k-embedsdg", tmp_path / "repo", license_link="https://example.org/terms")
    card = DatasetCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_name"] == "teacher-and-seed-data-terms"
    assert data["license_link"] == "https://example.org/terms"
    assert len(data["tags"]) == len(set(data["tags"])) and "randomsdg" in data["tags"]
    assert sorted(c["config_name"] for c in data["configs"]) == ["all", "default", "dropped"]
    infos = {info["config_name"]: info for info in data["dataset_info"]}
    assert {name: infos[name]["splits"][0]["num_examples"] for name in infos} == {"default": 3, "all": 5, "dropped": 2}
    assert all(infos[name]["download_size"] > 0 and infos[name]["dataset_size"] > 0 for name in infos)
    assert "pip install embedsdg-hf" not in card.text and "| `dropped` | 2 |" in card.text
    assert sorted(p.name for p in (folder / "figures").iterdir()) == ["embedding_map.png"]
    assert yaml.safe_load((folder / "run_config.yaml").read_text())["method"] == "random"

    train = load_dataset(str(folder), split="train")
    dropped = load_dataset(str(folder), "dropped", split="train")
    every = load_dataset(str(folder), "all", split="train")
    assert (len(train), len(dropped), len(every)) == (3, 2, 5)
    assert {"messages", "prompt", "completion"} <= set(train.column_names)
    assert set(dropped["quality_reason"][:]) == {"final_answer_mismatch"}
    assert train["question"][:] == [json.loads(line)["question"] for line in (run / "train.jsonl").open()]


def test_a_config_without_rows_is_left_out_and_a_run_without_training_rows_is_refused(tmp_path, gsm8k_rows):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from embedsdg_hf.common.rundir import load_saved_dataset

    clean = write_run_dir(tmp_path / "clean", gsm8k_rows, n=3)  # every row passes: no dropped rows
    folder = stage_run_for_hub(clean, "me/clean", tmp_path / "repo")
    card = DatasetCard.load(folder / "README.md")
    assert sorted(c["config_name"] for c in card.data.to_dict()["configs"]) == ["all", "default"]
    assert not (folder / "dropped").exists() and len(load_dataset(str(folder), split="train")) == 3

    failed = write_run_dir(tmp_path / "failed", gsm8k_rows, n=2, wrong=(0, 1))
    with pytest.raises(ValueError, match=r"nothing to push \(2 generated rows are in .*synthetic.jsonl"):
        stage_run_for_hub(failed, "me/failed", tmp_path / "repo2")

    from datasets import Dataset

    empty = Dataset.from_list(gsm8k_rows[:2]).select([])  # save_to_disk writes no shard for 0 rows
    empty.save_to_disk(str(tmp_path / "empty"))
    loaded = load_saved_dataset(tmp_path / "empty")
    assert len(loaded) == 0 and loaded.features == empty.features


def test_staged_repo_has_no_url_or_local_path_and_a_lean_training_config(tmp_path, gsm8k_rows):
    """What leaves the machine: no teacher URL and no absolute path in any staged file (card, recipe, manifest, the
    Parquet rows' ``error``), the default config holds the training columns and a few provenance ones, `all` every
    column, and a config without rows (no `dropped` here) is not promised anywhere in the card."""
    from datasets import load_dataset, load_from_disk

    from embedsdg_hf.hub import TRAINING_COLUMNS

    run = write_run_dir(tmp_path / "run", gsm8k_rows, n=3)
    url, pool = "http://10.1.2.3:8000/v1", str(tmp_path / "private" / "own.jsonl")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"].update(teacher=f"openai:my-model@{url}", seed_pool=pool, output_dir=str(run))
    (run / "manifest.json").write_text(json.dumps(manifest))
    synthetic = load_from_disk(str(run / "synthetic"))
    failed = synthetic.map(lambda _, i: {"error": f"HTTP 503 from {url}: busy" if i == 0 else None}, with_indices=True)
    failed.save_to_disk(str(tmp_path / "synthetic"))
    (run / "synthetic").rename(tmp_path / "old-synthetic")
    (tmp_path / "synthetic").rename(run / "synthetic")

    folder = stage_run_for_hub(run, "me/lean", tmp_path / "repo")
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            assert "10.1.2.3" not in text and str(tmp_path) not in text, path
    card = (folder / "README.md").read_text()
    assert "openai:my-model@<url>" in card and "`own.jsonl`" in card
    assert "dropped" not in card.split("## Counts")[0]  # the config table and the load_dataset lines
    train = load_dataset(str(folder), split="train")
    assert set(train.column_names) == set(TRAINING_COLUMNS) and len(train) == 3
    every = load_dataset(str(folder), "all", split="train")
    assert {"raw_response", "request_key", "sampling"} <= set(every.column_names)
    assert every["error"][0] == "HTTP 503 from <url>: busy"
