"""The testbed's training half: a student weak where its data is thin, and EmbedSDG vs RandomSDG on fixing it.

Steps (each saved under ``<output_dir>/training/`` as soon as it is done; a rerun skips what is there):

1. **Data.** A pool of built-in word problems with one planted pattern of rare families (``pool.jsonl``, the
   student's training data D) and a balanced held-out test set (``test.jsonl``: ``test_per_family`` fresh instances
   of every family, another generator seed).
2. **SM.** The built-in student LoRA-fine-tuned on D (the paper's SM). Base and SM are scored on the test set:
   per-row answer loss (:mod:`embedsdg_hf.training.answer_loss`) and, on ``accuracy_per_family`` problems per
   family, greedy accuracy.
3. **Weakness vs density (§4.4).** Per family (pool share vs SM's mean answer loss / accuracy) and per region of a
   3-D PCA grid of the pool (:func:`~embedsdg_hf.analysis.density.density_vs_measure`), Pearson and Spearman with
   p-values, and the Fig. 7 scatter.
4. **Arms.** For every budget and seed, ``embedsdg run`` on D with ``method: embedsdg`` and ``method: random``
   and the family teacher (``family:<pool>``), through every quality gate; both arms are cut to the same number of
   training rows (the smaller of the two, at most the budget); SM's adapter is fine-tuned further on them with one
   recipe; the result is scored on the test set. Optionally one run per method with an LLM teacher.

The family teacher is an experimental control, not a data source (see its module): with it the arms differ only
in which seeds were chosen.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..common.rundir import read_json, replace_dir, write_json_atomic
from ..data.word_problems import PROBLEM_TYPES, make_word_problems
from ..run.rundir import RunDir
from .testbed import PATTERNS, make_testbed_pool

logger = logging.getLogger(__name__)

__all__ = ["StudentPlan", "run_student_testbed"]

METHODS = ("embedsdg", "random")


@dataclass(frozen=True)
class StudentPlan:
    """What the training half runs. The defaults took 85 min on 2 CPU cores (docs/results.md "Targeting testbed")."""

    pattern: str = "r4s2"  # the first pattern the k-NN selector was not tuned on
    n: int = 1000  # rows of D
    test_per_family: int = 10
    accuracy_per_family: int = 4
    budgets: tuple[int, ...] = (12, 24, 48)
    seeds: tuple[int, ...] = (0, 1, 2)
    oversample: float = 1.5  # requests per budget row, so the gates leave enough rows
    sm_epochs: float = 1.0
    arm_epochs: float = 2.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    lora_r: int = 16
    dtype: str = "bfloat16"
    model: str = "smollm2-135m-instruct"
    llm_teacher: str | None = "transformers:smollm2-135m-instruct"  # one row per method with an LLM (None: skip)
    llm_budget: int = 12
    max_new_tokens: int = 192
    pool_seed: int = 0
    test_seed: int = 1
    extra: dict = field(default_factory=dict)  # recorded, e.g. {"max_steps": 2} for a smoke run

    def __post_init__(self):
        names = [p.name for p in PATTERNS]
        if self.pattern not in names:
            raise ValueError(f"pattern must be one of {names}, got {self.pattern!r}.")
        if self.n < len(PROBLEM_TYPES) * 2:
            raise ValueError(f"n must be at least {len(PROBLEM_TYPES) * 2} (two rows per family), got {self.n}.")
        if self.test_per_family < 2 or not 0 <= self.accuracy_per_family <= self.test_per_family:
            raise ValueError("test_per_family must be >= 2 and accuracy_per_family within [0, test_per_family].")
        if not self.budgets or min(self.budgets) < 1 or not self.seeds:
            raise ValueError(f"budgets must be >= 1 and seeds non-empty, got {self.budgets} and {self.seeds}.")
        if self.oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {self.oversample}.")

    @property
    def rare(self) -> tuple[str, ...]:
        return next(p for p in PATTERNS if p.name == self.pattern).rare

    @property
    def rare_share(self) -> float:
        return next(p for p in PATTERNS if p.name == self.pattern).rare_share


class _Steps:
    """Progress lines with elapsed time, and the JSON result of every finished step (``steps/<name>.json``)."""

    def __init__(self, root: Path, progress: Callable[[str], None]):
        self.root, self.progress, self.started = root, progress, time.perf_counter()
        (root / "steps").mkdir(parents=True, exist_ok=True)

    def say(self, line: str) -> None:
        self.progress(f"[{time.perf_counter() - self.started:6.0f}s] {line}")

    def run(self, name: str, compute: Callable[[], dict]) -> dict:
        path = self.root / "steps" / f"{name}.json"
        if path.is_file():
            self.say(f"{name}: done before, reusing {path}")
            return read_json(path, what="testbed step result", fix="delete it to redo the step.")
        self.say(f"{name}: running")
        t0 = time.perf_counter()
        result = {**compute(), "seconds": round(time.perf_counter() - t0, 1)}
        write_json_atomic(path, result)
        self.say(f"{name}: done in {result['seconds']:.0f}s")
        return result


# ---------------------------------------------------------------------------------------------------------------------
# Data and fine-tuning
# ---------------------------------------------------------------------------------------------------------------------


def _write_data(plan: StudentPlan, root: Path) -> dict:
    from ..common.rundir import to_json_atomic

    pool = make_testbed_pool(plan.n, rare_families=plan.rare, rare_share=plan.rare_share, seed=plan.pool_seed)
    test = make_word_problems(plan.test_per_family * len(PROBLEM_TYPES), seed=plan.test_seed)
    seen = set(pool["question"])
    test = test.filter(lambda row: row["question"] not in seen)  # a fresh instance can repeat a pool row by chance
    to_json_atomic(pool, root / "pool.jsonl")
    to_json_atomic(test, root / "test.jsonl")
    counts = {f: pool["problem_type"].count(f) for f in PROBLEM_TYPES}
    return {"pool_rows": len(pool), "test_rows": len(test), "pool_counts": counts, "rare": list(plan.rare)}


def _load(root: Path, name: str):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(root / name), split="train")


def _messages(rows) -> object:
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "messages": [
                [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                for q, a in zip(rows["question"], rows["answer"])
            ]
        }
    )


def fine_tune(rows, target: Path, plan: StudentPlan, *, epochs: float, seed: int, adapter: Path | None = None) -> dict:
    """LoRA SFT of ``plan.model`` (or further training of ``adapter``) on ``rows`` (question, answer) into ``target``.

    The adapter is written to a temp folder and renamed into place when training is done.
    """
    from trl import ModelConfig, SFTConfig

    from ..training.train import build_trainer

    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    bf16 = plan.dtype == "bfloat16"
    args = SFTConfig(
        str(tmp),
        use_cpu=True,
        bf16=bf16,
        per_device_train_batch_size=plan.batch_size,
        num_train_epochs=epochs,
        learning_rate=plan.learning_rate,
        lr_scheduler_type="linear",
        max_length=512,
        save_strategy="no",
        report_to="none",
        logging_steps=10,
        seed=seed,
        disable_tqdm=True,
        # TRL turns gradient checkpointing on by default; a 135M student on a CPU has memory to spare, and without
        # it a step is 1.25x faster (8.3 vs 10.4 s/step, measured side by side on 2 cores, 2026-11-30).
        **{"gradient_checkpointing": False, **plan.extra.get("sft", {})},
    )
    model_args = ModelConfig(
        use_peft=True,
        lora_r=plan.lora_r,
        lora_alpha=2 * plan.lora_r,
        lora_dropout=0.05,
        lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        dtype=plan.dtype,
    )
    trainer = build_trainer(
        _messages(rows), model=plan.model, training_args=args, model_args=model_args, adapter=adapter
    )
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(str(tmp))
    replace_dir(tmp, target)
    steps = trainer.state.global_step
    return {
        "rows": len(rows),
        "steps": steps,
        "train_loss": round(float(result.training_loss), 4),
        "seconds_per_step": round(seconds / max(steps, 1), 2),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Scoring a student on the balanced test set
# ---------------------------------------------------------------------------------------------------------------------


def _accuracy_rows(test, per_family: int) -> list[int]:
    """The first ``per_family`` test rows of every family (the accuracy subset: generation is the slow part)."""
    taken: dict[str, int] = {}
    rows = []
    for i, family in enumerate(test["problem_type"]):
        if taken.get(family, 0) < per_family:
            taken[family] = taken.get(family, 0) + 1
            rows.append(i)
    return rows


def _mean_ci(values) -> dict:
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return {"n": 0, "mean": None, "ci_low": None, "ci_high": None}
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "ci_low": float(x.mean() - half),
        "ci_high": float(x.mean() + half),
    }


def _accuracy(correct) -> dict:
    from ..training.evaluate import wilson_interval

    correct = [bool(c) for c in correct]
    low, high = wilson_interval(sum(correct), len(correct)) if correct else (None, None)
    mean = sum(correct) / len(correct) if correct else None
    return {"n": len(correct), "correct": sum(correct), "mean": mean, "ci_low": low, "ci_high": high}


def score_student(plan: StudentPlan, root: Path, name: str, adapter: Path | None, *, accuracy: bool = True) -> dict:
    """Answer loss on every test row and accuracy on the accuracy subset; per-row scores to ``scores/<name>.jsonl``."""
    from ..common.rundir import to_json_atomic
    from ..training.answer_loss import add_answer_loss, answer_loss_by_group
    from ..training.evaluate import evaluate_model

    test = _load(root, "test.jsonl")
    scored = add_answer_loss(test, model=plan.model, adapter=adapter, batch_size=16)
    correct: list = [None] * len(test)
    if accuracy and plan.accuracy_per_family:
        rows = _accuracy_rows(test, plan.accuracy_per_family)
        predictions, _ = evaluate_model(
            plan.model, test.select(rows), kind="gsm8k", adapter=adapter, batch_size=32,
            max_new_tokens=plan.max_new_tokens,
        )  # fmt: skip
        for i, ok in zip(rows, predictions["correct"]):
            correct[i] = bool(ok)
    scored = scored.add_column("correct", correct)
    (root / "scores").mkdir(exist_ok=True)
    to_json_atomic(scored, root / "scores" / f"{name}.jsonl")
    families, losses = scored["problem_type"], scored["answer_loss"]
    rare = np.isin(families, plan.rare)
    scored_rows = [i for i, c in enumerate(correct) if c is not None]
    result = {
        "adapter": None if adapter is None else str(adapter),
        "loss": _mean_ci(losses),
        "loss_rare": _mean_ci(np.asarray(losses)[rare]),
        "loss_common": _mean_ci(np.asarray(losses)[~rare]),
        "loss_by_family": answer_loss_by_group(families, losses),
    }
    if scored_rows:
        result["accuracy"] = _accuracy([correct[i] for i in scored_rows])
        result["accuracy_rare"] = _accuracy([correct[i] for i in scored_rows if rare[i]])
        result["accuracy_by_family"] = {
            f: _accuracy([correct[i] for i in scored_rows if families[i] == f])["mean"] for f in sorted(set(families))
        }
    return result


# ---------------------------------------------------------------------------------------------------------------------
# §4.4 on this student: pool density vs weakness, per family and per region
# ---------------------------------------------------------------------------------------------------------------------


def _correlation(x, y) -> dict:
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"n": int(len(x)), "pearson_r": None, "pearson_p": None, "spearman_rho": None, "spearman_p": None}
    pearson, spearman = stats.pearsonr(x, y), stats.spearmanr(x, y)
    return {
        "n": int(len(x)),
        "pearson_r": float(pearson.statistic),
        "pearson_p": float(pearson.pvalue),
        "spearman_rho": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
    }


def weakness_vs_density(plan: StudentPlan, root: Path, name: str = "sm") -> dict:
    """Pool density vs the student's answer loss and accuracy: per family (17 points) and per 3-D PCA region."""
    from datasets import Dataset

    from ..analysis.density import density_vs_measure
    from ..plots import plot_density_accuracy

    pool, scored = _load(root, "pool.jsonl"), _load(root / "scores", f"{name}.jsonl")
    families = sorted(set(scored["problem_type"]))
    count = {f: pool["problem_type"].count(f) for f in families}
    loss = np.asarray(scored["answer_loss"], dtype=float)
    correct = np.array([np.nan if c is None else float(c) for c in scored["correct"]])
    labels = np.asarray(scored["problem_type"])
    result: dict = {"per_family": {}, "per_region": {}, "figures": {}}
    for measure, values in (("answer_loss", loss), ("accuracy", correct)):
        means = [float(np.nanmean(values[labels == f])) if (~np.isnan(values[labels == f])).any() else np.nan
                 for f in families]  # fmt: skip
        stats = _correlation([count[f] for f in families], means)
        result["per_family"][measure] = {**stats, "points": dict(zip(families, means))}
        shown = [i for i, m in enumerate(means) if not np.isnan(m)]
        points = Dataset.from_dict(
            {
                "pool_count": [count[families[i]] for i in shown],
                "n_scored": [int((~np.isnan(values[labels == families[i]])).sum()) for i in shown],
                measure: [means[i] for i in shown],
            }
        )
        figure = f"fig7-family-{measure}.png"
        plot_density_accuracy(
            points, {**stats, "measure": measure, "n_regions": len(shown), "excluded_regions": 0, "min_examples": 1},
            root / figure, points="families", labels=[families[i] for i in shown],
            title=f"{name}: pool density vs {measure.replace('_', ' ')} per family",
        )  # fmt: skip
        result["figures"][f"family-{measure}"] = figure
        column = "correct" if measure == "accuracy" else measure
        regions, region_stats = density_vs_measure(
            pool, scored, model=plan.model, measure_column=column, name=measure, n_components=3, bins=6,
            min_examples=3 if measure == "answer_loss" else 2, seed=plan.pool_seed,
        )  # fmt: skip
        result["per_region"][measure] = region_stats
        figure = f"fig7-region-{measure}.png"
        plot_density_accuracy(
            regions, region_stats, root / figure, title=f"{name}: pool density vs {measure.replace('_', ' ')} "
            "per region (3-D PCA, 6 bins)",
        )  # fmt: skip
        result["figures"][f"region-{measure}"] = figure
    return result


