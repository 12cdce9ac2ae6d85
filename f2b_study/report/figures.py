"""The report's figures as inline SVG (present.style: one style, text ≥ 9 pt at 100% zoom): confusion matrix, OvR
ROC curves, reliability diagrams, participant flow, forest plot.

Deterministic output (fixed hash salt, no date), text kept as SVG <text> (escaped by matplotlib, selectable),
math-text parsing off so a '$' in a centre's name is just a '$'. Each figure's element IDs get a per-figure prefix
because several SVGs share one HTML document. Every function returns a style.SvgFigure, which also renders the
300-dpi PNG of the exports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from f2b_study.present.format import number
from f2b_study.present.style import (
    CLASS_COLOURS,
    COLOURS,
    MAX_WIDTH_IN,
    SvgFigure,
    clip_text,
    figure_style,
    new_figure,
    to_svg,
)

__all__ = ["CLASS_COLOURS", "COLOURS", "clip_text", "confusion_matrix_svg", "flow_svg", "forest_svg",
           "reliability_svg", "roc_svg", "to_svg"]


def confusion_matrix_svg(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str, prefix: str,
                         xlabel: str = "Predicted (index test)") -> SvgFigure:
    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    with figure_style():
        fig, ax = new_figure((4.6, 3.9))
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{int(cm[i, j])}\n{number(100 * share[i, j], 1)}%", ha="center", va="center",
                        color="white" if share[i, j] > 0.6 else "black", fontsize=10)
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Reference standard (DXA, WHO)")
        ax.set_title(clip_text(title, 40))
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        fig.tight_layout()
        return to_svg(fig, prefix)


def roc_svg(models: Mapping[str, Mapping[str, Mapping[str, list[float]]]],
            aucs: Mapping[str, Mapping[str, float | None]], classes: Sequence[str], prefix: str) -> SvgFigure:
    """One panel per class; one curve per model ({model: {class: {fpr, tpr}}}). The models are named once, in a
    legend under the panels; each panel's legend gives that class's AUC per model, in the models' colours."""
    from matplotlib.lines import Line2D

    colours = dict(zip(models, COLOURS, strict=False))
    with figure_style():
        fig, axes = new_figure((10.2, 4.1), 1, len(classes), sharey=True)
        for ax, name in zip(np.atleast_1d(axes), classes, strict=True):
            ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
            for model, curves in models.items():
                if name not in curves:
                    continue
                value = aucs.get(model, {}).get(name)
                ax.step(curves[name]["fpr"], curves[name]["tpr"], where="post", color=colours[model], lw=1.5,
                        label=number(value) if value is not None else "—")
            ax.set_title(f"{name} vs rest")
            ax.set_xlabel("1 − specificity")
            ax.set_xlim(-0.01, 1.01)
            ax.set_ylim(-0.01, 1.01)
            ax.set_aspect("equal")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="lower right", title="AUC", frameon=False, handlelength=1.2)
        np.atleast_1d(axes)[0].set_ylabel("Sensitivity")
        handles = [Line2D([], [], color=colours[m], lw=2) for m in models]
        fig.legend(handles, [clip_text(m, 44) for m in models], loc="lower center", ncol=min(3, len(models)),
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, 0.09, 1, 1))
        return to_svg(fig, prefix)


def reliability_svg(reliability: Mapping[str, list[dict]], classes: Sequence[str], prefix: str,
                    title: str = "") -> SvgFigure | str:
    """Top-label reliability (the ECE's bins) and one OvR panel per class; marker area ∝ patients in the bin."""
    panels = [("top_label", "top-label confidence")] + [(c, f"p({c})") for c in classes]
    panels = [(key, label) for key, label in panels if reliability.get(key)]
    if not panels:
        return ""
    with figure_style():
        fig, axes = new_figure((min(MAX_WIDTH_IN - 0.4, 2.6 * len(panels)), 3.1), 1, len(panels), sharey=True)
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
            ax.set_xticks([0, 0.5, 1])
            ax.set_xlabel(f"mean {label}")
            ax.set_title("accuracy vs confidence" if key == "top_label" else f"{key} vs rest")
        axes[0].set_ylabel("observed frequency")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return to_svg(fig, prefix)


