"""Figures of the clinical-utility statistics (issue 15) as inline SVG strings: decision curves, flexible
calibration curves with their bootstrap band, and the comparison of models on the same patients.

Each function takes the plain dicts of the evaluation (f2b_study.stats.evaluation / compare) and returns an
``<svg>`` element (empty string when there is nothing to draw), drawn in the project's one figure style
(f2b_study.present.style: colours, text ≥ 9 pt, deterministic SVG, prefixed IDs, 300-dpi PNG for the exports).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from f2b_study.present.format import number, p_value
from f2b_study.present.style import CLASS_COLOURS, COLOURS, clip_text, figure_style, new_figure, to_svg

DECISION_TITLES = {"osteoporosis": "Refer for DXA: osteoporosis (p_osteoporosis ≥ t)",
                   "low_bone_mass": "Refer for DXA: low bone mass (1 − p_normal ≥ t)"}
REFER_ALL = "#777777"


def _nb_axes(ax: Any, curves: Mapping[str, list[dict] | None], decision: str, max_threshold: float) -> None:
    """One decision's panel: each model's curve, refer-all (from the first model with a curve) and refer-none."""
    drawn = [(name, points) for name, points in curves.items() if points]
    if not drawn:
        ax.text(0.5, 0.5, "no curve (see notes)", ha="center", va="center", transform=ax.transAxes, color="#777777")
        ax.set_axis_off()
        return
    first = drawn[0][1]
    t = np.array([p["threshold"] for p in first])
    keep = t <= max_threshold
    nb_all = np.array([p["net_benefit_all"] for p in first])
    top = max(float(nb_all.max()), max(max(p["net_benefit"] for p in points) for _, points in drawn))
    ax.plot(t[keep], nb_all[keep], color=REFER_ALL, lw=1.0, ls="--", label="Refer all")
    ax.axhline(0.0, color="black", lw=0.8, label="Refer none")
    for (name, points), colour in zip(drawn, COLOURS, strict=False):
        x = np.array([p["threshold"] for p in points])
        y = np.array([p["net_benefit"] for p in points])
        ax.plot(x[x <= max_threshold], y[x <= max_threshold], color=colour, lw=1.5, label=clip_text(name, 40))
    ax.set_xlim(0, max_threshold)
    ax.set_ylim(-0.1 * max(top, 0.01), 1.08 * max(top, 0.01))
    ax.set_xlabel("Threshold probability t")
    ax.set_title(DECISION_TITLES.get(decision, decision), fontsize=10)


def _legend_below(fig: Any, axes: Sequence[Any]) -> float:
    """One legend for the decision panels, under them (a legend inside covers the curves); returns the figure
    fraction it takes at the bottom."""
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda hl: len(hl[0]))
    if not handles:
        return 0.0
    columns = min(3, len(handles))
    fig.legend(handles, labels, loc="lower center", ncol=columns, frameon=False)
    return 0.045 * -(-len(handles) // columns) + 0.03


def decision_curves_svg(models: Mapping[str, Mapping[str, list[dict] | None]], prefix: str,
                        decisions: Sequence[str] = ("osteoporosis", "low_bone_mass"),
                        max_threshold: float = 0.99, title: str = "") -> str:
    """Net benefit against threshold, one panel per decision; ``models`` = {label: {decision: curve}}, the
    index test first, e.g. {"Face model": document["decision_curves"], "Clinical model": document[
    "decision_curves_comparators"]["clinical_logit"]}."""
    if not any(curves and any(curves.get(d) for d in decisions) for curves in models.values()):
        return ""
    with figure_style():
        fig, axes = new_figure((4.6 * len(decisions), 4.6), 1, len(decisions))
        axes = np.atleast_1d(axes)
        for ax, decision in zip(axes, decisions, strict=True):
            _nb_axes(ax, {name: (curves or {}).get(decision) for name, curves in models.items()}, decision,
                     max_threshold)
        axes[0].set_ylabel("Net benefit")
        if title:
            fig.suptitle(title)
        bottom = _legend_below(fig, axes)
        fig.tight_layout(rect=(0, bottom, 1, 1))
        return to_svg(fig, prefix)


def flexible_calibration_svg(flexible: Mapping[str, dict | None], classes: Sequence[str], prefix: str,
                             reliability: Mapping[str, list[dict]] | None = None,
                             per_class: Mapping[str, Mapping[str, Any]] | None = None, title: str = "") -> str:
    """One panel per class: the spline calibration curve with its bootstrap band over the reliability bins
    (marker area ∝ patients), the calibration intercept and slope written in the corner.

    ``flexible`` = full["curves"]["flexible_calibration"], ``reliability`` = full["curves"]["reliability"],
    ``per_class`` = document["per_class"]."""
    shown = [c for c in classes if flexible.get(c)]
    if not shown:
        return ""
    with figure_style():
        fig, axes = new_figure((3.3 * len(shown), 3.9), 1, len(shown), sharey=True)
        axes = np.atleast_1d(axes)
        for ax, name in zip(axes, shown, strict=True):
            curve = flexible[name]
            colour = CLASS_COLOURS.get(name, COLOURS[0])
            ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
            if curve.get("lo") and curve.get("hi"):
                ax.fill_between(curve["predicted"], curve["lo"], curve["hi"], color=colour, alpha=0.2, lw=0,
                                label="95% bootstrap band")
            ax.plot(curve["predicted"], curve["observed"], color=colour, lw=1.6, label="spline curve")
            bins = (reliability or {}).get(name) or []
            if bins:
                n = np.array([b["n"] for b in bins], dtype=float)
                ax.scatter([b["mean_predicted"] for b in bins], [b["observed"] for b in bins],
                           s=8 + 60 * n / max(n.max(), 1), color="white", edgecolor=colour, lw=0.8, zorder=3,
                           label="bins of width 0.1")
            entry = (per_class or {}).get(name) or {}
            lines = []
            for key, label in (("calibration_intercept", "intercept"), ("calibration_slope", "slope")):
                value, ci = entry.get(key), entry.get(f"{key}_ci")
                if value is not None:
                    lines.append(f"{label} {number(value, 2)}"
                                 + (f" ({number(ci[0], 2)} to {number(ci[1], 2)})" if ci else ""))
            if lines:
                ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=9)
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_aspect("equal")
            ax.set_xticks([0, 0.5, 1])
            ax.set_xlabel(f"predicted p({name})")
            ax.set_title(f"{name} vs rest")
        axes[0].set_ylabel("observed frequency")
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:  # one legend for the panels, under them, instead of one small legend per panel
            fig.legend(handles, labels, loc="lower center", ncol=len(handles), frameon=False)
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
        return to_svg(fig, prefix)


def model_comparison_svg(comparison: Mapping[str, Any], prefix: str, max_threshold: float = 0.99) -> str:
    """The `evaluate --compare` figure: AUCs with DeLong 95% CIs per class and macro for every model (left), and
    both decisions' curves of every model (right). ``comparison`` = f2b_study.stats.compare.compare_models()."""
    models = comparison.get("models") or {}
    if not models:
        return ""
    classes = [*comparison.get("classes", []), "macro"]
    with figure_style():
        fig, axes = new_figure((10.6, 5.0), 1, 3, gridspec_kw={"width_ratios": [1.1, 1, 1]})
        ax = axes[0]
        offsets = np.linspace(-0.25, 0.25, len(models)) if len(models) > 1 else np.zeros(1)
        for (name, model), dy, colour in zip(models.items(), offsets, COLOURS, strict=False):
            for i, key in enumerate(classes):
                auc = model["auc"].get(key) or {}
                if auc.get("auc") is None:
                    continue
                y = len(classes) - 1 - i + dy
                if auc.get("ci"):
                    ax.plot(auc["ci"], [y, y], color=colour, lw=1.2)
                ax.scatter([auc["auc"]], [y], color=colour, s=18, zorder=3,
                           label=clip_text(name, 36) if i == 0 else None)
        ax.set_yticks(range(len(classes)), [f"{c} vs rest" if c != "macro" else "macro (mean)"
                                            for c in reversed(classes)])
        ax.set_xlabel("AUC (DeLong 95% CI)")
        ax.set_xlim(max(0.0, ax.get_xlim()[0]), min(1.0, ax.get_xlim()[1] + 0.02))
        ax.legend(loc="lower left", frameon=False)
        reference = comparison.get("reference")
        p_lines = []
        for name, vs in (comparison.get("versus") or {}).items():
            test = (vs.get("delong_paired") or {}).get("macro")
            if test and test.get("p") is not None:
                difference = test["difference"]
                sign = "+" if difference is not None and difference > 0 else ""
                p_lines.append(clip_text(f"{reference} − {name}: Δ {sign}{number(difference)}, "
                                         f"p = {p_value(test['p'])}", 48))
        ax.set_title("Macro AUC difference (paired DeLong)\n" + "\n".join(p_lines) if p_lines else "AUC per class",
                     fontsize=10)
        for ax, decision in zip(axes[1:], ("osteoporosis", "low_bone_mass"), strict=True):
            _nb_axes(ax, {name: model["decision_curves"].get(decision) for name, model in models.items()}, decision,
                     max_threshold)
        axes[1].set_ylabel("Net benefit")
        bottom = _legend_below(fig, axes[1:])
        fig.tight_layout(rect=(0, bottom, 1, 1))
        return to_svg(fig, prefix)
