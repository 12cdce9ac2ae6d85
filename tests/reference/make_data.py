"""Generate tests/reference/reference_data.csv: the patients every reference implementation is run on.

Two models' probabilities on a 0.01 grid (ties at every decision-curve threshold and in every ROC curve), sex,
centre. Run once; the CSV is committed with the reference values computed from it (make_reference.R for R pROC and
rms/glm, make_dcurves_reference.py for dcurves), so CI needs neither R nor dcurves.

    python tests/reference/make_data.py
"""

from pathlib import Path

import numpy as np

N = 400


def grid_probabilities(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    a = np.clip(np.round(p[:, 0], 2), 0.01, 0.97)
    b = np.clip(np.round(p[:, 1], 2), 0.01, 0.98 - a)
    return np.column_stack([a, b, np.round(1 - a - b, 2)])


def main() -> None:
    rng = np.random.default_rng(20260515)
    y = rng.choice(3, N, p=[0.35, 0.45, 0.2])
    sex = rng.choice(["F", "M"], N, p=[0.65, 0.35])
    centre = rng.choice(["A", "B", "C"], N)
    logits = rng.normal(size=(N, 3))
    logits[np.arange(N), y] += 1.4
    p = grid_probabilities(logits)
    logits_b = logits + rng.normal(scale=1.0, size=(N, 3))
    q = grid_probabilities(logits_b * 0.7)
    lines = ["patient_id,y,sex,center,p_normal,p_osteopenia,p_osteoporosis,q_normal,q_osteopenia,q_osteoporosis"]
    for i in range(N):
        lines.append(f"R{i:04d},{y[i]},{sex[i]},{centre[i]}," + ",".join(f"{v:.2f}" for v in (*p[i], *q[i])))
    Path(__file__).with_name("reference_data.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
