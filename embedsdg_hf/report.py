"""The end-of-run summary printed by ``embedsdg run``: steps, counts, rejects, quality gates, coverage."""

from __future__ import annotations

__all__ = ["format_quality", "format_summary"]


def format_summary(manifest: dict) -> str:
    """The end-of-run table: rows in/out and wall time per step, then counts, rejects by reason and tokens."""
    lines = ["| step | rows in | rows out | seconds |", "|---|---:|---:|---:|"]
    for row in manifest["steps"]:
        rows_in = "" if row["rows_in"] is None else row["rows_in"]
        rows_out = "" if row["rows_out"] is None else row["rows_out"]
        lines.append(f"| {row['step']} | {rows_in} | {rows_out} | {row['seconds']:.2f} |")
    lines.append(f"| **total** | | | {manifest['wall_seconds']:.2f} |")
    counts = manifest["counts"]
    lines.append("")
    if "regions" in counts:
        selection = manifest.get("selection") or {}  # the selector's line (quality/selectors.py: summarize)
        lines.append(selection.get("summary") or f"{counts['regions']} sparse regions, {counts['pairs']} seed pairs.")
    gen = manifest.get("generation")
    if gen:
        rejects = ", ".join(f"{k}: {v}" for k, v in sorted(gen["rejects_by_reason"].items())) or "none"
        rate = 100 * gen["accepted"] / max(gen["rows"], 1)
        lines.append(
            f"{gen['accepted']}/{gen['rows']} generated examples accepted ({rate:.0f}% parse rate); "
            f"rejects: {rejects}; {gen['from_cache']} from the request cache."
        )
        lines.append(f"teacher tokens: {gen['prompt_tokens']:,} prompt + {gen['completion_tokens']:,} completion.")
        if gen.get("attempts", gen["rows"]) > gen["rows"]:  # best-of-n asked again for rows that failed a gate
            lines.append(
                f"teacher requests: {gen['attempts']} for {gen['rows']} rows (best-of-n: failed rows asked again)."
            )
    lines += format_quality(manifest)
    return "\n".join(lines)


def format_quality(manifest: dict) -> list[str]:
    """Summary lines of the quality gates (drops by gate and reason, leaked rows) and of the coverage report."""
    lines = []
    quality = manifest.get("quality")
    if quality:
        lines.append("")
        lines.append(f"quality gates on the {quality['checked']} accepted rows:")
        for gate, numbers in quality["gates"].items():
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(numbers["reasons"].items())) or "none"
            lines.append(f"  {gate}: {numbers['dropped']} of {numbers['checked']} dropped ({reasons})")
        kept = quality["passed"]
        lines.append(f"  -> {kept} row(s) kept for training (train.jsonl); dropped rows in dropped.jsonl.")
        for row in quality.get("contaminated", [])[:10]:
            cosine = row["contamination_score"]
            cosine = "n/a" if cosine is None else f"{cosine:.3f}"
            lines.append(
                f"  leaked: row {row['row']} ~ {row['contaminated_with']} ({row['contamination_reason']}, "
                f"{row['contamination_ngrams']} shared n-grams, cosine {cosine}): "
                f"{row['question'][:80]!r}"
            )
    lines += (manifest.get("coverage_text") or {}).get("summary", [])  # CoverageReport.text(), per selector
    return lines
