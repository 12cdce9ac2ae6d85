"""The report's figures as inline SVG strings (matplotlib, Agg): confusion matrix, OvR ROC curves, reliability
diagrams, participant flow, forest plot.

Deterministic output (fixed hash salt, no date), text kept as SVG <text> (escaped by matplotlib, selectable,
small), math-text parsing off so a '$' in a centre's name is just a '$'. Each figure's element IDs get a
per-figure prefix because several SVGs share one HTML document.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Okabe–Ito, readable by colour-blind readers and in greyscale print
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
CLASS_COLOURS = {"normal": "#009E73", "osteopenia": "#E69F00", "osteoporosis": "#D55E00"}


def clip_text(text: str, width: int) -> str:
    """One line of at most ``width`` characters (textwrap.shorten drops a long first word entirely)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.fonttype": "none",
        "svg.hashsalt": "f2b-study",
        "text.parse_math": False,
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    return plt


def to_svg(fig: Any, prefix: str) -> str:
    """The figure as an inline <svg> element: no XML prolog, no metadata, IDs prefixed with ``prefix``."""
    plt = _plt()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    # scale with the page (print and narrow screens) instead of fixed points
    svg = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                 lambda m: f'<svg{m.group(1)} class="figure" style="max-width:{m.group(2)}pt;width:100%;height:auto"',
                 svg, count=1)
    return svg.strip()


def confusion_matrix_svg(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str, prefix: str,
                         xlabel: str = "Predicted (index test)") -> str:
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}\n{100 * share[i, j]:.1f}%", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Reference standard (DXA, WHO)")
    ax.set_title(title)
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    return to_svg(fig, prefix)


def roc_svg(models: Mapping[str, Mapping[str, Mapping[str, list[float]]]],
            aucs: Mapping[str, Mapping[str, float | None]], classes: Sequence[str], prefix: str) -> str:
    """One panel per class; one curve per model ({model: {class: {fpr, tpr}}}), AUC in the legend."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(classes), figsize=(3.2 * len(classes), 3.3), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), classes, strict=True):
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
        for (model, curves), colour in zip(models.items(), COLOURS, strict=False):
            if name not in curves:
                continue
            value = aucs.get(model, {}).get(name)
            label = f"{model} ({value:.3f})" if value is not None else model
            ax.step(curves[name]["fpr"], curves[name]["tpr"], where="post", color=colour, lw=1.4,
                    label=clip_text(label, 48))
        ax.set_title(f"{name} vs rest")
        ax.set_xlabel("1 − specificity")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=6.5, frameon=False)
    np.atleast_1d(axes)[0].set_ylabel("Sensitivity")
    fig.tight_layout()
    return to_svg(fig, prefix)


def reliability_svg(reliability: Mapping[str, list[dict]], classes: Sequence[str], prefix: str,
                    title: str = "") -> str:
    """Top-label reliability (the ECE's bins) and one OvR panel per class; marker area ∝ patients in the bin."""
    plt = _plt()
    panels = [("top_label", "top-label confidence")] + [(c, f"p({c})") for c in classes]
    panels = [(key, label) for key, label in panels if reliability.get(key)]
    if not panels:
        return ""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.7 * len(panels), 2.9), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (key, label) in zip(axes, panels, strict=True):
        bins = reliability[key]
        n = np.array([b["n"] for b in bins], dtype=float)
        x = [b["mean_predicted"] for b in bins]
        y = [b["observed"] for b in bins]
        colour = CLASS_COLOURS.get(key, COLOURS[0])
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
        ax.plot(x, y, color=colour, lw=1.2)
        ax.scatter(x, y, s=12 + 90 * n / max(n.max(), 1), color=colour, zorder=3, edgecolor="white", lw=0.5)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_aspect("equal")
        ax.set_xlabel(f"mean {label}")
        ax.set_title("accuracy vs confidence" if key == "top_label" else f"{key} vs rest", fontsize=9)
    axes[0].set_ylabel("observed frequency")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return to_svg(fig, prefix)


def forest_svg(meta: Mapping[str, Any], title: str, prefix: str, xlabel: str = "AUC (95% CI)") -> str:
    """Per-centre estimates with CIs (square area ∝ random-effects weight) and the pooled diamonds."""
    plt = _plt()
    studies = meta.get("studies", [])
    if not studies:
        return ""
    pooled = [(key, meta[key]) for key in ("fixed", "random") if meta.get(key)]
    rows = len(studies) + len(pooled)
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.38 * rows))
    labels = []
    for i, study in enumerate(studies):
        y = rows - i
        lo, hi = study["ci"]
        weight = study.get("weight_random") or 1 / len(studies)
        ax.plot([lo, hi], [y, y], color="black", lw=1)
        ax.scatter([study["estimate"]], [y], marker="s", s=20 + 160 * weight, color=COLOURS[0], zorder=3)
        labels.append((y, clip_text(study["name"], 28),
                       f"{study['estimate']:.3f} ({lo:.3f}–{hi:.3f})"))
    for j, (key, result) in enumerate(pooled):
        y = len(pooled) - j
        est, (lo, hi) = result["estimate"], result["ci"]
        ax.fill([lo, est, hi, est], [y, y + 0.25, y, y - 0.25], color=COLOURS[5] if key == "random" else "#555555")
        name = "Pooled, random effects" if key == "random" else "Pooled, fixed effect"
        labels.append((y, name, f"{est:.3f} ({lo:.3f}–{hi:.3f})"))
    reference = pooled[-1][1]["estimate"] if pooled else None
    if reference is not None:
        ax.axvline(reference, color="#999999", lw=0.8, ls=":")
    ax.set_yticks([y for y, _, _ in labels], [name for _, name, _ in labels])
    ax.set_ylim(0.4, rows + 0.6)
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks([y for y, _, _ in labels], [text for _, _, text in labels])
    right.spines["right"].set_visible(False)
    right.tick_params(length=0)
    lows = [s["ci"][0] for s in studies] + [r["ci"][0] for _, r in pooled]
    highs = [s["ci"][1] for s in studies] + [r["ci"][1] for _, r in pooled]
    ax.set_xlim(max(0.0, min(lows) - 0.05), min(1.0, max(highs) + 0.05))
    ax.set_xlabel(xlabel)
    i2 = meta.get("i2")
    subtitle = f"I² = {100 * i2:.1f}%, Q = {meta['q']:.2f} (df {meta['df']}), p = {meta['p_heterogeneity']:.3f}" \
        if i2 is not None else ""
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title)
    fig.tight_layout()
    return to_svg(fig, prefix)


