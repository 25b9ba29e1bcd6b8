"""The pipeline behind ``embedsdg run``: pool -> embed -> reduce -> regions -> pairs -> interpolate -> decode ->
generate -> filter (``method="random"``: pool -> sample seeds -> generate -> filter, same budget).

Writes to the output dir: the pool with its embedding/coords columns, the regions and pairs, the synthetic dataset
(``save_to_disk`` + JSONL of every row, and ``train.jsonl`` of the accepted rows), the fitted reducer and grid,
the figures, the teacher's request cache (so an interrupted run resumes where it stopped) and ``manifest.json``
(config, versions, timings, counts) so the run can be reproduced.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .common.mapping import vector_matrix, without_embeddings
from .common.rundir import (
    LOCK_FILE,
    PID_FILE,
    RunLock,
    is_run_dir,
    load_saved_dataset,
    read_json,
    replace_dir,
    save_dataset_atomic,
    to_json_atomic,
    write_json_atomic,
)
from .common.tracking import log_run
from .common.validation import template_fields
from .common.versions import library_versions
from .config import PipelineConfig, results_diff
from .data.seed_pools import load_seed_pool
from .generation.decode import add_decoded_text
from .generation.generate import filter_accepted, make_synthetic_dataset, summarize_errors, summarize_generation
from .generation.parse import response_format_from_spec
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
from .space.knn_regions import knn_seed_pairs, selection_template
from .space.pairs import make_budget_pairs
from .space.reduce import Reducer, add_coords, fit_reducer
from .space.regions import GridSpec, count_windows, fit_grid, summarize_windows

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


class RunFailedError(RuntimeError):
    """The run finished its work but the result is not usable (most teacher requests failed, or no row survived).
    Everything it finished is on disk; the message says why, with the first error and the counts by kind. The
    run's manifest (written as ``manifest.json`` with ``status: failed``) is the ``manifest`` attribute."""

    manifest: dict | None = None


# The saved stages before the teacher, in order, with the settings each depends on beyond the earlier stages'. A
# changed setting makes its stage and every later one stale. Settings of the teacher and the gates only touch what
# is computed after decoding; any other setting (one added later too) makes every stage stale.
_STAGES = (
    (
        ("seed_pool", "pool_size", "pool_split", "pool_name", "text_template", "student", "weights", "max_length")
        + ("reducer", "n_components", "seed"),
        ("pool", "reducer"),
    ),
    (
        (
            "bins",
            "window",
            "stride",
            "threshold",
            "threshold_quantile",
            "threshold_fraction",
            "min_populated_neighbors",
        ),
        ("grid.json",),
    ),
    (  # the budget decides how far past T the regions go (make_budget_pairs), so regions/ belongs here
        ("selector", "knn_k", "knn_dims", "knn_suppress", "knn_hood_k", "knn_pairing", "knn_text")
        + ("n_pairs", "max_pairs_per_region", "side_choice", "decode_examples")
        + ("decode_max_new_tokens", "decode_rescale", "decode_engine"),
        ("regions", "pairs", "decoded", "rarity.json"),
    ),
)
_AFTER_DECODING = (
    ("method", "teacher", "generate_prompt", "samples_per_item", "temperature", "top_p", "max_tokens", "verify")
    + ("answer_format", "dedup", "dedup_threshold", "decontaminate", "decontam_ngram", "decontam_threshold")
    + ("self_consistency", "consistency_teacher")
)


def _finished(out: Path) -> bool:
    """Whether the run dir holds the result of a run that ended well (a manifest.json not marked failed)."""
    try:
        return read_json(out / "manifest.json", what="manifest", fix="").get("status") != "failed"
    except (OSError, ValueError, AttributeError):
        return False


def _clear_run_dir(out: Path, keep: tuple[str, ...] = ()) -> None:
    """Delete a run dir's outputs but ``keep``, the teacher cache (content-hash keys: always safe to reuse) and the
    lock."""
    for entry in out.iterdir():
        if entry.name in ("cache", LOCK_FILE, PID_FILE, "run_config.json", *keep):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _still_valid(changed: list[str]) -> tuple[str, ...]:
    """The saved stages a config change leaves valid: those before the first stage a changed setting feeds."""
    known = {key for keys, _ in _STAGES for key in keys} | set(_AFTER_DECODING)
    if any(key not in known for key in changed):
        return ()
    kept: tuple[str, ...] = ()
    for keys, outputs in _STAGES:
        if any(key in keys for key in changed):
            break
        kept += outputs
    return kept


