"""Dataset card content, and the push call path without network (it must fail clearly, never fake success)."""

from __future__ import annotations

import json

import pytest
import yaml

from embedsdg_hf.hub import make_dataset_card, push_run_to_hub

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
    assert front["tags"] == ["synthetic", "embedsdg", "math", "embedsdg"] or "embedsdg" in front["tags"]
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
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(RuntimeError, match=r"Could not push to 'me/gsm8k-embedsdg' at http://127.0.0.1:9"):
        push_run_to_hub(tmp_path, "me/gsm8k-embedsdg", token="hf_dummy_token_for_the_test")
