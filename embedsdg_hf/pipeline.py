"""The pipeline behind ``embedsdg run``: pool -> embed -> reduce -> regions -> pairs -> interpolate -> decode ->
generate -> filter (``method="random"``: pool -> sample seeds -> generate -> filter, same budget).

Writes to the output dir: the pool with its embedding/coords columns, the regions and pairs, the synthetic dataset
(``save_to_disk`` + JSONL of every row, and ``train.jsonl`` of the accepted rows), the fitted reducer and grid,
the figures, the teacher's request cache (so an interrupted run resumes where it stopped) and ``manifest.json``
(config, versions, timings, counts) so the run can be reproduced.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .common.mapping import vector_matrix, without_embeddings
from .common.validation import template_fields
from .common.versions import library_versions
from .config import PipelineConfig, results_view
from .data.seed_pools import load_seed_pool
from .generation.decode import add_decoded_text
from .generation.generate import filter_accepted, make_synthetic_dataset, summarize_generation
from .generation.teachers import SamplingParams, load_teacher
from .plots import plot_density_histogram, plot_embedding_map
from .quality.consistency import add_self_consistency
from .quality.coverage_run import coverage_from_run
from .quality.decontaminate import add_contamination_flags, load_eval_sets
from .quality.dedup import add_duplicate_flags
from .quality.gates import add_quality_reason, apply_gate, filter_passed, summarize_quality
from .quality.verify import add_verification
from .space.embed import add_embeddings
from .space.interpolate import add_interpolations
from .space.pairs import make_seed_pairs
from .space.reduce import add_coords, fit_reducer
from .space.regions import count_windows, find_sparse_regions, fit_grid

logger = logging.getLogger(__name__)


class _Timer:
    def __init__(self):
        self.rows: list[dict] = []

    @contextmanager
    def step(self, name: str, rows_in: int | None = None):
        record = {"step": name, "rows_in": rows_in, "rows_out": None, "seconds": None}
        start = time.perf_counter()
        yield record
        record["seconds"] = round(time.perf_counter() - start, 3)
        self.rows.append(record)


def prepare_output_dir(config: PipelineConfig) -> Path:
    """Create the output dir. The same config resumes there; another config is refused unless ``overwrite``."""
    out = Path(config.output_dir)
    manifest = out / "run_config.json"
    if manifest.exists():
        previous = results_view(json.loads(manifest.read_text()))
        current = config.fingerprint_dict()
        if previous != current and not config.overwrite:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            raise FileExistsError(
                f"{str(out)!r} holds a run with another config (differs in: {changed}). "
                "Pass --overwrite true to replace it, or choose another --output_dir."
            )
    elif out.exists() and any(out.iterdir()) and not config.overwrite:
        raise FileExistsError(
            f"{str(out)!r} exists and is not an embedsdg run dir; pass --overwrite true or pick another."
        )
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    return out


def run_pipeline(config: PipelineConfig) -> dict:
    """Run EmbedSDG (or the RandomSDG baseline) as configured into ``config.output_dir``; return the manifest."""
    out = prepare_output_dir(config)
    timer = _Timer()
    started = time.perf_counter()
    with timer.step("load seed pool") as rec:
        pool = load_seed_pool(
            config.seed_pool, split=config.pool_split, name=config.pool_name, n=config.pool_size, seed=config.seed
        )
        rec["rows_out"] = len(pool)
    manifest = {
        "config": config.to_dict(),
        "versions": library_versions(),
        "counts": {"pool": len(pool)},
        "figures": {},
    }
    pairs = None
    if config.method == "embedsdg":
        pool, pairs = _analysis(config, pool, out, timer, manifest)
    if config.stage == "all":
        _generation(config, pool, pairs, out, timer, manifest)
    manifest.update({"steps": timer.rows, "wall_seconds": round(time.perf_counter() - started, 3)})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def _analysis(config: PipelineConfig, pool, out: Path, timer: _Timer, manifest: dict):
    embed_kwargs = {
        "model": config.student,
        "text_template": config.text_template,
        "weights": config.weights,
        "max_length": config.max_length,
    }
    with timer.step("embed", len(pool)) as rec:
        pool = add_embeddings(pool, **embed_kwargs)
        rec["rows_out"] = len(pool)
    with timer.step(f"reduce ({config.reducer}, {config.n_components}-D)", len(pool)) as rec:
        reducer = fit_reducer(pool, method=config.reducer, n_components=config.n_components, seed=config.seed)
        pool = add_coords(pool, reducer)
        rec["rows_out"] = len(pool)
    with timer.step("grid + sparse regions", len(pool)) as rec:
        grid = fit_grid(
            pool,
            bins=None if config.window else config.bins,
            window=config.window,
            stride=config.stride,
            threshold=config.threshold_value,
            quantile=config.threshold_quantile,
            min_populated_neighbors=config.min_populated_neighbors,
        )
        regions = find_sparse_regions(pool, grid)
        rec["rows_out"] = len(regions)
    with timer.step("seed pairs", len(regions)) as rec:
        pairs = make_seed_pairs(
            pool, regions, n_pairs=config.n_pairs, seed=config.seed, max_pairs_per_region=config.max_pairs_per_region
        )
        rec["rows_out"] = len(pairs)
    with timer.step("interpolate", len(pairs)) as rec:
        pairs = add_interpolations(pairs, pool, reducer=reducer, **embed_kwargs)
        rec["rows_out"] = len(pairs)
    if config.stage == "all":
        with timer.step("decode through the student", len(pairs)) as rec:
            pairs = add_decoded_text(
                pairs,
                pool,
                model=config.student,
                text_template=config.text_template,
                n_examples=config.decode_examples,
                max_new_tokens=config.decode_max_new_tokens,
                rescale=config.decode_rescale,
                seed=config.seed,
                batch_size=config.decode_batch_size,
                engine=config.decode_engine,
            )
            rec["rows_out"] = len(pairs)
    with timer.step("write analysis + figures") as rec:
        coords = vector_matrix(pool, "coords")
        manifest["figures"]["density"] = plot_density_histogram(
            count_windows(pool, grid), grid.threshold, out / "density_histogram.png"
        ).name
        manifest["figures"]["map"] = plot_embedding_map(
            coords, out / "embedding_map.png", regions=regions, pairs=pairs
        ).name
        reducer.save(out / "reducer")
        grid.save(out / "grid.json")
        for name, ds in (("pool", pool), ("regions", regions), ("pairs", pairs)):
            ds.save_to_disk(str(out / name))
        regions.to_json(str(out / "regions.jsonl"))
        pairs.to_json(str(out / "pairs.jsonl"))
    in_region = int(sum(pairs["interp_in_region"])) if len(pairs) else 0
    manifest["grid"] = grid.to_dict()
    manifest["counts"].update({"regions": len(regions), "pairs": len(pairs), "interp_in_region": in_region})
    return pool, pairs


def _generation(config: PipelineConfig, pool, pairs, out: Path, timer: _Timer, manifest: dict) -> None:
    question, answer = _template_columns(config.text_template)
    teacher = _make_teacher(config, config.teacher)
    n_items = len(pairs) if pairs is not None else config.n_pairs
    with timer.step(f"generate with the teacher ({config.method})", n_items * config.samples_per_item) as rec:
        synthetic = make_synthetic_dataset(
            pool,
            pairs,
            teacher=teacher,
            method=config.method,
            n_samples=None if pairs is not None else config.n_pairs,
            samples_per_item=config.samples_per_item,
            prompt=config.generate_prompt,
            sampling=SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens),
            seed=config.seed,
            cache_dir=out / "cache",
            question_column=question,
            answer_column=answer,
        )
        rec["rows_out"] = len(synthetic)
    with timer.step("filter rejects", len(synthetic)) as rec:
        accepted = synthetic.filter(filter_accepted, desc="Keeping accepted examples")
        rec["rows_out"] = len(accepted)
    synthetic.save_to_disk(str(out / "synthetic"))
    synthetic.to_json(str(out / "synthetic.jsonl"))
    manifest["generation"] = summarize_generation(synthetic)
    manifest["counts"].update({"synthetic": len(synthetic), "accepted": len(accepted)})
    checked = _quality_gates(config, accepted, pool, out, timer, manifest)
    train = checked.filter(filter_passed, desc="Keeping rows that passed every gate")
    without_embeddings(train).to_json(str(out / "train.jsonl"))
    manifest["counts"]["train"] = len(train)
    if config.coverage and config.method == "embedsdg":
        _coverage(out, timer, manifest)


def _quality_gates(config: PipelineConfig, accepted, pool, out: Path, timer: _Timer, manifest: dict):
    """Verification -> dedup -> decontamination -> self-consistency on the accepted rows, as configured.

    Writes ``quality/`` (every accepted row with the gates' columns and ``quality_reason``) and ``dropped.jsonl``
    (the rows a gate dropped, with why), and puts the counts by gate and reason into the manifest.
    """
    question, _ = _template_columns(config.text_template)
    checked = accepted
    if config.verify:
        with timer.step(f"verify answers ({config.answer_format})", len(checked)) as rec:
            checked = apply_gate(checked, add_verification, kind=config.answer_format)
            rec["rows_out"] = summarize_quality(checked)["passed"]
    if config.dedup:
        with timer.step("deduplicate (pool + earlier rows)", len(checked)) as rec:
            checked = apply_gate(
                checked,
                add_duplicate_flags,
                pool,
                model=config.student,
                pool_template=f"{{{question}}}",
                threshold=config.dedup_threshold,
            )
            rec["rows_out"] = summarize_quality(checked)["passed"]
    if config.decontaminate.strip().lower() not in ("", "none"):
        with timer.step(f"decontaminate ({config.decontaminate})", len(checked)) as rec:
            checked = apply_gate(
                checked,
                add_contamination_flags,
                _eval_sets(config.decontaminate, load_eval_sets),
                model=config.student,
                ngram=config.decontam_ngram,
                threshold=config.decontam_threshold,
            )
            rec["rows_out"] = summarize_quality(checked)["passed"]
    if config.self_consistency:
        with timer.step(f"self-consistency (k={config.self_consistency})", len(checked)) as rec:
            teacher = _make_teacher(config, config.consistency_teacher or config.teacher)
            checked = apply_gate(
                checked,
                add_self_consistency,
                teacher,
                k=config.self_consistency,
                kind=config.answer_format,
                sampling=SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=512),
                seed=config.seed,
                cache_dir=out / "cache",
            )
            rec["rows_out"] = summarize_quality(checked)["passed"]
    checked = add_quality_reason(checked)
    checked.save_to_disk(str(out / "quality"))
    dropped = checked.filter(lambda row: not filter_passed(row), desc="Listing dropped rows")
    without_embeddings(dropped).to_json(str(out / "dropped.jsonl"))
    manifest["quality"] = summarize_quality(checked)
    manifest["quality"]["contaminated"] = _contaminated(checked)
    return checked


def _eval_sets(spec: str, load_eval_sets) -> dict:
    try:
        return load_eval_sets(spec)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"Could not load the evaluation set(s) {spec!r} for decontamination: {err}. Give local files "
            "(--decontaminate path/to/test.jsonl) or turn the check off with --decontaminate none."
        ) from err


def _contaminated(checked) -> list[dict]:
    """The rows decontamination dropped: what they leaked, for the run report."""
    if "contamination_reason" not in checked.column_names:
        return []
    columns = ["question", "contamination_reason", "contaminated_with", "contamination_ngrams", "contamination_score"]
    table = checked.select_columns(columns).with_format("arrow")[:].to_pylist()
    return [{"row": i, **row} for i, row in enumerate(table) if row["contamination_reason"] is not None]


def _coverage(out: Path, timer: _Timer, manifest: dict) -> None:
    with timer.step("coverage of the sparse regions", manifest["counts"].get("train")) as rec:
        report = coverage_from_run(out)
        rec["rows_out"] = manifest["counts"].get("train")
    manifest["coverage"] = report.to_dict().get("summary")
    manifest["figures"]["coverage"] = "coverage.png"


def _template_columns(template: str) -> tuple[str, str]:
    """The question/answer columns of a two-field template like ``{question}\\n{answer}`` (or ``{query}...``)."""
    fields = template_fields(template)
    if len(fields) != 2:
        raise ValueError(
            f"text_template {template!r} must name exactly two columns (input, output) for generation, e.g. "
            "'{question}\\n{answer}'."
        )
    return fields[0], fields[1]


def _make_teacher(config: PipelineConfig, spec: str):
    if spec.startswith("openai:"):
        return load_teacher(spec, max_concurrency=config.teacher_concurrency, api_key_env=config.api_key_env)
    return load_teacher(spec, batch_size=config.teacher_batch_size)