# ---------------------------------------------------------------------------------------------------------------------
# The arms: EmbedSDG vs RandomSDG data from the real pipeline, SM fine-tuned on equal numbers of rows
# ---------------------------------------------------------------------------------------------------------------------


def make_arm_data(plan: StudentPlan, root: Path, method: str, budget: int, seed: int, teacher: str) -> dict:
    """``embedsdg run`` on D for one arm (resumable run dir ``runs/<tag>``); its counts, gate drops and seeds."""
    from ..config import PipelineConfig
    from ..pipeline import RunFailedError, run_pipeline

    kind = "family" if teacher.startswith("family:") else "llm"
    run_dir = root / "runs" / f"{kind}-{method}-b{budget}-s{seed}"
    config = PipelineConfig(
        seed_pool=str(root / "pool.jsonl"),
        student=plan.model,
        method=method,
        n_pairs=math.ceil(budget * plan.oversample),
        seed=seed,
        teacher=teacher,
        decontaminate=str(root / "test.jsonl"),
        coverage=False,
        output_dir=str(run_dir),
        decode_cache=str(root / "decode-cache.jsonl"),  # a budget's pairs are the first of a larger budget's
    )
    try:
        manifest = run_pipeline(config)
    except RunFailedError as err:  # nothing passed the gates: an arm with 0 rows, reported as such
        manifest = err.manifest
    train = RunDir(run_dir).train
    rows = _load(run_dir, RunDir.TRAIN) if train.is_file() and train.stat().st_size else None
    pool_families = _load(root, "pool.jsonl")["problem_type"]
    rare_expect = []
    if rows is not None:
        for a, b in zip(rows["seed_a"], rows["seed_b"]):
            seeds = {pool_families[int(s)] for s in (a, b) if s is not None and int(s) >= 0}
            rare_expect.append(float(np.mean([f in plan.rare for f in seeds])) if seeds else np.nan)
    quality = manifest.get("quality", {})
    return {
        "run_dir": str(run_dir),
        "status": manifest.get("status"),
        "requests": config.n_pairs,
        "accepted": manifest.get("counts", {}).get("accepted"),
        "train_rows": 0 if rows is None else len(rows),
        "gate_drops": {gate: info["dropped"] for gate, info in quality.get("gates", {}).items()},
        "rare_seed_share": None if not rare_expect else float(np.nanmean(rare_expect)),
        "rare_seed_share_by_row": rare_expect,
    }