def forest_svg(meta: Mapping[str, Any], title: str, prefix: str, xlabel: str = "AUC (95% CI)") -> SvgFigure | str:
    """Per-centre estimates with CIs (square area ∝ random-effects weight) and the pooled diamonds."""
    studies = meta.get("studies", [])
    if not studies:
        return ""
    pooled = [(key, meta[key]) for key in ("fixed", "random") if meta.get(key)]
    rows = len(studies) + len(pooled)

    def ci_text(est: float, lo: float, hi: float) -> str:
        return f"{number(est)} ({number(lo)} to {number(hi)})"

    with figure_style():
        fig, ax = new_figure((8.8, 1.3 + 0.42 * rows))
        labels = []
        for i, study in enumerate(studies):
            y = rows - i
            lo, hi = study["ci"]
            weight = study.get("weight_random") or 1 / len(studies)
            ax.plot([lo, hi], [y, y], color="black", lw=1)
            ax.scatter([study["estimate"]], [y], marker="s", s=20 + 160 * weight, color=COLOURS[0], zorder=3)
            labels.append((y, clip_text(study["name"], 30), ci_text(study["estimate"], lo, hi)))
        for j, (key, result) in enumerate(pooled):
            y = len(pooled) - j
            est, (lo, hi) = result["estimate"], result["ci"]
            ax.fill([lo, est, hi, est], [y, y + 0.25, y, y - 0.25],
                    color=COLOURS[5] if key == "random" else "#555555")
            name = "Pooled, random effects" if key == "random" else "Pooled, fixed effect"
            labels.append((y, name, ci_text(est, lo, hi)))
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
        subtitle = (f"I² = {number(100 * i2, 1)}%, Q = {number(meta['q'], 2)} (df {meta['df']}), "
                    f"p = {number(meta['p_heterogeneity'])}") if i2 is not None else ""
        ax.set_title(f"{title}\n{subtitle}" if subtitle else title)
        fig.tight_layout()
        return to_svg(fig, prefix)


# -- participant flow ------------------------------------------------------------------------------------------------

FLOW_WIDTH_IN = 10.4
FLOW_FONT = 10.5
FLOW_SPACING = 1.25
FLOW_LINE_IN = FLOW_FONT * FLOW_SPACING / 72  # inches per text line
FLOW_PAD_IN = 0.45 * FLOW_FONT / 72 + 0.02  # the box's padding (boxstyle pad is in font sizes)
FLOW_MAIN_X = 3.0  # centre of the main column (inches)
FLOW_SIDE_X = 5.7  # left edge of the boxes of who left at each step
FLOW_CHARS = 46


