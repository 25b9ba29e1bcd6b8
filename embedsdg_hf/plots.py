"""The run's figures (PNG): window-density histogram with T (paper Fig. 2), the embedding map with sparse regions,
seed pairs and interpolations (Figs. 3 and 5), density vs accuracy (Fig. 7) and the coverage maps before / after the
synthetic rows (grid windows, or k-NN region centres)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _figure(width: float = 7.0, height: float = 5.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height), dpi=120)


def plot_density_histogram(
    window_counts: np.ndarray,
    threshold: int,
    path: str | Path,
    *,
    removed_by_neighbors: int | None = None,
    threshold_rule: str | None = None,
    title: str | None = None,
):
    """Histogram of non-empty window counts with the sparse threshold T marked (paper Fig. 2).

    Args:
        window_counts: every window's point count (``count_windows``); empty windows are counted, not drawn.
        threshold: T; windows with ``1 <= count < T`` are the candidates (shaded).
        removed_by_neighbors: how many candidates the neighbour rule removed (``summarize_windows``), for the legend.
        threshold_rule: how T was chosen (``grid.threshold_rule``), for the legend.

    Example:
        >>> summary = summarize_windows(ds, grid)  # doctest: +SKIP
        >>> plot_density_histogram(count_windows(ds, grid), grid.threshold, "density.png",
        ...                        removed_by_neighbors=summary["removed_by_neighbor_rule"])  # doctest: +SKIP
    """
    counts = np.asarray(window_counts).ravel()
    nonempty = counts[counts > 0]
    plt, fig, ax = _figure()
    top = int(nonempty.max()) if len(nonempty) else 1
    width = max(1, -(-top // 150))  # integer-aligned bins: one per count up to 150 distinct values
    bins = np.arange(0.5, top + width + 0.5, width)
    ax.hist(nonempty, bins=bins, color="#4C72B0", edgecolor="white", linewidth=0.4, label="non-empty windows")
    rule = f", {threshold_rule}" if threshold_rule else ""
    ax.axvline(threshold - 0.5, color="#C44E52", linestyle="--", linewidth=1.5, label=f"T = {threshold}{rule}")
    n_sparse = int(((counts >= 1) & (counts < threshold)).sum())
    label = f"candidates: 1 <= count < T ({n_sparse} windows)"
    if removed_by_neighbors is not None:
        label += f"\n{removed_by_neighbors} removed by the neighbour rule (too few populated windows around),"
        label += f"\n{n_sparse - removed_by_neighbors} sparse regions"
    ax.axvspan(0.5, threshold - 0.5, color="#C44E52", alpha=0.12, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("points in window")
    ax.set_ylabel("number of windows")
    empty = int((counts == 0).sum())
    ax.set_title(title or f"Window density ({len(nonempty)} non-empty windows; {empty} empty, not shown)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_embedding_map(
    coords: np.ndarray,
    path: str | Path,
    *,
    regions=None,
    pairs=None,
    max_regions: int = 400,
    axis_labels: Sequence[str] | None = None,
    title: str | None = None,
    region_label: str = "sparse regions (count < T)",
):
    """2-D map of the pool (first two axes) with sparse regions boxed; seed pairs joined and interpolations marked.

    Regions that gave seed pairs are solid boxes (red below T, purple for windows reached by raising T); regions
    that got no pair are dashed grey boxes.

    Args:
        coords: (n, K) pool coordinates.
        regions: the ``find_sparse_regions`` dataset (``lower``, ``upper``, optionally ``level``); at most
            ``max_regions`` are boxed, sparsest first.
        pairs: the ``make_seed_pairs`` dataset (``coords_a``, ``coords_b``, ``region_id``), optionally with
            ``interp_coords`` and ``interp_in_region``.
        axis_labels: names of the axes (e.g. ``"PCA 1 (12.3% of variance)"``); default "axis 1", "axis 2".
        region_label: what a box is, for the legend (the k-NN selector's boxes bound sparse neighbourhoods).
    """
    coords = np.asarray(coords, dtype=np.float32)
    plt, fig, ax = _figure(7.5, 6.5)
    ax.scatter(
        coords[:, 0], coords[:, 1], s=3, c="#8C8C8C", alpha=0.45, linewidths=0, label=f"seed pool ({len(coords)})"
    )
    if regions is not None and len(regions):
        shown = regions.select(range(min(max_regions, len(regions))))
        kinds = region_kinds(shown, pairs)
        styles = {
            "below": {"ec": "#C44E52", "lw": 1.1},
            "raised": {"ec": "#8172B3", "lw": 1.1},
            "unused": {"ec": "#7F7F7F", "lw": 0.8, "ls": "--"},
        }
        tally = {kind: kinds.count(kind) for kind in styles}
        for lower, upper, kind in zip(shown["lower"], shown["upper"], kinds):
            ax.add_patch(_box(lower, upper, **styles[kind]))
        labels = {
            "below": f"{region_label} with pairs" if pairs is not None else region_label,
            "raised": "next-sparsest windows (T raised) with pairs",
            "unused": "regions that got no pair",
        }
        for kind, n in tally.items():
            if n:
                style = {k: v for k, v in styles[kind].items() if k != "ec"}
                ax.plot([], [], color=styles[kind]["ec"], **style, label=f"{labels[kind]} ({n})")
        if len(shown) < len(regions):
            ax.plot([], [], ls="", label=f"(boxed: the {len(shown)} sparsest of {len(regions)} regions)")
    if pairs is not None and len(pairs):
        a = np.asarray(pairs["coords_a"], dtype=np.float32)
        b = np.asarray(pairs["coords_b"], dtype=np.float32)
        for pa, pb in zip(a, b):
            ax.plot([pa[0], pb[0]], [pa[1], pb[1]], color="#4C72B0", lw=0.8, alpha=0.8)
        ax.scatter(np.r_[a[:, 0], b[:, 0]], np.r_[a[:, 1], b[:, 1]], s=14, c="#4C72B0", label=f"seed pairs ({len(a)})")
        if "interp_coords" in pairs.column_names:
            mid = np.asarray(pairs["interp_coords"], dtype=np.float32)
            label = "interpolations"
            if "interp_in_region" in pairs.column_names:
                label += f" ({int(np.sum(pairs['interp_in_region']))} of {len(mid)} in their region)"
            ax.scatter(mid[:, 0], mid[:, 1], s=40, marker="*", c="#DD8452", label=label, zorder=3)
    if coords.shape[1] > 2:
        ax.set_title(
            title or f"Embedding map (axes 1-2 of {coords.shape[1]}; regions are boxes in {coords.shape[1]}-D)"
        )
    else:
        ax.set_title(title or "Embedding map")
    x_label, y_label = _axis_names(axis_labels)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_sparsity_histogram(
    score: np.ndarray,
    path: str | Path,
    *,
    chosen: Sequence[int] = (),
    k: int | None = None,
    title: str | None = None,
    cutoff: bool = True,
):
    """Histogram of every pool point's sparsity score (the k-NN selector's distance to the ``k``-th nearest
    neighbour), with the cut-off (the smallest score among the chosen centres) and the chosen centres marked.

    Args:
        score: (n,) every pool point's score; larger is sparser.
        chosen: pool rows of the chosen region centres.
        k: the selector's k, for the labels.
        cutoff: mark the cut-off; False when the centres were not chosen as the sparsest by ``score`` (the
            ``rarity`` selector's small-group rule picks rows that are *near* at a small k).

    Example:
        >>> import numpy as np, tempfile, os
        >>> out = os.path.join(tempfile.mkdtemp(), "sparsity.png")
        >>> plot_sparsity_histogram(np.linspace(0, 1, 200), out, chosen=[199, 198], k=20).name
        'sparsity.png'
    """
    score = np.asarray(score, dtype=np.float64).ravel()
    chosen = np.asarray(list(chosen), dtype=np.int64)
    kth = f"{k}th" if k is not None else "k-th"
    plt, fig, ax = _figure()
    bins = np.histogram_bin_edges(score, bins=min(80, max(10, len(score) // 25)))
    ax.hist(score, bins=bins, color="#4C72B0", edgecolor="white", linewidth=0.4, label=f"pool points ({len(score):,})")
    if len(chosen):
        picked = score[chosen]
        ax.hist(picked, bins=bins, color="#C44E52", edgecolor="white", linewidth=0.4,
                label=f"chosen region centres ({len(chosen)})")  # fmt: skip
    if len(chosen) and cutoff:
        cut = float(picked.min())
        ax.axvline(cut, color="#C44E52", linestyle="--", linewidth=1.5, label=f"cut-off = {cut:.4f}")
        ax.axvspan(cut, bins[-1], color="#C44E52", alpha=0.08)
        above = int((score >= cut).sum())
        ax.plot([], [], ls="", label=f"{above} pool points at or above the cut-off")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    def count(value, _):  # 1, 2, 5, 10, 20, 50, ...: plain numbers, and few enough not to overlap
        mantissa = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
        return f"{value:g}" if round(mantissa) in (1, 2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""

    ax.yaxis.set_major_formatter(FuncFormatter(count))
    ax.yaxis.set_minor_formatter(FuncFormatter(count))
    ax.set_xlabel(f"sparsity: distance to the {kth} nearest pool neighbour (density space)")
    ax.set_ylabel("pool points (log scale)")
    ax.set_title(title or "k-NN sparsity of the seed pool (the selector takes the sparsest first)")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.95)  # the sparse end (right) stays visible
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_knn_map(
    coords: np.ndarray,
    score: np.ndarray,
    path: str | Path,
    *,
    regions=None,
    pairs=None,
    axis_labels: Sequence[str] | None = None,
    k: int | None = None,
    max_lines: int = 40,
    title: str | None = None,
):
    """2-D map of the pool coloured by k-NN sparsity, with the chosen regions: each centre a diamond, its
    neighbourhood (``members``) joined to it by thin lines, each seed pair joined by a line.

    A k-NN region lives in the density space (many dimensions): on the map its members can sit far apart, so they
    are drawn as lines from the centre, not as a box. Lines are drawn for the ``max_lines`` sparsest regions and
    pairs only, and markers shrink as regions grow in number, so 24 and 500 regions both stay readable.

    Args:
        coords: (n, K) pool map coordinates (the first two axes are drawn).
        score: (n,) every pool point's sparsity score (larger: sparser).
        regions: the selector's regions (``centre``, ``members``); pairs: its seed pairs (``coords_a``, ``coords_b``).

    Example:
        >>> import numpy as np, tempfile, os
        >>> rng = np.random.default_rng(0)
        >>> out = os.path.join(tempfile.mkdtemp(), "map.png")
        >>> plot_knn_map(rng.normal(size=(300, 2)), rng.random(300), out, k=20).name
        'map.png'
    """
    coords = np.asarray(coords, dtype=np.float32)
    score = np.asarray(score, dtype=np.float64).ravel()
    from matplotlib.collections import LineCollection

    plt, fig, ax = _figure(8.0, 7.0)
    order = np.argsort(score)  # the sparsest drawn last, on top
    dots = ax.scatter(coords[order, 0], coords[order, 1], s=6, c=score[order], cmap="viridis", alpha=0.55,
                      linewidths=0)  # fmt: skip
    bar = fig.colorbar(dots, ax=ax, fraction=0.04, pad=0.01)
    bar.set_label(f"sparsity ({k}th-neighbour distance; yellow: sparse)" if k else "sparsity (yellow: sparse)")
    handles = [_key("o", "#35608D", f"seed pool ({len(coords):,}), coloured by sparsity", ms=4)]
    n_regions = 0 if regions is None else len(regions)
    scale = 1.0 if n_regions <= 40 else max(0.3, (40 / n_regions) ** 0.5)  # 500 regions: a third of the size
    if n_regions:
        centres = np.asarray(regions["centre"], dtype=np.int64)
        members = regions["members"] if "members" in regions.column_names else [[c] for c in centres]
        # lines only for the sparsest max_lines regions / pairs: 500 neighbourhoods drawn as lines are a hairball
        segments = [[coords[c, :2], coords[m, :2]] for c, ms in zip(centres[:max_lines], members) for m in ms[1:]]
        ax.add_collection(LineCollection(segments, colors="#C44E52", linewidths=0.6, alpha=0.45))
        ax.scatter(coords[centres, 0], coords[centres, 1], s=60 * scale, marker="D", c="#C44E52",
                   edgecolors="white", linewidths=0.5 * scale, zorder=4)  # fmt: skip
        handles.append(_key("D", "#C44E52", f"chosen region centres ({n_regions})", mec="white"))
        spokes = "" if n_regions <= max_lines else f" (the {max_lines} sparsest)"
        handles.append(_key("_", "#C44E52", f"thin lines: centre to its neighbours in the density space{spokes}"))
    if pairs is not None and len(pairs):
        a = np.asarray(pairs["coords_a"], dtype=np.float32)
        b = np.asarray(pairs["coords_b"], dtype=np.float32)
        joined = np.stack([a[:max_lines, :2], b[:max_lines, :2]], axis=1)
        ax.add_collection(LineCollection(joined, colors="#1F3A5F", linewidths=1.0, alpha=0.85, zorder=5))
        ax.scatter(np.r_[a[:, 0], b[:, 0]], np.r_[a[:, 1], b[:, 1]], s=12 * scale, c="#1F3A5F", zorder=6)
        which = "" if len(a) <= max_lines else f"; the {max_lines} sparsest joined"
        handles.append(_key("o", "#1F3A5F", f"seed pairs ({len(a)}{which})", ms=4))
        if "interp_coords" in pairs.column_names:
            mid = np.asarray(pairs["interp_coords"], dtype=np.float32)[:max_lines]  # with the joined pairs
            ax.scatter(mid[:, 0], mid[:, 1], s=60, marker="*", c="#DD8452", edgecolors="black",
                       linewidths=0.4, zorder=7)  # fmt: skip
            handles.append(_key("*", "#DD8452", f"interpolations of the joined pairs ({len(mid)})", ms=8, mec="black"))
    handles.append(_key("", "white", "sparsity is measured in the density space, not on this map", ms=0))
    dims = coords.shape[1]
    suffix = f" (axes 1-2 of {dims})" if dims > 2 else ""
    ax.set_title((title or f"Where the k-NN selector took its {n_regions} regions") + suffix)
    x_label, y_label = _axis_names(axis_labels)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # the legend below the axes is part of the figure
    plt.close(fig)
    return Path(path)


def _axis_names(axis_labels: Sequence[str] | None) -> tuple[str, str]:
    """The x and y labels of a map: the first two of ``axis_labels`` (e.g. ``Reducer.axis_labels()``), else
    "axis 1", "axis 2"."""
    return tuple((list(axis_labels or []) + ["axis 1", "axis 2"])[:2])


def region_kinds(regions, pairs=None) -> list[str]:
    """How the map draws each region: ``"below"`` (count < T), ``"raised"`` (reached by raising T, ``level`` > 0)
    or, when ``pairs`` are given, ``"unused"`` (no pair came from it).

    Example:
        >>> from datasets import Dataset
        >>> regions = Dataset.from_dict({"region_id": [0, 1, 2], "level": [0, 1, 0]})
        >>> region_kinds(regions, {"region_id": [0, 0, 1]})
        ['below', 'raised', 'unused']
    """
    used = set(pairs["region_id"]) if pairs is not None else set()
    levels = regions["level"] if "level" in regions.column_names else [0] * len(regions)
    return [
        "unused" if pairs is not None and region_id not in used else ("raised" if level else "below")
        for region_id, level in zip(regions["region_id"], levels)
    ]


def plot_density_accuracy(
    regions,
    stats: dict,
    path: str | Path,
    *,
    title: str | None = None,
    points: str = "regions",
    labels: Sequence[str] | None = None,
):
    """Region pool count vs the student's accuracy there, with a least-squares fit (paper Fig. 7).

    The y value is the regions' ``stats["measure"]`` column (``accuracy`` unless the stats come from
    ``density_vs_measure``, e.g. ``mean_answer_loss``). ``points`` names what a point is (regions, families);
    ``labels`` writes a name next to each point.

    Example:
        >>> regions, stats = density_vs_accuracy(pool, predictions, model=spec)  # doctest: +SKIP
        >>> plot_density_accuracy(regions, stats, "density_accuracy.png")  # doctest: +SKIP
    """
    measure = stats.get("measure", "accuracy")
    x = np.asarray(regions["pool_count"], dtype=np.float64)
    y = np.asarray(regions[measure], dtype=np.float64)
    sizes = 10 + 4 * np.asarray(regions["n_scored"], dtype=np.float64)
    plt, fig, ax = _figure()
    ax.scatter(
        x, y, s=sizes, c="#4C72B0", alpha=0.7, edgecolors="white", linewidths=0.5, label=f"{points} (size: n scored)"
    )
    for label, xi, yi in zip(labels or [], x, y):
        ax.annotate(label, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points", color="#333333")
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        grid = np.linspace(x.min(), x.max(), 50)
        ax.plot(grid, slope * grid + intercept, color="#C44E52", lw=1.5, label="least-squares fit")
    if stats.get("pearson_r") is not None:
        text = (
            f"Pearson r = {stats['pearson_r']:.2f} (p = {stats['pearson_p']:.2g})\n"
            f"Spearman rho = {stats['spearman_rho']:.2f} (p = {stats['spearman_p']:.2g})"
        )
    else:
        text = "correlation undefined (too few regions)"
    text += f"; {stats['n_regions']} {points}, {stats['excluded_regions']} excluded (< {stats['min_examples']} scored)"
    fig.text(0.5, 0.01, text.replace("\n", "; "), ha="center", va="bottom", fontsize=9)  # a caption: never on a point
    what = {"families": "family", "regions": "region"}.get(points, points)
    ax.set_xlabel(f"pool examples in {what} (density)")
    ax.set_ylabel(f"student {measure.replace('_', ' ')} in {what}")
    if measure == "accuracy":
        ax.set_ylim(-0.05, 1.05)
    ax.set_title(title or f"Density vs {measure.replace('_', ' ')}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _box(lower: Sequence[float], upper: Sequence[float], **style):
    """An unfilled rectangle over the first two axes of a box."""
    from matplotlib.patches import Rectangle

    return Rectangle((lower[0], lower[1]), upper[0] - lower[0], upper[1] - lower[1], fill=False, **style)


def _key(marker: str, colour: str, label: str, **style):
    """A legend entry for a marker (no line)."""
    from matplotlib.lines import Line2D

    style = {"ms": 8, "mec": colour, **style}
    return Line2D([], [], ls="", marker=marker, color=colour, label=label, **style)


_METHOD_STYLES = (("#DD8452", "*", 90), ("#4C72B0", "o", 40), ("#8172B3", "^", 45), ("#937860", "s", 35))


def plot_coverage(
    pool_coords: np.ndarray,
    synthetic_coords: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    boxes: Sequence[tuple[Sequence[float], Sequence[float]]] = (),
    landed: Mapping[str, np.ndarray] | None = None,
    reached: Mapping[str, Sequence[bool]] | None = None,
    threshold: int | None = None,
    bounds: tuple[Sequence[float], Sequence[float]] | None = None,
    axis_labels: Sequence[str] | None = None,
    title: str | None = None,
):
    """The map before and after the synthetic rows: one panel for the pool alone, then one per method.

    Every panel shows the pool (grey) and the targeted regions as boxes; an *after* panel adds that method's
    synthetic points, filled where they landed inside a targeted region and hollow elsewhere, and colours each box
    by whether the region reached the threshold ``T`` with them (green) or is still sparse (red). Axes are shared,
    so the panels compare directly. For 3-D coords the first two axes are drawn (and the title says so).

    Args:
        pool_coords: (n, K) pool coordinates.
        synthetic_coords: ``{method name: (m, K) coordinates}``, e.g. ``{"embedsdg": ..., "random": ...}``.
        boxes: ``(lower, upper)`` of every targeted region.
        landed: per method, a boolean per synthetic point: inside a targeted region.
        reached: per method, a boolean per box: the region's count after is at least ``T``.
        threshold: ``T``, for the legend.
        bounds: ``(lower, upper)`` of the grid, drawn dashed (points outside it are not counted in any region).
        axis_labels: names of the axes, as on the embedding map (``Reducer.axis_labels()``, e.g.
            ``"PCA 1 (12.3% of variance)"``); default "axis 1", "axis 2".

    Example:
        >>> report = coverage_report(pool, grid, regions, reducer, {"embedsdg": ours, "random": baseline},
        ...                          model=student, text_template=template)  # doctest: +SKIP
        >>> plot_coverage(report.pool_coords, report.synthetic_coords, "coverage.png",
        ...               boxes=[(r["lower"], r["upper"]) for r in report.regions])  # doctest: +SKIP
    """
    from matplotlib.lines import Line2D

    pool_coords = np.asarray(pool_coords, dtype=np.float32)
    k = pool_coords.shape[1]
    names = list(synthetic_coords)
    plt, fig, flat = _panels(1 + len(names))
    t = f"T={threshold}" if threshold is not None else "T"

    def background(ax, colours: Sequence[str]) -> list:
        ax.scatter(pool_coords[:, 0], pool_coords[:, 1], s=3, c="#8C8C8C", alpha=0.4, linewidths=0)
        for (lower, upper), colour in zip(boxes, colours):
            ax.add_patch(_box(lower, upper, ec=colour, lw=1.2))
        handles = [_key("o", "#8C8C8C", f"seed pool ({len(pool_coords):,})", ms=3)]
        if bounds is not None:
            ax.add_patch(_box(*bounds, ec="#BBBBBB", ls="--"))
            handles.append(Line2D([], [], color="#BBBBBB", ls="--", label="grid bounds"))
        return handles

    handles = background(flat[0], ["#C44E52"] * len(boxes))
    handles.append(Line2D([], [], color="#C44E52", lw=1.2, label=f"targeted regions ({len(boxes)})"))
    flat[0].set_title(f"Before: seed pool ({len(pool_coords):,} points)")
    flat[0].legend(handles=handles, loc="best", fontsize=8)
    for ax, name, (colour, marker, size) in zip(flat[1:], names, itertools.cycle(_METHOD_STYLES)):
        points = np.asarray(synthetic_coords[name], dtype=np.float32).reshape(-1, k)
        hit = np.zeros(len(points), bool) if landed is None else np.asarray(landed[name], dtype=bool)
        done = [False] * len(boxes) if reached is None else [bool(r) for r in reached[name]]
        handles = background(ax, ["#55A868" if d else "#C44E52" for d in done])
        ax.scatter(points[hit, 0], points[hit, 1], s=size, marker=marker, c=colour, edgecolors="black", lw=0.6)
        ax.scatter(points[~hit, 0], points[~hit, 1], s=size, marker=marker, facecolors="none", edgecolors=colour, lw=1)
        handles += [
            _key(marker, colour, f"{name}: in a targeted region ({hit.sum()})", mec="black", mew=0.6),
            _key(marker, colour, f"{name}: elsewhere ({(~hit).sum()})", mfc="none"),
            Line2D([], [], color="#55A868", lw=1.2, label=f"region at >= {t} after ({sum(done)})"),
            Line2D([], [], color="#C44E52", lw=1.2, label=f"region still < {t} ({len(done) - sum(done)})"),
        ]
        ax.set_title(f"After: pool + {name} ({len(points):,} synthetic points)")
        ax.legend(handles=handles, loc="best", fontsize=8)
    suffix = f" (axes 1-2 of {k}; regions are {k}-D boxes seen from above)" if k > 2 else ""
    title = (title or "Coverage of the targeted sparse regions") + suffix
    return _save_panels(plt, fig, flat, 1 + len(names), title, path, axis_labels)


def _panels(n_panels: int, height: float = 5.0):
    """A grid of ``n_panels`` map panels (at most 3 a row, ``height`` inches each) sharing their axes: ``plt, fig,
    flat axes``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ncols = min(n_panels, 3)
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.4 * ncols, height * nrows), dpi=120, sharex=True, sharey=True, squeeze=False
    )
    return plt, fig, axes.ravel()