def train_arm(
    plan: StudentPlan, root: Path, tag: str, data: dict, n_rows: int, seed: int, *, accuracy: bool = True
) -> dict:
    """SM's adapter fine-tuned further on the first ``n_rows`` rows of an arm's ``train.jsonl``, then scored
    (accuracy too when ``accuracy``: generation is the slow part of scoring)."""
    if n_rows == 0:
        return {"rows": 0, "skipped": "no rows"}
    rows = _load(Path(data["run_dir"]), RunDir.TRAIN).select(range(n_rows))
    adapter = root / "adapters" / tag
    trained = fine_tune(rows, adapter, plan, epochs=plan.arm_epochs, seed=seed, adapter=root / "adapters" / "sm")
    shares = data["rare_seed_share_by_row"][:n_rows]
    scored = score_student(plan, root, tag, adapter, accuracy=accuracy)
    shutil.rmtree(adapter, ignore_errors=True)  # 18 adapters add up; the scores are what the report reads
    return {**trained, "rare_seed_share": float(np.nanmean(shares)) if shares else None, **scored}


def _arm_pair(plan: StudentPlan, root: Path, steps: _Steps, budget: int, seed: int, teacher: str, kind: str) -> dict:
    """Both methods' data for one (budget, seed), cut to equal rows, each used to fine-tune SM and scored."""
    data = {
        m: steps.run(
            f"data-{kind}-{m}-b{budget}-s{seed}", lambda m=m: make_arm_data(plan, root, m, budget, seed, teacher)
        )
        for m in METHODS
    }
    n_rows = min(budget, *(d["train_rows"] for d in data.values()))
    accuracy = kind != "family" or budget == max(plan.budgets)
    arms = {}
    for m in METHODS:
        tag = f"{kind}-{m}-b{budget}-s{seed}"
        arms[m] = steps.run(
            f"train-{tag}", lambda m=m, tag=tag: train_arm(plan, root, tag, data[m], n_rows, seed, accuracy=accuracy)
        )
        arms[m]["data"] = {k: v for k, v in data[m].items() if k != "rare_seed_share_by_row"}
    return {"budget": budget, "seed": seed, "teacher": teacher, "n_rows": n_rows, "arms": arms}