def prepare_output_dir(config: PipelineConfig, lock: RunLock | None = None) -> Path:
    """Create or reuse the output dir. The same result-changing config resumes there (finished stages are reused);
    another config is refused unless ``overwrite``, which only ever replaces an embedsdg run dir and keeps its
    request cache (``clear_cache`` deletes that). With ``lock``, it is taken before anything is changed."""
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output_dir {str(out)!r} is a file, not a folder; choose another --output_dir.")
    if out.is_dir() and any(out.iterdir()) and not is_run_dir(out):
        raise FileExistsError(
            f"{str(out)!r} is not empty and is not an embedsdg run dir (no run_config.json or manifest.json); "
            "embedsdg never deletes it, not even with --overwrite true. Choose another --output_dir."
        )
    if lock is not None:
        lock.acquire()
    config_file = out / "run_config.json"
    if config_file.is_file():
        fix = "pass --overwrite true to start this run dir again (its teacher cache is kept), or another --output_dir."
        try:
            changed = results_diff(read_json(config_file, what="run config", fix=fix), config.to_dict())
        except ValueError:
            if not config.overwrite:
                raise
            changed = ["(unreadable run_config.json)"]
        if changed and not config.overwrite and _finished(out):
            raise FileExistsError(
                f"{str(out)!r} holds a finished run with another config (differs in: {changed}). Rerun with the "
                "same settings to resume it, pass --overwrite true to replace it (the teacher cache is kept), or "
                "choose another --output_dir."
            )
        if changed and config.overwrite:
            _clear_run_dir(out)
        elif changed:  # a run that never finished: keep the stages the change does not touch, redo the rest
            kept = _still_valid(changed)
            logger.warning("%s: settings changed (%s); reusing %s, redoing the rest.", out, changed, kept or "nothing")
            _clear_run_dir(out, keep=kept)
    if config.clear_cache and (out / "cache").exists():
        shutil.rmtree(out / "cache")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config_file, config.to_dict())
    return out


def run_pipeline(config: PipelineConfig) -> dict:
    """Run EmbedSDG (or the RandomSDG baseline) as configured into ``config.output_dir``; return the manifest.

    Each stage's output is saved as soon as it is done (atomically), and decoding is saved per batch under
    ``decoded/``: a rerun of the same command after a crash or a kill reuses them and the teacher cache.

    Raises:
        RunDirLockedError: another run is using the output dir.
        RunFailedError: most teacher requests failed, or no row survived to ``train.jsonl`` (all work is kept).
    """
    lock = RunLock(config.output_dir)
    try:
        out = prepare_output_dir(config, lock=lock)
        return _run(config, out)
    finally:
        lock.release()


