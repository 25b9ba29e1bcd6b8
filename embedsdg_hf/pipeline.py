"""The pipeline behind ``embedsdg run``: pool -> embed -> reduce -> regions -> pairs -> interpolate -> decode ->
generate -> filter (``method="random"``: pool -> sample seeds -> generate -> filter, same budget).

Writes to the output dir: the pool with its embedding/coords columns, the regions and pairs, the synthetic dataset
(``save_to_disk`` + JSONL of every row, and ``train.jsonl`` of the accepted rows), the fitted reducer and grid,
the figures, the teacher's request cache (so an interrupted run resumes where it stopped) and ``manifest.json``
(config, versions, timings, counts) so the run can be reproduced.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .common.mapping import without_embeddings
from .common.progress import quiet_progress
from .common.rundir import (
    MARKER_FILE,
    RunLock,
    file_fingerprints,
    is_fresh_dir,
    is_run_dir,
    load_saved_dataset,
    read_marker,
    replace_dir,
    save_dataset_atomic,
    to_json_atomic,
    write_json_atomic,
    write_marker,
)
from .common.tracking import log_run
from .common.validation import drop_non_text_rows, template_fields
from .common.versions import library_versions
from .config import PipelineConfig, results_diff
from .data.seed_pools import load_seed_pool
from .generation.decode import add_decoded_text
from .generation.generate import filter_accepted, make_synthetic_dataset, summarize_errors, summarize_generation
from .generation.parse import response_format_from_spec
from .generation.teachers import SamplingParams, load_teacher
from .quality.consistency import add_self_consistency
from .quality.decontaminate import add_contamination_flags, load_eval_sets
from .quality.dedup import add_duplicate_flags
from .quality.gates import add_quality_reason, apply_gate, filter_passed, summarize_quality
from .quality.selectors import EmbeddingSettings, SelectionContext, get_selector
from .quality.verify import add_verification, check_solution
from .run.coverage import coverage_from_run
from .run.rundir import RUN_MARKERS, RunDir, clear_run_outputs
from .run.stages import still_valid
from .space.embed import add_embeddings
from .space.interpolate import add_interpolations
from .space.reduce import Reducer, add_coords, fit_reducer

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


def _clear_run_dir(run: RunDir, keep: tuple[str, ...] = ()) -> None:
    """Delete what the run wrote into the run dir but ``keep`` and the teacher cache (content-hash keys: always safe
    to reuse); a file or folder the run did not write is never touched (run/rundir.py ``RunDir.outputs``)."""
    clear_run_outputs(run.path, keep=(RunDir.CACHE, RunDir.CONFIG, *keep), extra=RunDir.outputs())


def _changed_inputs(previous: dict, current: dict) -> list[str]:
    """Settings whose local files' content changed since the run dir was written (``{setting: {path: sha256}}``)."""
    return sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))


