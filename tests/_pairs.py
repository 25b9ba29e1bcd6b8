"""Three seed pairs of a small pool with their interpolations: the input of the decoding tests."""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from embedsdg_hf import add_coords, add_embeddings, add_interpolations, fit_reducer


def interpolated_pairs(pool: Dataset, student: str) -> Dataset:
    """Pairs (0, 1), (2, 3), (4, 5) of ``pool``, each region the box of its two seeds, interpolated in 2-D PCA."""
    embedded = add_embeddings(pool, model=student)
    reducer = fit_reducer(embedded, n_components=2, seed=0)
    coords = np.asarray(add_coords(embedded, reducer)["coords"], dtype=np.float64)
    seeds = [(0, 1), (2, 3), (4, 5)]
    raw = Dataset.from_dict(
        {
            "seed_a": [a for a, _ in seeds],
            "seed_b": [b for _, b in seeds],
            "region_lower": [np.minimum(coords[a], coords[b]).tolist() for a, b in seeds],
            "region_upper": [np.maximum(coords[a], coords[b]).tolist() for a, b in seeds],
        }
    )
    return add_interpolations(raw, pool, model=student, reducer=reducer)
