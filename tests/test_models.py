"""Student specs: the built-in name, a local folder, bad paths; the embedding matrix read without a full load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embedsdg_hf.common.models import cache_dir, load_input_embeddings, load_student, resolve_model


def test_builtin_is_converted_once_and_reused(student):
    folder = resolve_model(student)
    assert folder.startswith(str(cache_dir()))
    weights = next(Path(folder).glob("*.safetensors"))
    stamp = weights.stat().st_mtime_ns
    assert resolve_model(student) == folder and weights.stat().st_mtime_ns == stamp


def test_embedding_matrix_read_alone_matches_the_model(student):
    matrix = load_input_embeddings(student)
    model, tokenizer = load_student(student)
    assert matrix.shape == (49152, 576) and matrix.dtype == torch.float32
    assert torch.equal(matrix, model.get_input_embeddings().weight.float())
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


def test_local_folder_spec_gives_the_same_embeddings(student):
    folder = resolve_model(student)
    assert resolve_model(folder) == folder
    assert torch.equal(load_input_embeddings(folder), load_input_embeddings(student))


def test_bad_specs_say_what_is_allowed(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*built-in name"):
        resolve_model("./missing-model")
    with pytest.raises(ValueError, match="has no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ValueError, match="non-empty string"):
        resolve_model("")