def prepare_output_dir(config: PipelineConfig, lock: RunLock | None = None) -> Path:
    """Create or reuse the output dir. The same result-changing config and inputs resume there (finished stages are
    reused); another config, or a changed input file, is refused for a finished run unless ``overwrite``, and
    redoes the stages it feeds for an unfinished one. Only a folder embedsdg made (its ownership marker) is ever
    changed, and only what the run wrote there is deleted; the request cache is kept (``clear_cache`` deletes it).
    With ``lock``, it is taken before anything is changed."""
    run = RunDir(config.output_dir)
    out = run.path
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output_dir {str(out)!r} is a file, not a folder; choose another --output_dir.")
    if not is_fresh_dir(out) and not is_run_dir(out):
        found = [name for name in RUN_MARKERS if (out / name).exists()]
        what = f"holds {' and '.join(found)} but no {MARKER_FILE}" if found else "is not empty"
        raise FileExistsError(
            f"{str(out)!r} {what}: it is not an embedsdg run dir (one embedsdg made, with that marker), and embedsdg "
            "never deletes it nor rewrites anything in it, not even with --overwrite true. Choose another "
            "--output_dir (an empty or new folder)."
        )
    if lock is not None:
        lock.acquire()
    inputs = file_fingerprints(config.input_files())
    if run.config_file.is_file():
        fix = "pass --overwrite true to start this run dir again (its teacher cache is kept), or another --output_dir."
        try:
            changed = results_diff(run.config_dict(fix=fix), config.to_dict())
        except ValueError:
            if not config.overwrite:
                raise
            changed = ["(unreadable run_config.json)"]
        changed_inputs = _changed_inputs((read_marker(out) or {}).get("inputs", {}), inputs)
        if changed_inputs and not config.overwrite and run.finished():
            raise FileExistsError(
                f"{str(out)!r} holds a finished run made from other input files: the content of "
                f"{_describe_inputs(changed_inputs, config)} changed since. Pass --overwrite true to redo it from "
                "the new files (the teacher cache is kept), or another --output_dir to keep both."
            )
        if changed and not config.overwrite and run.finished():
            raise FileExistsError(
                f"{str(out)!r} holds a finished run with another config (differs in: {changed}). Rerun with the "
                "same settings to resume it, pass --overwrite true to replace it (the teacher cache is kept), or "
                "choose another --output_dir."
            )
        changed = sorted(set(changed) | set(changed_inputs))
        if changed and config.overwrite:
            _clear_run_dir(run)
        elif changed:  # a run that never finished: keep the stages the change does not touch, redo the rest
            kept = still_valid(changed)
            logger.warning("%s: settings changed (%s); reusing %s, redoing the rest.", out, changed, kept or "nothing")
            _clear_run_dir(run, keep=kept)
    if config.clear_cache and run.cache.exists():
        shutil.rmtree(run.cache)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, inputs=inputs)
    write_json_atomic(run.config_file, config.to_dict())
    return out