def run_student_testbed(
    output_dir: str | Path, plan: StudentPlan | None = None, *, progress: Callable[[str], None] | None = None
) -> dict:
    """Run (or resume) the training half into ``<output_dir>/training``; write ``training.{md,json}`` and figures.

    A rerun with the same plan skips every finished step; another plan in the same folder is refused.
    """
    plan = plan or StudentPlan()
    root = Path(output_dir) / "training"
    root.mkdir(parents=True, exist_ok=True)
    plan_file, wanted = root / "plan.json", json.loads(json.dumps(asdict(plan)))
    if plan_file.is_file():
        saved = read_json(plan_file, what="testbed plan", fix="delete the training folder to start again.")
        if saved != wanted:
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            raise FileExistsError(
                f"{root} holds a training testbed with another plan (differs in {changed}); rerun with the same "
                "settings to resume it, or choose another --output-dir."
            )
    write_json_atomic(plan_file, wanted)
    steps = _Steps(root, progress or logger.info)
    report: dict = {"plan": wanted, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    report["data"] = steps.run("data", lambda: _write_data(plan, root))
    report["base"] = steps.run("score-base", lambda: score_student(plan, root, "base", None))
    report["sm_training"] = steps.run(
        "sm",
        lambda: fine_tune(_load(root, "pool.jsonl"), root / "adapters" / "sm", plan, epochs=plan.sm_epochs, seed=0),
    )
    report["sm"] = steps.run("score-sm", lambda: score_student(plan, root, "sm", root / "adapters" / "sm"))
    report["density"] = steps.run("weakness-vs-density", lambda: weakness_vs_density(plan, root, "sm"))
    _write_report(root, report)
    report["arms"] = []
    teacher = f"family:{root / 'pool.jsonl'}"
    for seed in plan.seeds:
        for budget in plan.budgets:
            report["arms"].append(_arm_pair(plan, root, steps, budget, seed, teacher, "family"))
            _write_report(root, report)
    report["llm_arms"] = []
    if plan.llm_teacher:
        report["llm_arms"].append(
            _arm_pair(plan, root, steps, plan.llm_budget, plan.seeds[0], plan.llm_teacher, "llm")
        )
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    _write_report(root, report, final=True)
    return report


def _write_report(root: Path, report: dict, *, final: bool = False) -> None:
    from ..common.rundir import write_text_atomic
    from .student_report import render_training, summarize_arms

    report["summary"] = summarize_arms(report.get("arms", []), report.get("sm"))
    report["paired_by_problem"] = _paired_by_problem(root, report)
    if report.get("arms"):
        from .student_report import plot_arms

        report["figures"] = {**report.get("density", {}).get("figures", {}), "arms": plot_arms(report, root)}
    report["complete"] = final
    steps = [read_json(f, what="testbed step result", fix="") for f in (root / "steps").glob("*.json")]
    report["step_seconds"] = round(sum(step.get("seconds", 0) for step in steps), 1)
    write_json_atomic(root / "training.json", report)
    write_text_atomic(root / "training.md", render_training(report))


def _paired_by_problem(root: Path, report: dict) -> list[dict]:
    """Per budget: EmbedSDG - RandomSDG answer loss per test problem, averaged over the seeds, then a t interval over
    the problems (all, and the rare families'). Sharper than the interval over 3 seeds; it speaks for these test
    problems and this SM, the seeds' spread is in the main table."""
    rare = set(report.get("data", {}).get("rare", []))
    by_budget: dict[int, list[np.ndarray]] = {}
    families = None
    for pair in report.get("arms", []):
        tags = [f"family-{m}-b{pair['budget']}-s{pair['seed']}" for m in METHODS]
        files = [root / "scores" / f"{tag}.jsonl" for tag in tags]
        if not all(f.is_file() for f in files):
            continue
        emb, rnd = (_load(root / "scores", f.name) for f in files)
        families = emb["problem_type"]
        by_budget.setdefault(pair["budget"], []).append(
            np.asarray(emb["answer_loss"], dtype=float) - np.asarray(rnd["answer_loss"], dtype=float)
        )
    rows = []
    for budget, diffs in sorted(by_budget.items()):
        mean = np.mean(diffs, axis=0)
        is_rare = np.isin(families, list(rare))
        rows.append(
            {"budget": budget, "seeds": len(diffs), "all": _mean_ci(mean), "rare": _mean_ci(mean[is_rare]),
             "common": _mean_ci(mean[~is_rare])}
        )  # fmt: skip
    return rows