def _save_panels(
    plt, fig, flat, n_panels: int, title: str, path: str | Path, axis_labels: Sequence[str] | None = None
) -> Path:
    """Hide the unused panels, label the map axes (:func:`_axis_names`), title, save and close."""
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    x_label, y_label = _axis_names(axis_labels)
    for ax in flat[:n_panels]:
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_knn_coverage(
    pool_coords: np.ndarray,
    synthetic_coords: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    centres: np.ndarray,
    before: Sequence[int],
    after: Mapping[str, Sequence[int]],
    no_longer_sparse: Mapping[str, Sequence[bool]],
    landed: Mapping[str, np.ndarray] | None = None,
    k: int | None = None,
    axis_labels: Sequence[str] | None = None,
    title: str | None = None,
):
    """The map before and after the synthetic rows, for k-NN regions: one panel for the pool, then one per method.

    A k-NN region is a ball in the density space (many dimensions), so the map cannot draw its extent: each targeted
    region is its centre (a diamond). The *before* panel labels every centre with its pool count within the radius;
    an *after* panel adds that method's synthetic points (filled where they landed within a targeted region, hollow
    elsewhere), labels each centre that gained points with ``+added``, and colours centres green when the region is
    no longer sparse with them, red while it still is. Axes are shared; for 3-D coords the first two axes are drawn.

    Args:
        pool_coords: (n, K) pool map coordinates.
        synthetic_coords: ``{method name: (m, K) map coordinates}``.
        centres: (r, K) map coordinates of the targeted regions' centres.
        before: per region, the pool points within its radius.
        after: per method, per region, the points within its radius with the synthetic ones.
        no_longer_sparse: per method, per region: its k-th-neighbour distance fell below the selection threshold.
        landed: per method, a boolean per synthetic point: within some targeted region.
        k: the selector's k, for the legend.
        axis_labels: names of the map's axes (``Reducer.axis_labels()``); default "axis 1", "axis 2".

    Example:
        >>> report = knn_coverage_report(pool, regions, reducer, {"embedsdg": ours}, model=student,
        ...                              text_template=template, density_template="{question}")  # doctest: +SKIP
        >>> report.plot("coverage.png")  # doctest: +SKIP
    """
    pool_coords = np.asarray(pool_coords, dtype=np.float32)
    dims = pool_coords.shape[1]
    centres = np.asarray(centres, dtype=np.float32).reshape(-1, dims)
    names = list(synthetic_coords)
    plt, fig, flat = _panels(1 + len(names), height=6.0)  # room for the legends below
    kth = f"{k}th" if k is not None else "k-th"
    red, green = "#C44E52", "#55A868"
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.13), "fontsize": 8, "ncol": 2}  # never over a point

    def background(ax, colours: Sequence[str], labels: Sequence[str]) -> list:
        ax.scatter(pool_coords[:, 0], pool_coords[:, 1], s=3, c="#8C8C8C", alpha=0.4, linewidths=0)
        ax.scatter(
            centres[:, 0], centres[:, 1], s=60, marker="D", c=list(colours), edgecolors="black", lw=0.7, zorder=3
        )
        for (x, y), label in zip(centres[:, :2], labels):
            if label:
                ax.annotate(label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, zorder=4)
        return [_key("o", "#8C8C8C", f"seed pool ({len(pool_coords):,})", ms=3)]

    handles = background(flat[0], [red] * len(centres), [str(b) for b in before])
    handles.append(_key("D", red, f"targeted region centre ({len(centres)}): pool within radius", mec="black"))
    flat[0].set_title(f"Before: seed pool ({len(pool_coords):,} points)")
    flat[0].legend(handles=handles, **below)
    for ax, name, (colour, marker, size) in zip(flat[1:], names, itertools.cycle(_METHOD_STYLES)):
        points = np.asarray(synthetic_coords[name], dtype=np.float32).reshape(-1, dims)
        hit = np.zeros(len(points), bool) if landed is None else np.asarray(landed[name], dtype=bool)
        done = [bool(d) for d in no_longer_sparse[name]]
        added = [a - b for a, b in zip(after[name], before)]
        handles = background(ax, [green if d else red for d in done], [f"+{a}" if a else "" for a in added])
        # drawn over the centres (zorder 5): no synthetic point hides under a diamond
        ax.scatter(
            points[hit, 0], points[hit, 1], s=size, marker=marker, c=colour, edgecolors="black", lw=0.6, zorder=5
        )
        ax.scatter(
            points[~hit, 0],
            points[~hit, 1],
            s=size,
            marker=marker,
            facecolors="none",
            edgecolors=colour,
            lw=1,
            zorder=5,
        )
        handles += [
            _key(marker, colour, f"{name}: within a targeted region ({hit.sum()})", mec="black", mew=0.6),
            _key(marker, colour, f"{name}: elsewhere ({(~hit).sum()})", mfc="none"),
            _key("D", green, f"no longer sparse ({kth}-NN < tau) ({sum(done)})", mec="black"),
            _key("D", red, f"still sparse ({len(done) - sum(done)}); +n: points added", mec="black"),
        ]
        ax.set_title(f"After: pool + {name} ({len(points):,} synthetic points)")
        ax.legend(handles=handles, **below)
    suffix = f" (axes 1-2 of {dims})" if dims > 2 else ""
    default = "Coverage of the targeted k-NN regions (balls in the density space; centres drawn on the map)"
    return _save_panels(plt, fig, flat, 1 + len(names), (title or default) + suffix, path, axis_labels)