def _describe_inputs(changed: list[str], config: PipelineConfig) -> str:
    files = config.input_files()
    return ", ".join(
        f"{key} ({', '.join(map(repr, files.get(key, []))) or 'no longer a local file'})" for key in changed
    )


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
    with timer.step("load seed pool") as rec, quiet_progress():
        pool = load_seed_pool(
            config.seed_pool, split=config.pool_split, name=config.pool_name, n=config.pool_size, seed=config.seed
        )
        pool, skipped = drop_non_text_rows(pool, template_fields(config.text_template), what="seed pool")
        rec["rows_out"] = len(pool)
    manifest = {
        "config": config.to_dict(),
        "inputs": {"files": (read_marker(out) or {}).get("inputs", {}), "pool_fingerprint": pool._fingerprint},
        "versions": library_versions(),
        "counts": {"pool": len(pool), "pool_rows_skipped": skipped},
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
        write_json_atomic(RunDir(out).manifest_file, manifest)
        err.manifest = manifest
        try:
            _track(config, manifest, out)
        except Exception:  # the run's own failure is what the caller must see; this one is logged with it
            logger.exception("Could not log the failed run to %s", config.report_to)
        raise
    manifest.update({"status": "ok", "steps": timer.rows, "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(RunDir(out).manifest_file, manifest)
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
    run = RunDir(out)
    embedding = EmbeddingSettings.from_config(config)
    embed_kwargs = embedding.kwargs()
    if run.reducer.exists() and run.pool.exists():
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
        tmp = out / f".{RunDir.REDUCER}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        reducer.save(tmp)
        replace_dir(tmp, run.reducer)
        save_dataset_atomic(pool, run.pool)
    reducer = Reducer.load(run.reducer)
    pool = load_saved_dataset(run.pool)
    selector = get_selector(config.selector).from_config(config)
    ctx = SelectionContext(pool=pool, embedding=embedding, reducer=reducer, seed=config.seed, run_dir=out)
    reused = selector.load(out)
    saved = ", ".join(selector.saved_files)
    with timer.step(f"fit the {selector.name} selector" + (f" (reused from {saved})" if reused else ""), len(pool)):
        if not reused:
            selector.fit(ctx)
            selector.save(out)

    def regions_and_pairs():
        regions, pairs = selector.select(ctx, n_pairs=config.n_pairs)
        save_dataset_atomic(regions, run.regions)  # before pairs/: a saved pairs/ always has its regions/
        return add_interpolations(pairs, pool, reducer=reducer, **embed_kwargs)

    pairs = _checkpoint(
        run.pairs, regions_and_pairs, timer, f"{selector.name} regions + seed pairs + interpolate", len(pool)
    )
    regions = load_saved_dataset(run.regions)
    if config.stage == "all" and "decoded_text" not in pairs.column_names:
        with timer.step("decode through the student", len(pairs)) as rec:
            pairs, rec["rows_reused"] = _decode_in_parts(config, pairs, pool, out)
            rec["rows_out"] = len(pairs)
    with timer.step("write analysis + figures"):
        manifest["figures"].update(selector.plot(ctx, regions, pairs, out))
        to_json_atomic(regions, run.regions_jsonl)
        to_json_atomic(pairs, run.pairs_jsonl)
    in_region = int(sum(pairs["interp_in_region"])) if len(pairs) else 0
    summary = selector.summarize(regions, pairs)
    manifest["selection"] = {**selector.describe(), **_seed_words(config, pool, pairs, summary["text"])}
    manifest["counts"].update(
        {
            "regions": len(regions),
            "regions_with_pairs": len(set(pairs["region_id"])),
            "pairs": len(pairs),
            "interp_in_region": in_region,
            **summary["counts"],
        }
    )
    return pool, pairs


def _seed_words(config: PipelineConfig, pool, pairs, text: str) -> dict:
    """The selection's summary line, followed by the words its seeds lean to (``analysis/seed_words.py``), and those
    words for the manifest: what the selection took, in the pool's own words."""
    import numpy as np

    from .analysis.seed_words import lean_sentence, seed_word_lean

    column = template_fields(config.text_template)[0]
    rows = np.unique(np.concatenate([pairs["seed_a"], pairs["seed_b"]])) if len(pairs) else np.zeros(0, np.int64)
    lean = seed_word_lean([str(t) for t in pool[column]], rows, seed=config.seed) if len(rows) else []
    return {
        "summary": " ".join(filter(None, [text, lean_sentence(lean, len(rows))])),
        "seed_words": {"seed_rows": len(rows), "words": lean},
    }


def _decode_in_parts(config: PipelineConfig, pairs, pool, out: Path):
    """Decode the pairs one batch at a time, each finished batch saved as ``decoded/part-<start>-<stop>/``; parts an
    earlier run finished are loaded, not decoded again. The decoded pairs replace ``pairs/`` and the parts go.
    Returns the decoded pairs and how many of them were reused."""
    from datasets import concatenate_datasets

    run = RunDir(out)
    parts_dir = run.decoded
    parts_dir.mkdir(exist_ok=True)
    size = max(1, config.decode_batch_size)
    parts, reused = [], 0
    for start in range(0, len(pairs), size):
        stop = min(start + size, len(pairs))
        path = run.decoded_part(start, stop)
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
    save_dataset_atomic(concatenate_datasets(parts), run.pairs)
    shutil.rmtree(parts_dir)
    if reused:
        logger.info("Decoding: %d of %d pairs reused from %s", reused, len(pairs), parts_dir)
    return load_saved_dataset(run.pairs), reused


def _generation(config: PipelineConfig, pool, pairs, out: Path, timer: _Timer, manifest: dict) -> None:
    run = RunDir(out)
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
            cache_dir=run.cache,
            question_column=question,
            answer_column=answer,
            attempts=config.teacher_decoding()["attempts"],
            row_check=functools.partial(_verify_row, kind=config.answer_format) if config.verify else None,
        )
        rec["rows_out"] = len(synthetic)
    with timer.step("filter rejects", len(synthetic)) as rec:
        with quiet_progress():
            accepted = synthetic.filter(filter_accepted, desc="Keeping accepted examples")
        rec["rows_out"] = len(accepted)
    save_dataset_atomic(synthetic, run.synthetic)
    to_json_atomic(synthetic, run.synthetic_jsonl)
    manifest["generation"] = summarize_generation(synthetic)
    manifest["generation"]["errors"] = errors = summarize_errors(synthetic)
    manifest["counts"].update({"synthetic": len(synthetic), "accepted": len(accepted)})
    if errors["failed"] and errors["failed"] > config.max_failed_fraction * len(synthetic):
        raise RunFailedError(
            f"{errors['failed']} of {len(synthetic)} teacher requests failed (more than max_failed_fraction="
            f"{config.max_failed_fraction}); by kind: {errors['by_kind']}. First error: {errors['first']}. "
            f"Every row, with its error, is in {run.synthetic_jsonl}; finished requests are cached in "
            f"{run.cache}, so the same command resumes once the teacher is fixed."
        )
    checked = _quality_gates(config, accepted, pool, out, timer, manifest)
    with quiet_progress():
        train = checked.filter(filter_passed, desc="Keeping rows that passed every gate")
    _write_train(without_embeddings(train), out)
    manifest["counts"]["train"] = len(train)
    if len(train) == 0:
        why = {"teacher errors": errors["by_kind"], "rejected": manifest["generation"]["rejects_by_reason"]}
        why["dropped by the quality gates"] = {
            gate: info["reasons"] for gate, info in manifest["quality"]["gates"].items() if info["dropped"]
        }
        raise RunFailedError(
            f"No row survived to {run.train} ({len(synthetic)} generated): {why}."
            + (f" First teacher error: {errors['first']}." if errors["first"] else "")
            + f" Every row and why it was dropped is in {run.synthetic_jsonl} and {run.dropped}."
        )
    if config.coverage and config.method == "embedsdg":
        _coverage(config, out, timer, manifest)


_RUN_DIR_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: train.jsonl
---
An embedsdg run dir. `load_dataset("<this folder>")` and `trl sft --dataset_name <this folder>` read `train.jsonl`:
the rows that passed the parser and every quality gate. `manifest.json` has the counts and timings.
"""


def _write_train(train, out: Path) -> None:
    """``train.jsonl`` with the rows that passed every gate, and the run dir's ``README.md`` that makes it the one
    file ``load_dataset(<run dir>)`` reads. With no row, no ``train.jsonl`` (an earlier attempt's goes): an empty
    JSON-lines file makes ``load_dataset`` die with a bare StopIteration; a missing one is named."""
    run = RunDir(out)
    if len(train):
        to_json_atomic(train, run.train)
    elif run.train.exists():
        run.train.unlink()
    tmp = out / f".{RunDir.CARD}.tmp"
    tmp.write_text(_RUN_DIR_CARD, encoding="utf-8")
    tmp.replace(run.card)


def _verify_row(parsed, *, kind: str) -> str | None:
    """Best-of-n's per-row gate: the verification reason of a parsed example (None: it passes)."""
    return check_solution(parsed.answer, parsed.final_answer, kind=kind)[0]


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
    if config.decontaminate is not None:
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
                cache_dir=RunDir(out).cache,
            )
            rec["rows_out"] = summarize_quality(checked)["passed"]
    with quiet_progress():
        checked = add_quality_reason(checked)
        dropped = checked.filter(lambda row: not filter_passed(row), desc="Listing dropped rows")
    save_dataset_atomic(checked, RunDir(out).quality)
    to_json_atomic(without_embeddings(dropped), RunDir(out).dropped)
    manifest["quality"] = summarize_quality(checked)
    manifest["quality"]["contaminated"] = _contaminated(checked)
    return checked


def _eval_sets(spec: str, load_eval_sets) -> dict:
    try:
        with quiet_progress():
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
    """Coverage of the kept rows (``run/coverage.py``): grid windows, or k-NN balls in the selector's space."""
    with timer.step(f"coverage of the {config.selector} regions", manifest["counts"].get("train")) as rec:
        try:
            report = coverage_from_run(out)
        except NotImplementedError as err:  # a selector without a coverage measure: said, not failed
            logger.warning("No coverage report: %s", err)
            manifest["coverage"] = {"note": str(err)}
            return
        rec["rows_out"] = manifest["counts"].get("train")
    manifest["coverage"] = report.to_dict().get("summary")
    manifest["coverage_text"] = report.text()  # the summary's and the dataset card's lines (the selector's words)
    manifest["figures"]["coverage"] = RunDir.COVERAGE_PNG


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
    if spec.startswith("transformers:") and writes_examples:
        decoding = config.teacher_decoding()
        return load_teacher(
            spec, batch_size=config.teacher_batch_size, calculator=decoding["calculator"], grammar=decoding["grammar"]
        )
    return load_teacher(spec, batch_size=config.teacher_batch_size)
