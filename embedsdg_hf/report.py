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
        config = manifest.get("config", {})
        if config.get("selector") == "knn":
            what = f"{counts['regions']} sparse regions (k-NN, k={config.get('knn_k')}, {config.get('knn_text')} text)"
        else:
            below = counts.get("regions_below_T", counts["regions"])
            raised = counts["regions"] - below
            more = (
                f" + {raised} next-sparsest windows (T raised, {counts.get('pairs_past_T', 0)} pairs)"
                if raised
                else ""
            )
            what = f"{below} sparse regions (T={manifest['grid']['threshold']}){more}"
        inside = (
            ""  # true by construction for a k-NN neighbourhood's bounding box: not a measurement
            if config.get("selector") == "knn"
            else f", {counts['interp_in_region']}/{counts['pairs']} interpolations inside their region"
        )
        lines.append(f"{what}, {counts['pairs']} seed pairs{inside}.")
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
    for method, numbers in (manifest.get("coverage") or {}).items():
        share = numbers.get("landed_in_target_share")
        landed = (
            "" if share is None else f"{numbers['landed_in_target']}/{numbers['aimed_rows']} in their target region, "
        )
        targeted = numbers["targeted_regions"]
        if "regions_no_longer_sparse" in numbers:  # k-NN regions: balls in the selector's space (knn_coverage.py)
            k = numbers["k"]
            after = (
                f"{numbers['regions_gaining']}/{targeted} targeted k-NN regions gained rows, "
                f"{numbers['regions_no_longer_sparse']}/{targeted} are no longer sparse ({k}th-neighbour distance "
                f"now below tau = {numbers['threshold']:.4f}, the selection's cut-off)."
            )
        else:
            after = (
                f"{numbers['regions_reaching_threshold']}/{targeted} targeted regions now reach T; "
                f"normalised occupancy entropy {numbers['entropy_before_normalised']:.3f} -> "
                f"{numbers['entropy_after_normalised']:.3f}."
            )
        lines.append(
            f"coverage ({method}): {numbers['synthetic_points']} kept rows re-embedded; {landed}"
            f"{numbers['landed_in_targeted_regions']} in a targeted region; {after}"
        )
    return lines
