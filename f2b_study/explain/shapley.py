"""Exact region Shapley values (docs/methods.md, Explanations; the paper's SHAP section, eq. for φ_i).

Players: the five facial regions (f2b_study.faces.regions.REGIONS), disjoint and covering the face ellipse. The game
of one image: v(S) = the model's output on the composite image that keeps the image's own pixels in the regions
of S and the baseline's pixels in the other regions; pixels outside every region (the black background of a
standardised face) stay the image's. All 2⁵ = 32 coalitions are evaluated, so the values are exact:

    φ_i = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · [v(S ∪ {i}) − v(S)]

summed over the 16 marginal contributions of each region (`shapley_from_values`; `shapley_matrix` is the same
map as one 32 × 5 matrix); efficiency (Σ_i φ_i = v(all) − v(none)), symmetry and null players hold by
construction. This equals shap's Exact explainer over a
5-feature masker (tests/test_explain_shapley.py checks it on the same value function); we apply the weights
ourselves because shap's explainer evaluates one image at a time, while the composites of many images are
batched on the device here.

The whole model plays the game: for Face2Bone the FaceNet branch sees the same composite (an absent region is
absent for every part of the network), so each coalition costs a FaceNet pass too. `facenet_input="original"`
instead keeps every composite's FaceNet embedding at the unmasked image's (FaceNet then carries all regions' pixels
into the SSAM key, and the values attribute only what goes through the image branch); it is 5–7× cheaper on 2 CPU
threads (benchmarks/bench_explain.py) and is recorded in every output when chosen.

Coalition s (0 ≤ s < 32) has region i present when bit i of s is set: s = 0 is the empty coalition (the
baseline face), s = 31 the full image.

Cost: the 32 composites of batch_size // 32 images go through the model together, and identical composites run
once (see region_shapley). With FaceNet on the composite the work is FaceNet's convolutions (~80 % at the demo's
sizes, in its fused inference copy: models/facenet_inference.py), and there is no exact shortcut: every
coalition's composite is a different FaceNet input.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from f2b_study.faces.regions import REGIONS

OUTPUTS = ("probability", "logit")
FACENET_INPUTS = ("masked", "original")


def coalition_table(n_players: int = len(REGIONS)) -> np.ndarray:
    """(2ⁿ, n) bool: row s has player i present when bit i of s is set."""
    s = np.arange(2 ** n_players)[:, None]
    return ((s >> np.arange(n_players)[None, :]) & 1).astype(bool)


def shapley_matrix(n_players: int = len(REGIONS)) -> np.ndarray:
    """(2ⁿ, n) float64 M with φ = Mᵀ v: M[s, i] = +w(|s| − 1) when i ∈ s, −w(|s|) when i ∉ s, where
    w(k) = k! (n − k − 1)! / n! is the Shapley weight of a coalition of size k not containing i."""
    table = coalition_table(n_players)
    size = table.sum(axis=1)
    n = n_players

    def weight(k: np.ndarray) -> np.ndarray:
        return np.array([math.factorial(int(v)) * math.factorial(n - int(v) - 1) / math.factorial(n) for v in k])

    with_i = weight(np.maximum(size - 1, 0))[:, None]
    without_i = weight(np.minimum(size, n - 1))[:, None]
    return np.where(table, with_i, -without_i)


def shapley_from_values(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values from all coalition values: (..., 2ⁿ, K) -> (..., n, K).

    Summed as the textbook marginal contributions w(|S|)·[v(S ∪ {i}) − v(S)] (not as Mᵀv), so a player the model
    ignores gets exactly 0: its marginal differences are 0 term by term, with no rounding left from cancelling
    sums."""
    values = np.asarray(values, dtype=np.float64)
    n = round(math.log2(values.shape[-2]))
    if 2 ** n != values.shape[-2]:
        raise ValueError(f"expected 2^n coalition values, got {values.shape[-2]}")
    table = coalition_table(n)
    size = table.sum(axis=1)
    weight = np.array([math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)])
    out = np.empty((*values.shape[:-2], n, values.shape[-1]))
    for i in range(n):
        without = np.flatnonzero(~table[:, i])
        marginal = values[..., without | (1 << i), :] - values[..., without, :]
        out[..., i, :] = np.einsum("...sk,s->...k", marginal, weight[size[without]])
    return out