def _run(config: PipelineConfig, out: Path) -> dict:
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
    try:
        if config.method == "embedsdg":
            pool, pairs = _analysis(config, pool, out, timer, manifest)
        if config.stage == "all":
            _generation(config, pool, pairs, out, timer, manifest)
    except RunFailedError as err:
        manifest.update({"status": "failed", "error": str(err), "steps": timer.rows})
        manifest["wall_seconds"] = round(time.perf_counter() - started, 3)
        write_json_atomic(out / "manifest.json", manifest)
        err.manifest = manifest
        try:
            _track(config, manifest, out)
        except Exception:  # the run's own failure is what the caller must see; this one is logged with it
            logger.exception("Could not log the failed run to %s", config.report_to)
        raise
    manifest.update({"status": "ok", "steps": timer.rows, "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(out / "manifest.json", manifest)
    _track(config, manifest, out)
    return manifest


def _track(config: PipelineConfig, manifest: dict, out: Path) -> None:
    """``report_to``: the manifest's counts, rejects, timings and figures to the tracker (common/tracking.py)."""
    if config.report_to != "none":
        log_run(manifest, out, report_to=config.report_to, project=config.tracking_project, name=out.resolve().name)


def _checkpoint(path: Path, compute, timer: _Timer, name: str, rows_in: int | None = None):
    """The dataset saved at ``path`` by an earlier run of the same config, or ``compute()`` saved there atomically.
    Either way it is read back from ``path``, so a first run and a resumed one continue from the same data."""
    with timer.step(name if not path.exists() else f"{name} (reused from {path.name}/)", rows_in) as rec:
        if not path.exists():
            save_dataset_atomic(compute(), path)
        ds = load_saved_dataset(path)
        rec["rows_out"] = len(ds)
    return ds


def _analysis(config: PipelineConfig, pool, out: Path, timer: _Timer, manifest: dict):
    embed_kwargs = {
        "model": config.student,
        "text_template": config.text_template,
        "weights": config.weights,
        "max_length": config.max_length,
    }
    reducer_dir = out / "reducer"
    if reducer_dir.exists() and (out / "pool").exists():
        with timer.step("embed + reduce (reused from pool/, reducer/)", len(pool)):
            pass
    else:
        with timer.step("embed", len(pool)) as rec:
            pool = add_embeddings(pool, **embed_kwargs)
            rec["rows_out"] = len(pool)
        with timer.step(f"reduce ({config.reducer}, {config.n_components}-D)", len(pool)) as rec:
            reducer = fit_reducer(pool, method=config.reducer, n_components=config.n_components, seed=config.seed)
            pool = add_coords(pool, reducer)
            rec["rows_out"] = len(pool)
        tmp = out / ".reducer.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        reducer.save(tmp)
        replace_dir(tmp, reducer_dir)
        save_dataset_atomic(pool, out / "pool")
    reducer = Reducer.load(reducer_dir)
    pool = load_saved_dataset(out / "pool")
    reused = (out / "grid.json").exists()
    with timer.step("fit grid" + (" (reused from grid.json)" if reused else ""), len(pool)) as rec:
        if reused:
            grid = GridSpec.load(out / "grid.json")
        else:
            grid = fit_grid(
                pool,
                bins=None if config.window else config.bins,
                window=config.window,
                stride=config.stride,
                threshold=config.threshold_value,
                quantile=config.threshold_quantile,
                fraction=config.threshold_fraction,
                min_populated_neighbors=config.min_populated_neighbors,
            )
            write_json_atomic(out / "grid.json", grid.to_dict())
        windows = summarize_windows(pool, grid)
        rec["rows_out"] = windows["regions"]

    def regions_and_pairs():
        if config.selector == "knn":  # the grid above still draws the density histogram
            regions, pairs = _knn_selection(config, pool, embed_kwargs)
        elif config.selector == "rarity":
            regions, pairs = _rarity_selection(config, pool, out)
        else:  # sparsest regions first; when they cannot give n_pairs, T is raised step by step (paper §4.3)
            regions, pairs = make_budget_pairs(
                pool,
                grid,
                n_pairs=config.n_pairs,
                seed=config.seed,
                max_pairs_per_region=config.max_pairs_per_region,
                side_choice=config.side_choice,
            )
        save_dataset_atomic(regions, out / "regions")  # before pairs/: a saved pairs/ always has its regions/
        return add_interpolations(pairs, pool, reducer=reducer, **embed_kwargs)

    selection = {"knn": f"k-NN regions ({config.knn_text} text)", "rarity": "rarity regions"}.get(
        config.selector, "sparse regions"
    )
    rows_in = (
        len(pool) if config.selector in ("knn", "rarity") else windows["regions"]
    )  # k-NN reads every row, not windows
    pairs = _checkpoint(out / "pairs", regions_and_pairs, timer, f"{selection} + seed pairs + interpolate", rows_in)
    regions = load_saved_dataset(out / "regions")
    if config.stage == "all" and "decoded_text" not in pairs.column_names:
        with timer.step("decode through the student", len(pairs)) as rec:
            pairs, rec["rows_reused"] = _decode_in_parts(config, pairs, pool, out)
            rec["rows_out"] = len(pairs)
    with timer.step("write analysis + figures") as rec:
        coords = vector_matrix(pool, "coords")
        manifest["figures"]["density"] = plot_density_histogram(
            count_windows(pool, grid),
            grid.threshold,
            out / "density_histogram.png",
            removed_by_neighbors=windows["removed_by_neighbor_rule"],
            threshold_rule=grid.threshold_rule,
        ).name
        manifest["figures"]["map"] = plot_embedding_map(
            coords,
            out / "embedding_map.png",
            regions=regions,
            # k-NN boxes are the bounding boxes of their neighbourhoods: a midpoint of two members is inside by
            # construction, so "in their region" says nothing there and is not shown
            pairs=(
                pairs.remove_columns("interp_in_region")
                if config.selector in ("knn", "rarity") and "interp_in_region" in pairs.column_names
                else pairs
            ),
            axis_labels=reducer.axis_labels(),
            region_label=(
                "k-NN sparse neighbourhoods (bounding boxes)"
                if config.selector in ("knn", "rarity")
                else "sparse regions (count < T)"
            ),
        ).name
        to_json_atomic(regions, out / "regions.jsonl")
        to_json_atomic(pairs, out / "pairs.jsonl")
    in_region = int(sum(pairs["interp_in_region"])) if len(pairs) else 0
    manifest["grid"] = grid.to_dict()
    manifest["windows"] = windows
    if config.selector == "rarity":  # the selector and all its fitted parts (the file holds them whole)
        spec = read_json(out / "rarity.json", what="rarity selector spec", fix="delete it")
        manifest["selector"] = {"name": "rarity", "settings": spec["settings"], "fitted": "rarity.json"}
    levels = pairs["region_level"]
    manifest["counts"].update(
        {
            "regions": len(regions),
            "regions_below_T": windows["regions"],
            "regions_with_pairs": len(set(pairs["region_id"])),
            "pairs": len(pairs),
            "pairs_past_T": sum(1 for level in levels if level > 0),
            "interp_in_region": in_region,
        }
    )
    return pool, pairs


def _decode_in_parts(config: PipelineConfig, pairs, pool, out: Path):
    """Decode the pairs one batch at a time, each finished batch saved as ``decoded/part-<start>-<stop>/``; parts an
    earlier run finished are loaded, not decoded again. The decoded pairs replace ``pairs/`` and the parts go.
    Returns the decoded pairs and how many of them were reused."""
    from datasets import concatenate_datasets

    parts_dir = out / "decoded"
    parts_dir.mkdir(exist_ok=True)
    size = max(1, config.decode_batch_size)
    parts, reused = [], 0
    for start in range(0, len(pairs), size):
        stop = min(start + size, len(pairs))
        path = parts_dir / f"part-{start:06d}-{stop:06d}"
        if path.exists():
            reused += stop - start
        else:
            decoded = add_decoded_text(
                pairs.select(range(start, stop)),
                pool,
                model=config.student,
                text_template=config.text_template,
                n_examples=config.decode_examples,
                max_new_tokens=config.decode_max_new_tokens,
                rescale=config.decode_rescale,
                seed=config.seed,
                batch_size=config.decode_batch_size,
                engine=config.decode_engine,
                cache=config.decode_cache,
            )
            save_dataset_atomic(decoded, path)
        parts.append(load_saved_dataset(path))
    save_dataset_atomic(concatenate_datasets(parts), out / "pairs")
    shutil.rmtree(parts_dir)
    if reused:
        logger.info("Decoding: %d of %d pairs reused from %s", reused, len(pairs), parts_dir)
    return load_saved_dataset(out / "pairs"), reused


def _knn_selection(config: PipelineConfig, pool, embed_kwargs: dict):
    """The ``knn`` selector (README "Choosing seeds"): ``(regions, pairs)`` on the input column's embedding
    (``knn_text="input"``, an extra embedding of the questions alone) or on the training-text one (``"full"``)."""
    column = "embedding"
    if config.knn_text == "input":
        column = "selection_embedding"
        pool = add_embeddings(
            pool,
            **{**embed_kwargs, "text_template": selection_template(config.text_template, config.knn_text)},
            column=column,
            count_column="selection_num_tokens",
        )
    return knn_seed_pairs(pool, n_pairs=config.n_pairs, seed=config.seed, column=column, **config.knn_settings())


def _rarity_selection(config: PipelineConfig, pool, out: Path):
    """The ``rarity`` selector (space/rarity.py) on the template's first column; its fitted parts (token weights,
    TF-IDF, settings) are saved as ``rarity.json`` and reused when the run resumes."""
    from .space.rarity import rarity_seed_pairs

    spec_file = out / "rarity.json"
    spec = read_json(spec_file, what="rarity selector spec", fix="delete it") if spec_file.exists() else None
    regions, pairs, spec = rarity_seed_pairs(
        pool,
        n_pairs=config.n_pairs,
        model=config.student,
        text_column=template_fields(config.text_template)[0],
        spec=spec,
        seed=config.seed,
        pairing=config.knn_pairing,
    )
    write_json_atomic(spec_file, spec)
    return regions, pairs


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
    save_dataset_atomic(synthetic, out / "synthetic")
    to_json_atomic(synthetic, out / "synthetic.jsonl")
    manifest["generation"] = summarize_generation(synthetic)
    manifest["generation"]["errors"] = errors = summarize_errors(synthetic)
    manifest["counts"].update({"synthetic": len(synthetic), "accepted": len(accepted)})
    if errors["failed"] and errors["failed"] > config.max_failed_fraction * len(synthetic):
        raise RunFailedError(
            f"{errors['failed']} of {len(synthetic)} teacher requests failed (more than max_failed_fraction="
            f"{config.max_failed_fraction}); by kind: {errors['by_kind']}. First error: {errors['first']}. "
            f"Every row, with its error, is in {out / 'synthetic.jsonl'}; finished requests are cached in "
            f"{out / 'cache'}, so the same command resumes once the teacher is fixed."
        )
    checked = _quality_gates(config, accepted, pool, out, timer, manifest)
    train = checked.filter(filter_passed, desc="Keeping rows that passed every gate")
    to_json_atomic(without_embeddings(train), out / "train.jsonl")
    manifest["counts"]["train"] = len(train)
    if len(train) == 0:
        why = {"teacher errors": errors["by_kind"], "rejected": manifest["generation"]["rejects_by_reason"]}
        why["dropped by the quality gates"] = {
            gate: info["reasons"] for gate, info in manifest["quality"]["gates"].items() if info["dropped"]
        }
        raise RunFailedError(
            f"No row survived to {out / 'train.jsonl'} ({len(synthetic)} generated): {why}."
            + (f" First teacher error: {errors['first']}." if errors["first"] else "")
            + f" Every row and why it was dropped is in {out / 'synthetic.jsonl'} and {out / 'dropped.jsonl'}."
        )
    if config.coverage and config.method == "embedsdg":
        _coverage(config, out, timer, manifest)


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
            teacher = _make_teacher(config, config.consistency_teacher or config.teacher, writes_examples=False)
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
    save_dataset_atomic(checked, out / "quality")
    dropped = checked.filter(lambda row: not filter_passed(row), desc="Listing dropped rows")
    to_json_atomic(without_embeddings(dropped), out / "dropped.jsonl")
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


def _coverage(config: PipelineConfig, out: Path, timer: _Timer, manifest: dict) -> None:
    """Coverage of the kept rows (``quality/coverage_run.py``): grid windows, or k-NN balls in the selector's space."""
    if config.selector == "rarity":  # coverage_from_run measures grid windows and k-NN balls only (not yet this)
        manifest["coverage"] = {"note": "coverage is not measured for selector 'rarity' yet"}
        return
    what = "k-NN regions" if config.selector == "knn" else "sparse regions"
    with timer.step(f"coverage of the {what}", manifest["counts"].get("train")) as rec:
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


def _make_teacher(config: PipelineConfig, spec: str, *, writes_examples: bool = True):
    """The teacher of ``spec``; an HTTP one gets the recipe's extra body, and the response format when it writes the
    examples (the self-consistency teacher writes solutions)."""
    if spec.startswith("openai:"):
        response_format = config.teacher_response_format if writes_examples else None
        return load_teacher(
            spec,
            max_concurrency=config.teacher_concurrency,
            api_key_env=config.api_key_env,
            timeout=config.teacher_timeout,
            max_retries=config.teacher_max_retries,
            extra_body=config.teacher_extra_body,
            response_format=response_format_from_spec(response_format),
        )
    return load_teacher(spec, batch_size=config.teacher_batch_size)
