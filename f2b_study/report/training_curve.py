"""The training curve of a run (loss and accuracy per epoch) as an SVG beside its metrics."""

from __future__ import annotations

import io
import json
from pathlib import Path

from f2b_study.atomic import write_text


def write_training_curve(run_dir: Path, title: str) -> Path:
    """``run_dir/training_curve.svg`` from ``run_dir/metrics.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = json.loads((run_dir / "metrics.json").read_text())
    epochs = [h["epoch"] + 1 for h in history]
    with plt.rc_context({"font.size": 10, "svg.hashsalt": "f2b"}):
        figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
        loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
        loss_ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
        loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
        acc_ax.plot(epochs, [h["train_accuracy"] for h in history], label="train (images)")
        acc_ax.plot(epochs, [h["val_accuracy"] for h in history], label="validation (patients)")
        acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
        for ax in (loss_ax, acc_ax):
            ax.legend(frameon=False, fontsize=9)
            ax.grid(alpha=0.3)
        figure.suptitle(title, fontsize=10)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
        plt.close(figure)
    path = run_dir / "training_curve.svg"
    write_text(path, buffer.getvalue())
    return path