@dataclasses.dataclass
class RegionShapley:
    """Region Shapley values of N images.

    values (N, 5, K): φ of each region for each model output k; f_all (N, K) = v(all regions) = the model on the
    image itself; f_none (N, K) = v(∅) = the model on the baseline face; coalition_values (N, 32, K).
    model_evaluations: composites the model actually ran on (N·32 less the identical ones reused, see
    `unique_composites`).
    """

    values: np.ndarray
    f_all: np.ndarray
    f_none: np.ndarray
    coalition_values: np.ndarray
    regions: tuple[str, ...]
    output: str
    facenet_input: str
    seconds: float
    device: str
    model_evaluations: int = -1

    @property
    def efficiency_gap(self) -> float:
        """max |Σ_i φ_i − (f(all) − f(none))| (0 up to rounding: exact values)."""
        if not len(self.values):
            return 0.0
        return float(np.abs(self.values.sum(axis=1) - (self.f_all - self.f_none)).max())

    def describe(self) -> dict[str, Any]:
        n = len(self.values)
        return {"players": list(self.regions), "coalitions": 2 ** len(self.regions), "output": self.output,
                "facenet_input": self.facenet_input, "n_images": n, "seconds": round(self.seconds, 3),
                "images_per_second": round(n / self.seconds, 2) if self.seconds > 0 else None,
                "device": self.device, "efficiency_max_abs_gap": self.efficiency_gap,
                "model_evaluations": self.model_evaluations}


def composites(images: torch.Tensor, baselines: torch.Tensor, masks: torch.Tensor,
               present: torch.Tensor) -> torch.Tensor:
    """Composite images of every coalition: (B, C, 3, H, W).

    images (B, 3, H, W) and baselines (B or 1, 3, H, W) in the same (normalised) space; masks (B, R, H, W) bool,
    disjoint; present (C, R) bool. A pixel takes the baseline where its region is absent from the coalition and
    the image's own value everywhere else (present regions and the background outside every region)."""
    absent = torch.einsum("cr,brhw->bchw", (~present).to(torch.float32), masks.to(torch.float32)) > 0.5
    return torch.where(absent[:, :, None], baselines[:, None], images[:, None])


def has_facenet(model: torch.nn.Module) -> bool:
    return getattr(model, "facenet", None) is not None and hasattr(model, "face_embedding")


def _normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float [0, 255] (B, 3, H, W) -> the model's normalised input."""
    mean_t = torch.tensor(mean, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean_t) / std_t


def _to_chw(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, 3) array -> (N, 3, H, W) tensor on the device (uint8 travels as uint8)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device).permute(0, 3, 1, 2)


def effective_coalitions(images: torch.Tensor, baselines: torch.Tensor, masks: torch.Tensor,
                         present: torch.Tensor) -> torch.Tensor:
    """(B, C) int64: for each image and coalition, the coalition restricted to the regions that change the image
    (a region that is empty, or whose pixels all equal the baseline's, is the same present or absent), as its
    coalition index (bit i = region i). Composites of one image with the same code are identical pixel for pixel,
    and the code is itself a coalition whose composite is that image: the model runs once per code."""
    changes = ((images != baselines).any(dim=1, keepdim=True) & masks).flatten(2).any(dim=-1)  # (B, R)
    bits = 1 << torch.arange(present.shape[1], device=present.device)
    return ((present[None] & changes[:, None]).long() * bits).sum(dim=-1)


