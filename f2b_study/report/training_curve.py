"""The training curve of a run (loss and accuracy per epoch) as an SVG beside its metrics."""

from __future__ import annotations

import json
from pathlib import Path

from f2b_study.atomic import write_text
from f2b_study.present.style import figure_style, new_figure, standalone_svg, to_svg


def write_training_curve(run_dir: Path, title: str, target: Path | None = None) -> Path:
    """``target`` (default ``run_dir/shareable/training_curve.svg``) from ``run_dir/metrics.json`` (the project's
    figure style)."""
    history = json.loads((run_dir / "metrics.json").read_text())
    epochs = [h["epoch"] + 1 for h in history]
    with figure_style():
        figure, (loss_ax, acc_ax) = new_figure((9, 3.4), 1, 2)
        loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
        loss_ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
        loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
        acc_ax.plot(epochs, [h["train_accuracy"] for h in history], label="train (images)")
        acc_ax.plot(epochs, [h["val_accuracy"] for h in history], label="validation (patients)")
        acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
        for ax in (loss_ax, acc_ax):
            ax.legend(frameon=False)
            ax.grid(alpha=0.3)
        figure.suptitle(title)
        figure.tight_layout()
        svg = to_svg(figure, "training")
    path = target or run_dir / "shareable" / "training_curve.svg"
    write_text(path, standalone_svg(svg))
    return path