def flow_svg(flow: Mapping[str, Any], prefix: str, classes: Sequence[str]) -> SvgFigure | str:
    """STARD participant flow drawn from the counts given, the full width of the report; missing stages are left
    out. Drawn in inches (data units = inches, no tight crop) so text keeps its size whatever the counts."""
    main: list[tuple[str, str | None]] = []  # (main box, side box of who left at this step)

    def counts(mapping: Mapping[str, int]) -> str:
        return "\n".join(clip_text(f"{reason}: {n}", FLOW_CHARS) for reason, n in mapping.items())

    def ordered(mapping: Mapping[str, int]) -> list[str]:
        return [k for k in [*classes, *(k for k in mapping if k not in classes)] if k in mapping]

    def by_class(mapping: Mapping[str, int] | None, one_line: bool = True) -> str:
        if not mapping:
            return ""
        parts = [f"{k} {mapping[k]}" for k in ordered(mapping)]
        return "\n" + (", ".join(parts) if one_line else "\n".join(parts))

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
        lost += [clip_text(f"photo QC, {reason}: {n}", FLOW_CHARS) for reason, n in qc.items()]
        side = (f"Excluded (photos)\nn = {flow.get('no_photo', 0) + sum(qc.values())}\n" + "\n".join(lost)) \
            if lost else None
        analysed = f"Analysed (face photo passed QC)\nn = {flow['analysed']}"
        flags = flow.get("photo_flags") or {}
        if flags:  # recorded, the photo kept: the study's [qc] exclude list did not name them
            top = sorted(flags.items(), key=lambda kv: -kv[1])[:3]
            analysed += "\nphotos flagged, kept: " + "; ".join(f"{k.replace('_', ' ')} {n}" for k, n in top[:1])
            analysed += "".join(f"\n{k.replace('_', ' ')} {n}" for k, n in top[1:])
        main.append((analysed + by_class(flow.get("analysed_by_class")), side))
    splits = flow.get("split") or {}
    split_classes = flow.get("by_class") or {}
    if not main and not splits:
        return ""
    main = [(clip_lines(text), clip_lines(side) if side else None) for text, side in main]
    line = FLOW_LINE_IN

    def lines(text: str | None) -> int:
        return text.count("\n") + 1 if text else 0

    def half(text: str | None) -> float:
        return line * lines(text) / 2 + FLOW_PAD_IN  # half a box: its lines and the box padding

    # vertical layout in inches: the gap between two main boxes fits the side box between them
    ys: list[float] = []
    y = 0.0
    for i, (text, side) in enumerate(main):
        if i:
            gap = max(0.55, line * lines(side) + 0.35) if side else 0.55
            y -= half(main[i - 1][0]) + gap + half(text)
        ys.append(y)
    split_texts = {name: clip_lines(f"{name}\nn = {splits[name]}{by_class(split_classes.get(name), False)}")
                   for name in splits}
    split_y = None
    if splits:
        tallest = max(lines(t) for t in split_texts.values())
        split_y = (y - half(main[-1][0]) - 0.6 - line * tallest / 2 - 0.1) if main else 0.0
        bottom = split_y - line * tallest / 2 - 0.25
    else:
        bottom = y - half(main[-1][0]) - 0.15
    top = half(main[0][0]) + 0.15 if main else line * max(lines(t) for t in split_texts.values()) / 2 + 0.25
    with figure_style():
        from matplotlib.figure import Figure

        fig = Figure(figsize=(FLOW_WIDTH_IN, top - bottom))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, FLOW_WIDTH_IN)
        ax.set_ylim(bottom, top)
        ax.axis("off")
        box = {"boxstyle": "round,pad=0.45", "facecolor": "white", "edgecolor": "#333333", "lw": 1.0}
        side_box = {**box, "facecolor": "#f2f2f2"}
        arrow = {"arrowstyle": "-|>", "color": "#333333", "lw": 1.0, "shrinkA": 0, "shrinkB": 0}
        for i, ((text, side), y) in enumerate(zip(main, ys, strict=True)):
            ax.text(FLOW_MAIN_X, y, text, ha="center", va="center", bbox=box, fontsize=FLOW_FONT,
                    linespacing=FLOW_SPACING)
            if i:
                above = ys[i - 1] - half(main[i - 1][0])
                below = y + half(text)
                ax.annotate("", xy=(FLOW_MAIN_X, below), xytext=(FLOW_MAIN_X, above), arrowprops=arrow)
                if side:
                    mid = (above + below) / 2
                    ax.annotate("", xy=(FLOW_SIDE_X - 0.12, mid), xytext=(FLOW_MAIN_X, mid), arrowprops=arrow)
                    ax.text(FLOW_SIDE_X, mid, side, ha="left", va="center", bbox=side_box, fontsize=FLOW_FONT - 0.5,
                            linespacing=FLOW_SPACING)
        if splits and split_y is not None:
            names = list(splits)
            xs = np.clip(FLOW_MAIN_X + (np.arange(len(names)) - (len(names) - 1) / 2) * 2.4, 1.0,
                         FLOW_WIDTH_IN - 1.0)
            for x, name in zip(xs, names, strict=True):
                text = split_texts[name]
                ax.text(x, split_y, text, ha="center", va="center", bbox=box, fontsize=FLOW_FONT,
                        linespacing=FLOW_SPACING)
                if main:
                    above = ys[-1] - half(main[-1][0])
                    ax.annotate("", xy=(x, split_y + half(text)), xytext=(FLOW_MAIN_X, above),
                                arrowprops=arrow)
        return to_svg(fig, prefix, tight=False)


def clip_lines(text: str, width: int = FLOW_CHARS) -> str:
    return "\n".join(clip_text(part, width) if part else "" for part in text.split("\n"))
