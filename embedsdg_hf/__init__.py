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

# Import rule: a module imports what it needs at its top, except where that would slow `embedsdg --help` or
# `import embedsdg_hf`: here (the public API resolves lazily), in cli.py (each command imports its own stage), and
# in the light modules the CLI parser reaches (config, the evaluate/train argument definitions), which defer torch,
# transformers, datasets and matplotlib to the functions that use them.

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "add_embeddings": "space.embed",
    "EmbeddingSpec": "space.embed",
    "fit_reducer": "space.reduce",
    "add_coords": "space.reduce",
    "Reducer": "space.reduce",
    "GridSpec": "space.regions",
    "fit_grid": "space.regions",
    "add_grid_cells": "space.regions",
    "find_sparse_regions": "space.regions",
    "count_windows": "space.regions",
    "summarize_windows": "space.regions",
    "make_seed_pairs": "space.pairs",
    "make_budget_pairs": "space.pairs",
    "knn_seed_pairs": "space.knn_regions",
    "find_knn_regions": "space.knn_regions",
    "make_knn_pairs": "space.knn_regions",
    "fit_density_space": "space.knn_regions",
    "regions_dataset": "space.regions",
    "Selector": "quality.selectors",
    "SelectionContext": "quality.selectors",
    "get_selector": "quality.selectors",
    "register_selector": "quality.selectors",
    "RunDir": "run.rundir",
    "make_testbed_pool": "experiments.testbed",
    "run_targeting": "experiments.testbed",
    "FamilyTeacher": "generation.teachers",
    "add_interpolations": "space.interpolate",
    "interpolate_sequences": "space.interpolate",
    "add_decoded_text": "generation.decode",
    "make_synthetic_dataset": "generation.generate",
    "filter_accepted": "generation.generate",
    "summarize_generation": "generation.generate",
    "summarize_errors": "generation.generate",
    "add_duplicate_flags": "quality.dedup",
    "filter_unique": "quality.dedup",
    "add_contamination_flags": "quality.decontaminate",
    "filter_clean": "quality.decontaminate",
    "load_eval_sets": "quality.decontaminate",
    "add_verification": "quality.verify",
    "filter_verified": "quality.verify",
    "check_solution": "quality.verify",
    "add_self_consistency": "quality.consistency",
    "filter_consistent": "quality.consistency",
    "apply_gate": "quality.gates",
    "add_quality_reason": "quality.gates",
    "filter_passed": "quality.gates",
    "summarize_quality": "quality.gates",
    "coverage_report": "analysis.coverage",
    "coverage_from_run": "run.coverage",
    "CoverageReport": "analysis.coverage",
    "measure_coverage": "analysis.coverage",
    "occupancy_entropy": "analysis.coverage",
    "plot_coverage": "plots",
    "knn_coverage_report": "analysis.knn_coverage",
    "KnnCoverageReport": "analysis.knn_coverage",
    "measure_knn_coverage": "analysis.knn_coverage",
    "plot_knn_coverage": "plots",
    "load_teacher": "generation.teachers",
    "json_response_format": "generation.parse",
    "parse_generation": "generation.parse",
    "load_prompt": "generation.prompts",
    "evaluate_model": "training.evaluate",
    "load_eval_data": "data.eval_sets",
    "extract_gsm8k_answer": "common.answers",
    "extract_boxed": "common.answers",
    "math_equal": "common.answers",
    "answers_equal": "common.answers",
    "density_vs_accuracy": "analysis.density",
    "plot_density_accuracy": "plots",
    "load_training_data": "training.train",
    "run_ablation": "experiments.ablation",
    "load_student": "common.models",
    "load_tokenizer": "common.models",
    "resolve_model": "common.models",
    "make_word_problems": "data.word_problems",
    "make_word_problem": "data.word_problems",
    "load_seed_pool": "data.seed_pools",
    "plot_density_histogram": "plots",
    "plot_embedding_map": "plots",
    "push_run_to_hub": "hub",
    "stage_run_for_hub": "hub",
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
