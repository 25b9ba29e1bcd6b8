"""EmbedSDG: targeted synthetic data generation in a student model's embedding space, as `datasets` transforms.

Every step is a function over a ``datasets.Dataset``::

    from embedsdg_hf import (add_coords, add_embeddings, add_grid_cells, add_interpolations, find_sparse_regions,
                             fit_grid, fit_reducer, make_seed_pairs, make_word_problems)

    pool = make_word_problems(2000, seed=0)
    pool = add_embeddings(pool, model="smollm2-135m-instruct")
    reducer = fit_reducer(pool, method="pca", n_components=2, seed=0)
    pool = add_coords(pool, reducer)
    grid = fit_grid(pool, bins=20)
    regions = find_sparse_regions(pool, grid)
    pairs = make_seed_pairs(pool, regions, n_pairs=50, seed=0)
    pairs = add_interpolations(pairs, pool, model="smollm2-135m-instruct", reducer=reducer)

Imports are lazy, so ``import embedsdg_hf`` (and ``embedsdg --help``) stay instant.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "add_embeddings": "embed",
    "EmbeddingSpec": "embed",
    "fit_reducer": "reduce",
    "add_coords": "reduce",
    "Reducer": "reduce",
    "GridSpec": "regions",
    "fit_grid": "regions",
    "add_grid_cells": "regions",
    "find_sparse_regions": "regions",
    "count_windows": "regions",
    "make_seed_pairs": "pairs",
    "add_interpolations": "interpolate",
    "interpolate_sequences": "interpolate",
    "add_decoded_text": "decode",
    "make_synthetic_dataset": "generate",
    "filter_accepted": "generate",
    "summarize_generation": "generate",
    "add_duplicate_flags": "dedup",
    "filter_unique": "dedup",
    "add_contamination_flags": "decontaminate",
    "filter_clean": "decontaminate",
    "load_eval_sets": "decontaminate",
    "add_verification": "verify",
    "filter_verified": "verify",
    "check_solution": "verify",
    "add_self_consistency": "consistency",
    "filter_consistent": "consistency",
    "apply_gate": "quality",
    "add_quality_reason": "quality",
    "filter_passed": "quality",
    "summarize_quality": "quality",
    "coverage_report": "coverage",
    "coverage_from_run": "coverage",
    "CoverageReport": "coverage",
    "measure_coverage": "coverage",
    "occupancy_entropy": "coverage",
    "plot_coverage": "plots",
    "load_teacher": "teachers",
    "load_prompt": "prompts",
    "evaluate_model": "evaluate",
    "load_eval_data": "evaluate",
    "extract_gsm8k_answer": "answers",
    "extract_boxed": "answers",
    "math_equal": "answers",
    "answers_equal": "answers",
    "density_vs_accuracy": "analysis",
    "plot_density_accuracy": "plots",
    "load_training_data": "train",
    "run_ablation": "ablation",
    "load_student": "models",
    "load_tokenizer": "models",
    "resolve_model": "models",
    "make_word_problems": "pool",
    "load_seed_pool": "sources",
    "plot_density_histogram": "plots",
    "plot_embedding_map": "plots",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