def plot_family_shares(
    families: Sequence[str],
    shares: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    rare: Sequence[str] = (),
    title: str | None = None,
):
    """Share per family, one bar per source (e.g. EmbedSDG seeds, RandomSDG seeds, the pool); rare families marked.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "shares.png"
        >>> plot_family_shares(["a", "b"], {"EmbedSDG": {"a": 0.2, "b": 0.8}, "pool": {"a": 0.9, "b": 0.1}},
        ...                    path, rare=["b"]).stat().st_size > 0
        True
    """
    families = list(families)
    plt, fig, ax = _figure(width=max(7.0, 0.55 * len(families) + 2), height=4.5)
    colours = ("#DD8452", "#4C72B0", "#A0A0A0", "#55A868", "#8172B3")
    width = 0.8 / max(1, len(shares))
    x = np.arange(len(families))
    for i, (name, values) in enumerate(shares.items()):
        heights = [float(values.get(f, 0.0)) for f in families]
        ax.bar(x + (i - (len(shares) - 1) / 2) * width, heights, width, label=name, color=colours[i % len(colours)])
    ax.set_xticks(x)
    ax.set_xticklabels([f + (" *" if f in set(rare) else "") for f in families], rotation=60, ha="right", fontsize=8)
    for tick, family in zip(ax.get_xticklabels(), families):
        if family in set(rare):
            tick.set_color("#C44E52")
            tick.set_fontweight("bold")
    ax.set_ylabel("share")
    ax.set_title(title or "Share per family (* rare)", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_lines_with_ci(
    series: Mapping[str, Mapping],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    reference: Mapping[str, float] | None = None,
):
    """Lines with 95% error bars: ``series[label] = {"x", "y", "low", "high", "colour", "style"}``; ``reference``
    draws a grey horizontal line per label (e.g. the value before training).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "lines.png"
        >>> plot_lines_with_ci({"a": {"x": [1, 2], "y": [1.0, 0.8], "low": [0.9, 0.7], "high": [1.1, 0.9]}},
        ...                    path, xlabel="budget", ylabel="loss", title="t").stat().st_size > 0
        True
    """
    plt, fig, ax = _figure(10.0, 4.5)
    for label, s in series.items():
        y = np.asarray(s["y"], dtype=float)
        low = np.where(np.isnan(np.asarray(s["low"], dtype=float)), y, np.asarray(s["low"], dtype=float))
        high = np.where(np.isnan(np.asarray(s["high"], dtype=float)), y, np.asarray(s["high"], dtype=float))
        ax.errorbar(
            s["x"], y, yerr=[y - low, high - y], color=s.get("colour"), ls=s.get("style", "-"), marker="o", capsize=3,
            label=label,
        )  # fmt: skip
    for i, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color="#999999", ls=("-", ":", "--")[i % 3], lw=1, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a point
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