@torch.inference_mode()
def region_shapley(model: torch.nn.Module, faces: np.ndarray, region_masks: np.ndarray, baseline: np.ndarray, *,
                   mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
                   batch_size: int = 256, output: str = "probability", facenet_input: str = "masked",
                   bf16: bool = True, embeddings: np.ndarray | None = None, progress: bool = False) -> RegionShapley:
    """Exact region Shapley values for N faces.

    faces (N, S, S, 3) uint8 at the model's input size; region_masks (N, 5, S, S) bool (disjoint, in REGIONS
    order); baseline (S, S, 3) (one face for all, e.g. the training mean) or (N, S, S, 3) (one per image, e.g. a
    blur), values in [0, 255]. output: "probability" (softmax) or "logit". batch_size: composites per forward
    pass (the 32 coalitions of batch_size // 32 images together). bf16 autocast applies on CUDA only. embeddings
    (N, 512): the unmasked faces' FaceNet embeddings for facenet_input="original" when already computed (else
    one FaceNet pass per image serves its 32 composites).

    Identical composites run once (`effective_coalitions`): within an image, coalitions that differ only in regions
    that do not change the image; across images, the empty coalition when the composites are equal pixel for pixel
    (a shared baseline over identical black backgrounds) and the model sees nothing else of the image (not with
    facenet_input="original", where each image brings its own embedding). The values are those of evaluating every
    composite (tests/test_explain_shapley.py); result.model_evaluations counts the passes."""
    from tqdm import tqdm

    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if facenet_input not in FACENET_INPUTS:
        raise ValueError(f"facenet_input must be one of {FACENET_INPUTS}, got {facenet_input!r}")
    n, size = len(faces), faces.shape[1]
    n_players = region_masks.shape[1]
    if region_masks.shape != (n, n_players, size, size):
        raise ValueError(f"region masks {region_masks.shape} do not match faces {faces.shape}")
    per_image = baseline.ndim == 4
    if baseline.shape[-3:] != (size, size, 3) or (per_image and len(baseline) != n):
        raise ValueError(f"baseline {baseline.shape} does not match faces {faces.shape}")
    device = torch.device(device)
    model.eval()
    table = torch.from_numpy(coalition_table(n_players)).to(device)
    n_coalitions = len(table)
    chunk = max(1, batch_size // n_coalitions)
    autocast = device.type == "cuda" and bf16
    original = facenet_input == "original" and has_facenet(model)
    shared_base = None if per_image else _normalise(_to_chw(baseline[None].astype(np.float32), device), mean, std)
    empty: tuple[torch.Tensor, torch.Tensor] | None = None  # (composite, output) of an empty coalition, reusable
    evaluations = 0
    values: list[np.ndarray] = []
    start = time.perf_counter()
    for first in tqdm(range(0, n, chunk), desc="region Shapley", unit="batch", disable=not progress, leave=False):
        images = _normalise(_to_chw(faces[first:first + chunk], device), mean, std)
        base = shared_base if shared_base is not None else _normalise(
            _to_chw(baseline[first:first + chunk].astype(np.float32), device), mean, std)
        masks = torch.from_numpy(region_masks[first:first + chunk]).to(device)
        count = len(images)
        x = composites(images, base, masks, table)  # (count, 32, 3, S, S)
        codes = effective_coalitions(images, base, masks, table)  # (count, 32)
        needed = torch.zeros(count, n_coalitions, dtype=torch.bool, device=device)
        needed.scatter_(1, codes, True)  # coalition s runs for image i iff s is one of i's codes
        reused = torch.zeros(count, dtype=torch.bool, device=device)
        if not original and empty is not None:
            for i in needed[:, 0].nonzero().flatten().tolist():
                reused[i] = torch.equal(x[i, 0], empty[0])
            needed[:, 0] &= ~reused
        index = needed.flatten().nonzero().flatten()  # the composites to run, as (image · 32 + coalition)
        evaluations += len(index)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            own = None
            if original:  # one FaceNet embedding per image serves its 32 composites
                own = (torch.as_tensor(embeddings[first:first + chunk], dtype=torch.float32, device=device)
                       if embeddings is not None else model.face_embedding(images))
            outputs = []
            for part in index.split(batch_size):
                batch = x.flatten(0, 1)[part].contiguous(memory_format=torch.channels_last)
                kwargs = {} if own is None else {"face_embedding": own[part // n_coalitions]}
                logits = model(batch, **kwargs).float()
                outputs.append(torch.softmax(logits, dim=1) if output == "probability" else logits)
        width = outputs[0].shape[1] if outputs else empty[1].shape[0]  # type: ignore[index]
        results = torch.empty(count * n_coalitions, width, device=device)
        if outputs:
            results[index] = torch.cat(outputs)
        results = results.view(count, n_coalitions, width)
        if reused.any():
            results[reused, 0] = empty[1]  # type: ignore[index]
        if not original and empty is None and needed[:, 0].any():
            i = int(needed[:, 0].nonzero()[0])
            empty = (x[i, 0].clone(), results[i, 0].clone())
        # every coalition takes the value of its code's composite
        result = results.gather(1, codes.unsqueeze(-1).expand(-1, -1, results.shape[-1]))
        values.append(result.cpu().numpy().astype(np.float64))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    coalition_values = np.concatenate(values) if values else np.zeros((0, n_coalitions, 0))
    names = tuple(REGIONS) if n_players == len(REGIONS) else tuple(f"player{i}" for i in range(n_players))
    return RegionShapley(values=shapley_from_values(coalition_values), f_all=coalition_values[:, -1],
                         f_none=coalition_values[:, 0], coalition_values=coalition_values,
                         regions=names,
                         output=output, facenet_input=facenet_input if has_facenet(model) else "n/a (no FaceNet)",
                         seconds=seconds, device=str(device), model_evaluations=evaluations)
