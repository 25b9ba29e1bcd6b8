"""EmbedSDG vs RandomSDG (the shape of the paper's Table 1): for each budget, generate with both methods, LoRA
fine-tune the student on each, evaluate, and write a Markdown / CSV / JSON table with the base model's row.

    embedsdg ablation --config recipes/gsm8k-cpu/pipeline.yaml --sft-config recipes/gsm8k-cpu/sft/lora.yaml \\
        --budgets 8 16 --eval-data gsm8k-test --eval-limit 100 --output-dir outputs/ablation-cpu
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace
from pathlib import Path

from ..config import PipelineConfig
from ..run.rundir import RunDir

logger = logging.getLogger(__name__)

METHODS = ("embedsdg", "random")


def run_ablation(
    config: PipelineConfig,
    *,
    budgets: list[int],
    sft_config: str,
    output_dir: str | Path,
    eval_data: str = "gsm8k-test",
    eval_limit: int | None = 100,
    eval_batch_size: int = 32,
    max_new_tokens: int = 256,
    sft_overrides: list[str] | None = None,
) -> list[dict]:
    """Run the ablation; return the table rows (also written to ``output_dir/ablation.{md,csv,json}``)."""
    from ..data.eval_sets import load_eval_data
    from ..pipeline import RunFailedError, run_pipeline
    from ..training.evaluate import evaluate_model
    from ..training.train import run_train

    if not budgets or any(b < 1 for b in budgets):
        raise ValueError(f"budgets must be positive integers, got {budgets}.")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data, kind = load_eval_data(eval_data, limit=eval_limit)

    def evaluate(adapter: Path | None, name: str) -> dict:
        predictions, results = evaluate_model(
            config.student,
            data,
            kind=kind,
            adapter=str(adapter) if adapter else None,
            batch_size=eval_batch_size,
            max_new_tokens=max_new_tokens,
        )
        predictions.to_json(str(out / f"predictions-{name}.jsonl"))
        return results

    rows = [_row("base", 0, None, evaluate(None, "base"))]
    for budget in budgets:
        made = None
        for method in METHODS:  # embedsdg first: RandomSDG gets as many items as EmbedSDG made pairs
            name = f"{method}-{budget}"
            run_dir = out / name
            try:
                manifest = run_pipeline(arm_config(config, method, budget, made, run_dir))
            except RunFailedError as err:  # no row reached train.jsonl: a 0 in the table; a broken teacher stops
                if err.manifest is None or err.manifest["counts"].get("train") != 0:
                    raise
                manifest = err.manifest
            if method == "embedsdg":
                made = manifest["counts"]["pairs"]
            accepted = manifest["counts"].get("train", manifest["counts"]["accepted"])  # after the quality gates
            if accepted == 0:
                logger.warning("%s: no example passed the parser and the quality gates; nothing to train on.", name)
                rows.append(_row(method, budget, 0, None))
                continue
            adapter = run_dir / "sft"
            argv = [
                "--config",
                sft_config,
                "--model",
                config.student,
                "--dataset",
                str(RunDir(run_dir).train),
                "--output_dir",
                str(adapter),
                *(sft_overrides or []),
            ]
            if run_train(argv) != 0:
                raise RuntimeError(f"Fine-tuning {name} failed (see the log above).")
            rows.append(_row(method, budget, accepted, evaluate(adapter, name)))
            _write(rows, out, config, eval_data, eval_limit)  # a partial table survives an interrupted ablation
    _write(rows, out, config, eval_data, eval_limit)
    return rows


def arm_config(
    config: PipelineConfig, method: str, budget: int, embedsdg_pairs: int | None, run_dir: str | Path
) -> PipelineConfig:
    """The pipeline config of one arm: EmbedSDG asks for ``budget`` pairs; RandomSDG gets as many seeds as the
    EmbedSDG arm actually made pairs (``embedsdg_pairs``), so both arms train on the same number of examples.

    Example:
        >>> arm_config(PipelineConfig(), "random", 500, 480, "out/random-500").n_pairs
        480
    """
    n_items = budget
    if method == "random" and embedsdg_pairs is not None and embedsdg_pairs != budget:
        logger.warning(
            "The EmbedSDG arm made %d seed pairs for a budget of %d; RandomSDG gets the same %d seeds.",
            embedsdg_pairs,
            budget,
            embedsdg_pairs,
        )
        n_items = embedsdg_pairs
    return replace(config, n_pairs=n_items, method=method, output_dir=str(run_dir))


def _row(method: str, budget: int, accepted: int | None, results: dict | None) -> dict:
    row = {"method": method, "budget": budget, "accepted": accepted}
    if results is None:
        return {**row, "accuracy": None, "ci_low": None, "ci_high": None, "n": None, "n_no_answer": None}
    keys = ("accuracy", "ci_low", "ci_high", "n", "n_no_answer")
    return {**row, **{k: results[k] for k in keys}}


def _write(rows: list[dict], out: Path, config: PipelineConfig, eval_data: str, eval_limit: int | None) -> None:
    with open(out / "ablation.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "ablation.json").write_text(json.dumps({"config": config.to_dict(), "rows": rows}, indent=2))
    (out / "ablation.md").write_text(format_table(rows, student=config.student, eval_data=eval_data, limit=eval_limit))


def format_table(rows: list[dict], *, student: str, eval_data: str, limit: int | None) -> str:
    """Markdown: one row per (method, budget) plus the base model, accuracy with its 95% Wilson interval."""
    subset = f"first {limit}" if limit else "all"
    lines = [
        f"Student `{student}`, {eval_data} ({subset} rows), greedy.",
        "",
        "| model | budget | examples trained on | accuracy | 95% CI | no answer |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        label = "base (no fine-tuning)" if row["method"] == "base" else row["method"]
        budget = "" if row["method"] == "base" else row["budget"]
        trained = "" if row["method"] == "base" else row["accepted"]
        if row["accuracy"] is None:
            lines.append(f"| {label} | {budget} | {trained} | n/a | | |")
        else:
            ci = f"[{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
            lines.append(
                f"| {label} | {budget} | {trained} | {100 * row['accuracy']:.1f}% | {ci} | {row['n_no_answer']} |"
            )
    return "\n".join(lines) + "\n"
