"""``add_interpolations``: average two seeds' weighted token-embedding sequences (METHOD.md §4, eq. 4-5).

``avg = (pad_m(E[t1] * w1) + pad_m(E[t2] * w2)) / 2`` with m = max(m1, m2) and zero padding on the right. The
m x N sequences are never stored (for an 8B student they would be tens of GB): the pairs keep the seeds' token
ids and weights, and :func:`interpolate_sequences` rebuilds ``avg`` with an embedding lookup whenever it is
needed (here to place the point, later to decode it). Its point in the reduced space is
``reducer(avg x 1^m)``: with the same pooling and a linear reducer, exactly the midpoint of the two seeds.
"""

from __future__ import annotations

import numpy as np

from ..common.models import fork_safe_torch, load_input_embeddings
from ..common.splits import splitwise
from ..common.validation import require_columns, require_rows, require_template_columns
from .embed import EmbeddingSpec, tokenize_and_weigh
from .reduce import Reducer

PAIR_COLUMNS = ("seed_a", "seed_b", "region_lower", "region_upper")


def interpolate_sequences(model: str, ids_a, weights_a, ids_b, weights_b):
    """The averaged, right-zero-padded weighted token-embedding sequence of two seeds: an (m, N) float32 tensor.

    This is the one definition of eq. 4, shared by placement (here) and decoding (``inputs_embeds``).

    Example:
        >>> spec = "smollm2-135m-instruct"
        >>> avg = interpolate_sequences(spec, [1, 2, 3], [1 / 3] * 3, [4, 5], [0.5, 0.5])  # doctest: +SKIP
        >>> avg.shape  # doctest: +SKIP
        torch.Size([3, 576])
    """
    torch = fork_safe_torch()
    matrix = load_input_embeddings(model)
    m = max(len(ids_a), len(ids_b))
    avg = torch.zeros((m, matrix.shape[1]), dtype=torch.float32)
    for ids, weights in ((ids_a, weights_a), (ids_b, weights_b)):
        ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        weights_t = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        avg[: len(ids_t)] += matrix[ids_t] * weights_t[:, None]
    return avg / 2


class _Interpolate:
    """The ``Dataset.map`` function of :func:`add_interpolations` (state: embedding spec and fitted reducer)."""

    def __init__(self, spec: EmbeddingSpec, reducer: Reducer):
        self.spec, self.reducer = spec, reducer

    def __call__(self, batch: dict[str, list]) -> dict[str, object]:
        ids_a, w_a, _ = tokenize_and_weigh(self.spec, batch["seed_text_a"])
        ids_b, w_b, _ = tokenize_and_weigh(self.spec, batch["seed_text_b"])
        pooled = np.stack(
            [interpolate_sequences(self.spec.model, *args).sum(dim=0).numpy() for args in zip(ids_a, w_a, ids_b, w_b)]
        )
        coords = self.reducer.transform(pooled)
        lower = np.asarray(batch["region_lower"], dtype=np.float64)
        upper = np.asarray(batch["region_upper"], dtype=np.float64)
        inside = ((coords >= lower) & (coords <= upper)).all(axis=1)
        return {
            "seed_input_ids_a": ids_a,
            "seed_input_ids_b": ids_b,
            "seed_token_weights_a": w_a,
            "seed_token_weights_b": w_b,
            "interp_length": np.asarray([max(len(a), len(b)) for a, b in zip(ids_a, ids_b)], dtype=np.int32),
            "interp_coords": coords,
            "interp_in_region": inside,
        }


@splitwise(
    streaming="the pairs are a small in-memory table from make_seed_pairs, checked against the pool before mapping"
)
def add_interpolations(
    pairs,
    ds,
    *,
    model: str,
    reducer: Reducer,
    text_template: str = "{question}\n{answer}",
    weights: str = "mean",
    max_length: int | None = None,
    attention_layer: int = -1,
    batch_size: int = 64,
    **map_kwargs,
):
    """Add each pair's interpolation: seed texts, token ids and weights, ``interp_coords``, ``interp_in_region``.

    Use the same ``model``, ``text_template``, ``weights`` and ``max_length`` as :func:`add_embeddings`, and the
    reducer fitted on those embeddings: then a linear reducer places each interpolation exactly at the midpoint
    of its seeds.

    Args:
        pairs: the output of ``make_seed_pairs`` (``seed_a``, ``seed_b``, ``region_lower``, ``region_upper``).
        ds: the seed pool the pairs index into (row positions).

    Example:
        >>> pairs = add_interpolations(pairs, ds, model="smollm2-135m-instruct", reducer=reducer)  # doctest: +SKIP
    """
    from datasets import List, Value

    require_rows(pairs, what="pairs dataset", step="add_interpolations")
    require_columns(pairs, PAIR_COLUMNS, what="pairs dataset")
    require_rows(ds, what="seed pool", step="add_interpolations")
    fields = require_template_columns(ds, text_template)
    seeds = {name: np.asarray(pairs[name], dtype=np.int64) for name in ("seed_a", "seed_b")}
    for name, rows in seeds.items():
        bad = rows[(rows < 0) | (rows >= len(ds))]
        if len(bad):
            raise ValueError(
                f"Pairs column {name!r} has row {int(bad[0])}, outside the seed pool's {len(ds)} rows: "
                "were the pairs made from another dataset?"
            )
    spec = EmbeddingSpec.create(
        model, text_template=text_template, weights=weights, max_length=max_length, attention_layer=attention_layer
    )
    dim = int(load_input_embeddings(model).shape[1])
    if dim != reducer.input_dim:
        raise ValueError(f"The reducer was fitted on {reducer.input_dim}-dim vectors but {model!r} embeds in {dim}.")
    pairs = pairs.remove_columns([c for c in ("seed_text_a", "seed_text_b") if c in pairs.column_names])
    for name, rows in seeds.items():
        pool_rows = ds.select_columns(fields).select(rows.tolist()).to_dict()
        pairs = pairs.add_column(f"seed_text{name[-2:]}", spec.render(pool_rows))

    features = pairs.features.copy()
    features.update(
        {
            "seed_input_ids_a": List(Value("int32")),
            "seed_input_ids_b": List(Value("int32")),
            "seed_token_weights_a": List(Value("float32")),
            "seed_token_weights_b": List(Value("float32")),
            "interp_length": Value("int32"),
            "interp_coords": List(Value("float32"), length=reducer.n_components),
            "interp_in_region": Value("bool"),
        }
    )
    return pairs.map(
        _Interpolate(spec, reducer),
        batched=True,
        batch_size=batch_size,
        features=features,
        desc="Interpolating seed pairs",
        **map_kwargs,
    )
