"""Tables and figures of the testbed's training half (:mod:`.student_testbed`): ``training.md`` and ``arms.png``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_arms", "render_training", "summarize_arms"]

METRICS = ("loss", "loss_rare", "loss_common", "accuracy", "accuracy_rare")
PAPER = {"pearson_r": 0.813, "spearman_rho": 0.806}


def _over_seeds(values: Sequence[float]) -> dict | None:
    """Mean over seeds, its 95% t interval and the spread (min, max)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")
    mean = float(x.mean())
    return {"n": int(x.size), "mean": mean, "ci_low": mean - half, "ci_high": mean + half,
            "min": float(x.min()), "max": float(x.max())}  # fmt: skip


def _value(arm: dict, metric: str) -> float | None:
    entry = arm.get(metric)
    return None if not entry else entry.get("mean")


def summarize_arms(arms: list[dict], sm: dict | None = None) -> list[dict]:
    """Per (budget, method): every metric over seeds, the paired EmbedSDG - RandomSDG difference, rows and drops."""
    groups: dict[int, list[dict]] = {}
    for pair in arms:
        groups.setdefault(pair["budget"], []).append(pair)
    summary = []
    for budget in sorted(groups):
        pairs = groups[budget]
        for method in ("embedsdg", "random"):
            runs = [p["arms"][method] for p in pairs if method in p["arms"]]
            drops: dict[str, list[int]] = {}
            for run in runs:
                for gate, n in run.get("data", {}).get("gate_drops", {}).items():
                    drops.setdefault(gate, []).append(n)
            summary.append(
                {
                    "budget": budget,
                    "method": method,
                    "seeds": len(runs),
                    "rows": [run.get("rows", 0) for run in runs],
                    "rare_seed_share": _over_seeds([run.get("rare_seed_share") for run in runs]),
                    "gate_drops": {gate: float(np.mean(n)) for gate, n in drops.items()},
                    "train_rows_after_gates": [run.get("data", {}).get("train_rows") for run in runs],
                    **{metric: _over_seeds([_value(run, metric) for run in runs]) for metric in METRICS},
                }
            )
        diff = {}
        for metric in METRICS:
            deltas = [
                _value(p["arms"]["embedsdg"], metric) - _value(p["arms"]["random"], metric)
                for p in pairs
                if _value(p["arms"].get("embedsdg", {}), metric) is not None
                and _value(p["arms"].get("random", {}), metric) is not None
            ]
            diff[metric] = _over_seeds(deltas)
        summary.append({"budget": budget, "method": "embedsdg - random", "seeds": len(pairs), **diff})
    return summary


def _fmt(entry: dict | None, digits: int = 3, pct: bool = False, clip: bool = False) -> str:
    if not entry or entry.get("mean") is None:
        return "-"
    scale, unit = (100, "%") if pct else (1, "")
    mean = f"{entry['mean'] * scale:.{digits}f}{unit}"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if low is None or high is None or low != low:
        return mean
    if clip:  # a t interval over seeds of a share (not of a difference): clip it to [0, 1]
        low, high = max(low, 0.0), min(high, 1.0)
    return f"{mean} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


def _spread(entry: dict | None) -> str:
    if not entry or "min" not in entry:
        return "-"
    return f"{entry['min']:.3f}..{entry['max']:.3f}"


def _share(entry: dict | None, pool_share: float) -> str:
    """A rare-family share of seeds (interval clipped to [0, 1]) and its lift over the pool's share."""
    if not entry:
        return "-"
    low, high = max(entry["ci_low"], 0.0), min(entry["ci_high"], 1.0)
    interval = "" if low != low else f" [{low:.2f}, {high:.2f}]"
    lift = f" (lift {entry['mean'] / pool_share:.1f})" if pool_share else ""
    return f"{entry['mean']:.2f}{interval}{lift}"


def _corr(stats: dict | None) -> str:
    if not stats or stats.get("pearson_r") is None:
        return "undefined (too few points)"
    return (
        f"{stats['pearson_r']:+.3f} (p={stats['pearson_p']:.2g}) | {stats['spearman_rho']:+.3f} "
        f"(p={stats['spearman_p']:.2g}) | {stats.get('n', stats.get('n_regions'))}"
    )


