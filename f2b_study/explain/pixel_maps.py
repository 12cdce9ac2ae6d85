"""Pixel attribution maps averaged per class (the paper's Fig. 12 heat maps), never of one face.

Per face: gradient × (input − baseline), summed over the colour channels, of the model's output for the face's own
reference class, in the model's normalised input space. It is the first-order (one-step) approximation of
integrated gradients from the same baseline the region Shapley values use, so the two read alike: positive where
the face's own pixels, against the baseline's, push the output up. The gradient flows through the whole model
(FaceNet included). Maps are averaged over each class's faces, which are aligned, and drawn on a mean face
(explain/figures.py): no individual face is ever shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from f2b_study.explain.shapley import _normalise, _to_chw


def gradient_maps(model: torch.nn.Module, faces: np.ndarray, targets: np.ndarray, baseline: np.ndarray, *,
                  mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
                  batch_size: int = 16, output: str = "probability", progress: bool = False) -> np.ndarray:
    """(N, S, S) float32 gradient × (input − baseline) maps of output `targets[i]` for (N, S, S, 3) uint8 faces;
    baseline (S, S, 3) or (N, S, S, 3) in [0, 255]."""
    from tqdm import tqdm

    device = torch.device(device)
    model.eval()
    per_image = baseline.ndim == 4
    out = np.zeros(faces.shape[:3], np.float32)
    for first in tqdm(range(0, len(faces), batch_size), desc="gradient maps", unit="batch", disable=not progress,
                      leave=False):
        x = _normalise(_to_chw(faces[first:first + batch_size], device), mean, std)
        base_array = baseline[first:first + batch_size] if per_image else baseline[None]
        base = _normalise(_to_chw(base_array.astype(np.float32), device), mean, std)
        x.requires_grad_(True)
        with torch.enable_grad():
            logits = model(x).float()
            scores = torch.softmax(logits, dim=1) if output == "probability" else logits
            index = torch.from_numpy(np.asarray(targets[first:first + batch_size], dtype=np.int64)).to(device)
            selected = scores.gather(1, index[:, None]).sum()
            (gradient,) = torch.autograd.grad(selected, x)
        out[first:first + len(x)] = (gradient * (x - base)).sum(dim=1).detach().cpu().numpy()
    return out


def class_means(maps: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, np.ndarray]:
    """Mean map per class (classes without faces are left out)."""
    return {cls: maps[labels == k].mean(axis=0) for k, cls in enumerate(classes) if (labels == k).any()}