def flow_svg(flow: Mapping[str, Any], prefix: str, classes: Sequence[str]) -> str:
    """STARD participant flow drawn from the counts given; missing stages are left out."""
    plt = _plt()
    main: list[tuple[str, str | None]] = []  # (main box, side box of who left at this step)

    def counts(mapping: Mapping[str, int]) -> str:
        return "\n".join(clip_text(f"{reason}: {n}", 44) for reason, n in mapping.items())

    def by_class(mapping: Mapping[str, int] | None) -> str:
        if not mapping:
            return ""
        return "\n" + ", ".join(f"{k} {mapping[k]}" for k in [*classes, *(k for k in mapping if k not in classes)]
                                if k in mapping)

    labels = {"enrolled": "Records in the cohort(s)", "excluded": "Excluded (eligibility, DXA)",
              "eligible": "Eligible, WHO class assigned", **(flow.get("labels") or {})}
    if "enrolled" in flow:
        main.append((f"{labels['enrolled']}\nn = {flow['enrolled']}", None))
    if "eligible" in flow:
        excluded = flow.get("excluded") or {}
        side = f"{labels['excluded']}\nn = {sum(excluded.values())}\n{counts(excluded)}" if excluded else None
        main.append((f"{labels['eligible']}\nn = {flow['eligible']}{by_class(flow.get('eligible_by_class'))}",
                     side))
    if "analysed" in flow:
        qc = flow.get("photo_qc_excluded") or {}
        lost = []
        if flow.get("no_photo"):
            lost.append(f"no photo: {flow['no_photo']}")
        lost += [clip_text(f"photo QC, {reason}: {n}", 44) for reason, n in qc.items()]
        side = (f"Excluded (photos)\nn = {flow.get('no_photo', 0) + sum(qc.values())}\n" + "\n".join(lost)) \
            if lost else None
        analysed = f"Analysed (face photo passed QC)\nn = {flow['analysed']}"
        main.append((analysed + by_class(flow.get("analysed_by_class")), side))
    splits = flow.get("split") or {}
    split_classes = flow.get("by_class") or {}
    if not main and not splits:
        return ""
    line = 0.15  # inches per text line at these font sizes

    def lines(text: str | None) -> int:
        return text.count("\n") + 1 if text else 0

    # vertical layout (inches = data units): a gap fits both half-boxes and the side box between them
    ys: list[float] = []
    y = 0.0
    for i, (text, side) in enumerate(main):
        if i:
            y -= max(1.1, 0.5 + line * max(lines(side), (lines(text) + lines(main[i - 1][0])) / 2 + 2))
        ys.append(y)
    split_y = None
    if splits:
        last = main[-1][0] if main else ""
        split_y = (y - max(1.1, 0.6 + line * (lines(last) + 3) / 2 + line * 2)) if main else 0.0
    bottom = (split_y if split_y is not None else y) - 0.5
    top = 0.5
    height = top - bottom
    fig, ax = plt.subplots(figsize=(7.6, height))
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom, top)
    ax.axis("off")
    box = {"boxstyle": "round,pad=0.45", "facecolor": "white", "edgecolor": "#333333", "lw": 0.9}
    side_box = {**box, "facecolor": "#f4f4f4"}
    arrow = {"arrowstyle": "-|>", "color": "#333333", "lw": 0.9}
    for i, ((text, side), y) in enumerate(zip(main, ys, strict=True)):
        ax.text(0.3, y, text, ha="center", va="center", bbox=box, fontsize=8.5)
        if i:
            above = ys[i - 1] - line * lines(main[i - 1][0]) / 2 - 0.12
            below = y + line * lines(text) / 2 + 0.12
            ax.annotate("", xy=(0.3, below), xytext=(0.3, above), arrowprops=arrow)
            if side:
                mid = (above + below) / 2
                ax.plot([0.3, 0.56], [mid, mid], color="#333333", lw=0.9)
                ax.annotate("", xy=(0.575, mid), xytext=(0.55, mid), arrowprops=arrow)
                ax.text(0.59, mid, side, ha="left", va="center", bbox=side_box, fontsize=7.5)
    if splits and split_y is not None:
        names = list(splits)
        xs = np.linspace(0.15, 0.85, len(names)) if len(names) > 1 else np.array([0.3])
        for x, name in zip(xs, names, strict=True):
            text = f"{name}\nn = {splits[name]}{by_class(split_classes.get(name))}"
            ax.text(x, split_y, text, ha="center", va="center", bbox=box, fontsize=8)
            if main:
                above = ys[-1] - line * lines(main[-1][0]) / 2 - 0.12
                ax.annotate("", xy=(x, split_y + line * lines(text) / 2 + 0.12), xytext=(0.3, above),
                            arrowprops=arrow)
    return to_svg(fig, prefix)