def _student_section(report: dict) -> list[str]:
    base, sm, plan = report.get("base"), report.get("sm"), report["plan"]
    data = report.get("data", {})
    lines = [
        "## 1. The student SM: weak where its data is thin?",
        "",
        f"D = {data.get('pool_rows')} built-in word problems, pattern `{plan['pattern']}`: rare families "
        f"{', '.join(data.get('rare', []))} ({plan['n']} rows, each rare family at "
        f"{min(data.get('pool_counts', {}).get(f, 0) for f in data.get('rare', [''])) if data.get('rare') else '?'}"
        f" rows). Test set: {data.get('test_rows')} fresh problems, {plan['test_per_family']} per family "
        f"(accuracy on the first {plan['accuracy_per_family']} of each family). SM = LoRA r={plan['lora_r']} on D, "
        f"{plan['sm_epochs']:g} epoch, {plan['dtype']}"
        + (
            f" ({report['sm_training']['steps']} steps, {report['sm_training']['seconds_per_step']} s/step)."
            if report.get("sm_training")
            else "."
        ),  # fmt: skip
        "",
        "Answer loss = mean token NLL of the reference solution given the question (lower is better); "
        "95% t intervals over test problems; accuracy with Wilson intervals.",
        "",
        "| student | loss (all) | loss (rare) | loss (common) | accuracy (all) | accuracy (rare) |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in (("base", base), ("SM", sm)):
        if entry:
            lines.append(
                f"| {name} | {_fmt(entry['loss'])} | {_fmt(entry['loss_rare'])} | {_fmt(entry['loss_common'])} | "
                f"{_fmt(entry.get('accuracy'), 1, True)} | {_fmt(entry.get('accuracy_rare'), 1, True)} |"
            )
    if sm:
        counts, rare = data.get("pool_counts", {}), set(data.get("rare", []))
        order = sorted(sm["loss_by_family"], key=lambda f: -sm["loss_by_family"][f]["mean"])
        lines += ["", "Per family, worst SM answer loss first:", "",
                  "| family | rows in D | base loss | SM loss | SM accuracy |", "|---|---|---|---|---|"]  # fmt: skip
        for f in order:
            acc = sm.get("accuracy_by_family", {}).get(f)
            lines.append(
                f"| {f}{' (rare)' if f in rare else ''} | {counts.get(f, '?')} | "
                f"{base['loss_by_family'][f]['mean']:.3f} | {sm['loss_by_family'][f]['mean']:.3f} | "
                f"{'-' if acc is None else f'{acc:.0%}'} |"
            )
    return lines + [""]


def _density_section(report: dict) -> list[str]:
    density = report.get("density")
    if not density:
        return []
    lines = [
        "## 2. Pool density vs SM's weakness (paper §4.4, Fig. 7)",
        "",
        "Density = pool rows of the family, or of the 3-D PCA grid window (6 bins per axis). A student that is "
        "weak where data is thin shows a *negative* correlation with answer loss and a positive one with accuracy "
        f"(the paper: density vs accuracy, Pearson {PAPER['pearson_r']}, Spearman {PAPER['spearman_rho']}, on "
        "GSM8K with its own models).",
        "",
        "| points | measure | Pearson r (p) | Spearman rho (p) | points |",
        "|---|---|---|---|---|",
    ]
    for level, key in (("families", "per_family"), ("regions", "per_region")):
        for measure in ("answer_loss", "accuracy"):
            lines.append(f"| {level} | {measure.replace('_', ' ')} | {_corr(density[key].get(measure))} |")
    lines += ["", "Figures: " + ", ".join(f"`{name}`" for name in density.get("figures", {}).values()), ""]
    return lines


def _arms_section(report: dict) -> list[str]:
    summary = report.get("summary") or []
    if not summary:
        return []
    plan = report["plan"]
    lines = [
        "## 3. EmbedSDG vs RandomSDG with the family teacher",
        "",
        f"`embedsdg run` on D per arm (default settings, `n_pairs` = {plan['oversample']:g} x budget, every quality "
        "gate, the test set as the decontamination set), the family teacher (`family:<D>`: a fresh, correct problem "
        "of a seed's family; an experimental control so the arms differ only in their seeds). Both arms of a "
        "(budget, seed) are cut to the same rows (the smaller arm, at most the budget); SM's adapter is trained "
        f"{plan['arm_epochs']:g} epochs on them (lr {plan['learning_rate']:g}, batch {plan['batch_size']}). "
        "Means over seeds with 95% t intervals (3 seeds: t = 4.30, wide) and the spread; "
        "'embedsdg - random' is the paired difference per seed (negative loss = EmbedSDG better).",
        "",
        "| budget | method | rows | rare share of seeds (lift) | loss (all) | loss (rare) | loss (common) | "
        "rare loss spread | accuracy (all) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    data = report.get("data", {})
    pool_rare = sum(data.get("pool_counts", {}).get(f, 0) for f in data.get("rare", [])) / max(
        data.get("pool_rows") or 1, 1
    )
    for s in summary:
        rows = "/".join(str(n) for n in s.get("rows", [])) or "-"
        share = _share(s.get("rare_seed_share"), pool_rare)
        lines.append(
            f"| {s['budget']} | {s['method']} | {rows} | {share} | {_fmt(s['loss'])} | {_fmt(s['loss_rare'])} | "
            f"{_fmt(s['loss_common'])} | {_spread(s['loss_rare'])} | "
            f"{_fmt(s.get('accuracy'), 1, True, clip=s['method'] != 'embedsdg - random')} |"
        )
    sm = report.get("sm")
    if sm:
        lines.append(f"| - | SM (before) | - | - | {_fmt(sm['loss'])} | {_fmt(sm['loss_rare'])} | "
                     f"{_fmt(sm['loss_common'])} | - | {_fmt(sm.get('accuracy'), 1, True)} |")  # fmt: skip
    paired = report.get("paired_by_problem") or []
    if paired:
        lines += [
            "",
            "Paired per test problem (EmbedSDG - RandomSDG answer loss of the same problem, averaged over the seeds; "
            "95% t interval over the problems: it speaks for this SM and these test problems):",
            "",
            "| budget | seeds | all families | rare families | common families |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['budget']} | {p['seeds']} | {_fmt(p['all'])} | {_fmt(p['rare'])} | {_fmt(p['common'])} |"
            for p in paired
        ]
    lines += [
        "",
        "Quality-gate drops per arm (mean rows dropped per run, and rows left of the requests):",
        "",
        "| budget | method | requests | drops by gate | rows after gates |",
        "|---|---|---|---|---|",
    ]
    for s in summary:
        if "gate_drops" in s:
            drops = ", ".join(f"{g} {n:.1f}" for g, n in s["gate_drops"].items() if n) or "none"
            left = "/".join(str(n) for n in s["train_rows_after_gates"])
            lines.append(f"| {s['budget']} | {s['method']} | {math.ceil(s['budget'] * plan['oversample'])} | "
                         f"{drops} | {left} |")  # fmt: skip
    return lines + [""]


def _llm_section(report: dict) -> list[str]:
    pairs = report.get("llm_arms") or []
    if not pairs:
        return []
    lines = [
        "## 4. One row per method with an LLM teacher (the real pipeline)",
        "",
        "| teacher | budget | method | rows trained | rows after gates | drops by gate | loss (all) | loss (rare) | "
        "accuracy (all) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pair in pairs:
        for method, arm in pair["arms"].items():
            data = arm.get("data", {})
            drops = ", ".join(f"{g} {n}" for g, n in data.get("gate_drops", {}).items() if n) or "none"
            lines.append(
                f"| `{pair['teacher']}` | {pair['budget']} | {method} | {pair['n_rows']} | {data.get('train_rows')} | "
                f"{drops} | {_fmt(arm.get('loss'))} | {_fmt(arm.get('loss_rare'))} | "
                f"{_fmt(arm.get('accuracy'), 1, True)} |"
            )
    return lines + [""]


def render_training(report: dict) -> str:
    """The Markdown of the training half (whatever steps have finished)."""
    lines = ["# Targeting testbed: the training half", ""]
    if not report.get("complete"):
        lines += ["*In progress: the tables below hold the steps finished so far.*", ""]
    lines += _student_section(report) + _density_section(report) + _arms_section(report) + _llm_section(report)
    if report.get("figures", {}).get("arms"):
        lines += [f"Figure: `{report['figures']['arms']}` (answer loss by budget, both arms).", ""]
    if report.get("step_seconds"):
        lines.append(
            f"Time: {report['step_seconds'] / 60:.1f} min of measured step time in all (every step, also those reused "
            f"by a resumed run); this invocation {report.get('wall_seconds', 0) / 60:.1f} min."
        )
    return "\n".join(lines) + "\n"


def plot_arms(report: dict, root: Path) -> str:
    """``arms.png``: rare-family and overall answer loss by budget, EmbedSDG vs RandomSDG (mean and 95% CI)."""
    from ..plots import plot_lines_with_ci

    summary = [s for s in report["summary"] if s["method"] in ("embedsdg", "random")]
    styles = {"embedsdg": ("#C44E52", "EmbedSDG"), "random": ("#4C72B0", "RandomSDG")}
    series = {}
    for method, (colour, label) in styles.items():
        for metric, line in (("loss_rare", "-"), ("loss", ":")):
            points = [(s["budget"], s[metric]) for s in summary if s["method"] == method and s[metric]]
            if points:
                series[f"{label}, {'rare families' if metric == 'loss_rare' else 'all families'}"] = {
                    "x": [b for b, _ in points], "y": [e["mean"] for _, e in points],
                    "low": [e["ci_low"] for _, e in points], "high": [e["ci_high"] for _, e in points],
                    "colour": colour, "style": line,
                }  # fmt: skip
    sm = report.get("sm")
    reference = {"SM before, rare": sm["loss_rare"]["mean"], "SM before, all": sm["loss"]["mean"]} if sm else None
    plot_lines_with_ci(
        series, root / "arms.png", xlabel="budget (new training examples per arm)",
        ylabel="held-out answer loss (lower is better)", reference=reference,
        title="EmbedSDG vs RandomSDG (family teacher): mean over seeds, 95% CI",
    )  # fmt: skip
    return "arms.png"
