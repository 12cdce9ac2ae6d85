"""CRAFT concepts (Fel et al., CVPR 2023; the paper's CRAFT section, eqs. 26–27, Figs. 13–15, Table 8).

Per reference class c, on that class's standardised faces:
1. Crops: a CROP_GRID × CROP_GRID grid of square crops, CROP_FRACTION of the face's side each, resized back to the
   model's input size; crops with less than MIN_FACE_FRACTION of face-ellipse pixels are dropped.
2. Activations A (crops × C) ≥ 0: the layer just before the classifier head. Face2Bone: the SSAM output, the
   attention-pooled V (V = ReLU(conv F) ≥ 0, so A ≥ 0); ResNet comparators: layer4 (post-ReLU) averaged over
   positions. h(A) = the head (Face2Bone's KAN/MLP head, ResNet's fc): the rest of the network. A Face2Bone crop
   keeps its whole face's FaceNet embedding as the SSAM key: FaceNet describes whole faces (a crop is not one),
   the key says which face the crop belongs to, and it costs one FaceNet pass per face instead of per crop.
3. Concepts: scikit-learn NMF, A ≈ U W, U (crops × k) ≥ 0 the concept coefficients, W (k × C) ≥ 0 the concept
   bank; seeded (nndsvda initialisation, random_state).
4. Importance: total Sobol indices of the concepts for the model's class-c output, per crop, averaged over crops
   (CRAFT's estimator; at most `max_sobol_crops` crops, a seeded subset, since the head runs on every mask):
   masks M ∈ [0, 1]^k from a scrambled Sobol sequence (scipy.stats.qmc, seeded) in Saltelli's A/B/C design
   (N designs: A, B and k matrices C_i = A with column i from B), output y = h((u ⊙ m) W), Jansen's estimator
   S_T,i = mean((y_A − y_C_i)²) / (2 Var(y_A ∪ y_B)). A concept the output ignores gets exactly 0;
   a constant output (zero variance) gives 0 for every concept.
5. Concept maps: each position's activation vector of the whole face (Face2Bone: V at the feature map's positions;
   ResNet: layer4) expressed in the class's concept bank (NMF.transform with W fixed), upsampled for drawing. The
   class's attribution map = Σ_k importance_k · map_k averaged over its faces; Face2Bone also has SSAM's own
   attention map (mean over heads and faces).
6. Table 8: Jensen–Shannon divergence (base 2) between the classes' attribution maps (and SSAM attention maps),
   at the feature map's own resolution (input / 32: 7 × 7 at 224 px; nothing is interpolated before comparing).

The faces are aligned (f2b_study.faces.standardise), so a position means the same facial area in every face and
maps can be averaged over a class.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CROP_GRID = 2
CROP_FRACTION = 0.6
MIN_FACE_FRACTION = 0.5


class UnsupportedModel(Exception):
    """CRAFT cannot run on this model (no non-negative activations before a separable head)."""


@dataclasses.dataclass
class CraftConfig:
    n_concepts: int = 6
    crop_grid: int = CROP_GRID
    crop_fraction: float = CROP_FRACTION
    min_face_fraction: float = MIN_FACE_FRACTION
    nb_design: int = 32  # Sobol designs per crop (a power of two): 32 · (k + 2) masks
    max_sobol_crops: int | None = 48  # crops (a seeded subset) whose indices are averaged
    max_images_per_class: int | None = 24
    seed: int = 0
    batch_size: int = 64

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the model cut in two ---------------------------------------------------------------------------------------

class CraftAdapter:
    """g: x -> (pooled activations A (B, C) ≥ 0, per-position values (B, C, h, w) ≥ 0, attention (B, h·w) or
    None); h: A -> logits. `embed` gives what a crop borrows from its whole face (Face2Bone: the FaceNet
    embedding), or None."""

    kind = ""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def embed(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def activations(self, x: torch.Tensor, embedding: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Face2BoneAdapter(CraftAdapter):
    kind = "face2bone SSAM (attention-pooled V)"

    def embed(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.model.face_embedding(x)

    def activations(self, x: torch.Tensor, embedding: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        values, attention = self.model.concept_activations(x, embedding)
        pooled = self.model.ssam.pool(values, attention)
        return pooled, values, attention.mean(dim=1)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.model.head_from_pooled(pooled)


class ResNetAdapter(CraftAdapter):
    kind = "ResNet layer4 (post-ReLU), global average pooled"

    def activations(self, x: torch.Tensor, embedding: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        m = self.model
        features = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
        return features.mean(dim=(2, 3)), features, None

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.model.fc(pooled)


def adapter_for(model: nn.Module) -> CraftAdapter:
    """The CRAFT cut of a registry model, or UnsupportedModel with the reason."""
    arch = getattr(model, "f2b_arch", type(model).__name__)
    if getattr(model, "has_ssam", False) and hasattr(model, "concept_activations"):
        return Face2BoneAdapter(model)
    if hasattr(model, "has_ssam"):
        raise UnsupportedModel(f"{arch} has no SSAM (its pooled features come from a LayerNorm'd map and can be "
                               "negative): CRAFT needs the Face2Bone family with SSAM or a ResNet")
    if all(hasattr(model, name) for name in ("layer4", "fc", "avgpool", "conv1")):
        return ResNetAdapter(model)
    raise UnsupportedModel(f"{arch}: CRAFT needs non-negative activations before a separable head (Face2Bone with "
                           "SSAM, or a ResNet); region Shapley values work for every model")


# -- crops ------------------------------------------------------------------------------------------------------

def crop_boxes(size: int, grid: int, fraction: float) -> list[tuple[int, int, int]]:
    """(top, left, side) of a grid × grid set of square crops spanning the frame."""
    side = max(1, round(size * fraction))
    steps = max(grid - 1, 1)
    offsets = [(size - side) // 2] if grid == 1 else [round(i * (size - side) / steps) for i in range(grid)]
    return [(top, left, side) for top in offsets for left in offsets]


def make_crops(faces: torch.Tensor, face_masks: np.ndarray, config: CraftConfig) -> tuple[torch.Tensor,
                                                                                       np.ndarray]:
    """Crops of (B, 3, S, S) float faces resized to S (bilinear); (crops (M, 3, S, S), source face index (M,))."""
    size = faces.shape[-1]
    crops, owners = [], []
    for top, left, side in crop_boxes(size, config.crop_grid, config.crop_fraction):
        coverage = face_masks[:, top:top + side, left:left + side].mean(axis=(1, 2))
        keep = np.flatnonzero(coverage >= config.min_face_fraction)
        if not len(keep):
            continue
        window = faces[torch.from_numpy(keep).to(faces.device), :, top:top + side, left:left + side]
        crops.append(F.interpolate(window, size=(size, size), mode="bilinear", align_corners=False))
        owners.append(keep)
    if not crops:
        return faces[:0], np.zeros(0, dtype=np.int64)
    return torch.cat(crops), np.concatenate(owners)


# -- concepts ---------------------------------------------------------------------------------------------------

def fit_concepts(activations: np.ndarray, n_concepts: int, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    """NMF of non-negative activations (M × C): (the fitted sklearn NMF, U (M × k), W (k × C))."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    activations = np.asarray(activations, dtype=np.float64)
    if (activations < 0).any():
        raise ValueError("NMF needs non-negative activations")
    k = int(min(n_concepts, *activations.shape))
    nmf = NMF(n_components=k, init="nndsvda", max_iter=1000, tol=1e-5, random_state=seed)
    with warnings.catch_warnings():
        # an unconverged NMF is still a valid non-negative factorisation; its reconstruction error is reported
        warnings.simplefilter("ignore", ConvergenceWarning)
        u = nmf.fit_transform(activations)
    return nmf, u, nmf.components_


def transform(nmf: Any, activations: np.ndarray) -> np.ndarray:
    """Coefficients of activations in a fitted concept bank (W fixed): (n × k) ≥ 0."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return nmf.transform(activations)


def relative_error(activations: np.ndarray, u: np.ndarray, w: np.ndarray) -> float:
    norm = np.linalg.norm(activations)
    return float(np.linalg.norm(activations - u @ w) / norm) if norm > 0 else 0.0


def sobol_design(n_dims: int, nb_design: int, seed: int = 0) -> np.ndarray:
    """Saltelli's design on a scrambled Sobol sequence: (nb_design · (n_dims + 2), n_dims) masks in [0, 1]:
    A, then B, then C_1 … C_d (C_i = A with column i taken from B)."""
    from scipy.stats import qmc

    points = qmc.Sobol(d=2 * n_dims, scramble=True, seed=seed).random(nb_design)
    a, b = points[:, :n_dims], points[:, n_dims:]
    c = np.repeat(a[None], n_dims, axis=0)
    for i in range(n_dims):
        c[i, :, i] = b[:, i]
    return np.concatenate([a, b, c.reshape(-1, n_dims)])


def jansen_total_indices(outputs: np.ndarray, nb_design: int, n_dims: int) -> np.ndarray:
    """Jansen's estimator of the total Sobol indices from the outputs of `sobol_design`'s masks (in its order)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    f_a, f_b = outputs[:nb_design], outputs[nb_design:2 * nb_design]
    f_c = outputs[2 * nb_design:].reshape(n_dims, nb_design)
    variance = np.var(np.concatenate([f_a, f_b]))
    if variance <= 0:
        return np.zeros(n_dims)
    return np.mean((f_a[None] - f_c) ** 2, axis=1) / (2 * variance)


@torch.inference_mode()
def concept_importance(head: Any, u: np.ndarray, w: np.ndarray, class_index: int, *, nb_design: int = 32,
                       seed: int = 0, output: str = "probability", device: torch.device | str = "cpu",
                       rows_per_batch: int = 16384) -> np.ndarray:
    """Total Sobol index of each concept for output `class_index`, per crop, averaged over crops: (k,).
    head: pooled activations (n, C) tensor -> logits (n, K)."""
    device = torch.device(device)
    k = u.shape[1]
    masks = torch.from_numpy(sobol_design(k, nb_design, seed)).to(device, torch.float32)
    u_t = torch.from_numpy(u).to(device, torch.float32)
    w_t = torch.from_numpy(np.asarray(w)).to(device, torch.float32)
    per_batch = max(1, rows_per_batch // len(masks))
    indices = []
    for first in range(0, len(u_t), per_batch):
        coefficients = u_t[first:first + per_batch, None, :] * masks[None]  # (b, n_masks, k)
        logits = head((coefficients @ w_t).flatten(0, 1)).float()
        y = torch.softmax(logits, dim=1) if output == "probability" else logits
        y = y[:, class_index].reshape(len(coefficients), len(masks)).cpu().numpy()
        indices.extend(jansen_total_indices(row, nb_design, k) for row in y)
    return np.mean(indices, axis=0) if indices else np.zeros(k)


# -- the whole analysis -----------------------------------------------------------------------------------------

@dataclasses.dataclass
class ClassConcepts:
    cls: str
    n_images: int
    n_crops: int
    components: np.ndarray  # W (k, C)
    importance: np.ndarray  # total Sobol index per concept (k,)
    relative_error: float  # ||A − U W||_F / ||A||_F on the crops
    concept_maps: np.ndarray  # (k, h, w): mean over the class's faces of each concept's coefficient map
    attribution_map: np.ndarray  # (h, w): Σ_k importance_k · map_k, mean over faces
    attention_map: np.ndarray | None  # (h, w): SSAM attention, mean over heads and faces (Face2Bone)

    def describe(self) -> dict[str, Any]:
        order = np.argsort(-self.importance)
        return {"class": self.cls, "n_images": self.n_images, "n_crops": self.n_crops,
                "n_concepts": len(self.importance), "importance": [float(v) for v in self.importance],
                "ranking": [int(i) for i in order], "nmf_relative_error": self.relative_error}


@dataclasses.dataclass
class CraftResult:
    classes: list[ClassConcepts]
    adapter: str | None
    skipped: str | None
    config: dict[str, Any]
    output: str
    map_size: tuple[int, int] | None
    seconds: float

    def maps(self) -> dict[str, dict[str, np.ndarray]]:
        """{kind: {class: map}} for Table 8."""
        out: dict[str, dict[str, np.ndarray]] = {"craft_attribution": {c.cls: c.attribution_map for c in self.classes}}
        attention = {c.cls: c.attention_map for c in self.classes if c.attention_map is not None}
        if attention:
            out["ssam_attention"] = attention
        return out

    def describe(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "skipped": self.skipped, "config": self.config, "output": self.output,
                "map_size": list(self.map_size) if self.map_size else None, "seconds": round(self.seconds, 3),
                "classes": [c.describe() for c in self.classes]}


def _subsample(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or len(indices) <= limit:
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=limit, replace=False))


@torch.inference_mode()
def _embeddings(adapter: CraftAdapter, x: torch.Tensor, batch_size: int, autocast: bool) -> torch.Tensor | None:
    chunks = []
    for first in range(0, len(x), batch_size):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            e = adapter.embed(x[first:first + batch_size].contiguous(memory_format=torch.channels_last))
        if e is None:
            return None
        chunks.append(e.float())
    return torch.cat(chunks) if chunks else None


@torch.inference_mode()
def _activations(adapter: CraftAdapter, x: torch.Tensor, batch_size: int, autocast: bool,
                 embeddings: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    pooled, values, attention = [], [], []
    for first in range(0, len(x), batch_size):
        e = embeddings[first:first + batch_size] if embeddings is not None else None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            p, v, a = adapter.activations(x[first:first + batch_size].contiguous(memory_format=torch.channels_last), e)
        pooled.append(p.float())
        values.append(v.float())
        if a is not None:
            attention.append(a.float())
    return (torch.cat(pooled), torch.cat(values), torch.cat(attention) if attention else None)


def run_craft(model: nn.Module, faces: np.ndarray, face_masks: np.ndarray, labels: np.ndarray,
              classes: Sequence[str], *, mean: Sequence[float], std: Sequence[float],
              device: torch.device | str = "cpu", config: CraftConfig | None = None, output: str = "probability",
              bf16: bool = True, face_embeddings: np.ndarray | None = None, progress: bool = False) -> CraftResult:
    """CRAFT per reference class on (N, S, S, 3) uint8 faces with their (N, S, S) face masks and class indices.
    face_embeddings (N, 512): the faces' FaceNet embeddings when already computed (Face2Bone), else computed."""
    from tqdm import tqdm

    from f2b_study.explain.shapley import _normalise, _to_chw

    config = config or CraftConfig()
    start = time.perf_counter()
    try:
        adapter = adapter_for(model)
    except UnsupportedModel as reason:
        return CraftResult(classes=[], adapter=None, skipped=str(reason), config=config.describe(), output=output,
                           map_size=None, seconds=0.0)
    device = torch.device(device)
    model.eval()
    autocast = device.type == "cuda" and bf16
    results: list[ClassConcepts] = []
    map_size = None
    for class_index, cls in enumerate(tqdm(classes, desc="CRAFT", unit="class", disable=not progress, leave=False)):
        chosen = _subsample(np.flatnonzero(labels == class_index), config.max_images_per_class,
                            config.seed + class_index)
        if len(chosen) < 2:
            continue
        x = _normalise(_to_chw(faces[chosen], device), mean, std)
        crops, owners = make_crops(x, face_masks[chosen], config)
        if len(crops) < 2:
            continue
        if face_embeddings is not None:
            embeddings = torch.as_tensor(face_embeddings[chosen], dtype=torch.float32, device=device)
        else:
            embeddings = _embeddings(adapter, x, config.batch_size, autocast)
        crop_embeddings = embeddings[torch.from_numpy(owners).to(device)] if embeddings is not None else None
        crop_pooled, _, _ = _activations(adapter, crops, config.batch_size, autocast, crop_embeddings)
        activations = crop_pooled.clamp_min(0).cpu().numpy().astype(np.float64)  # ≥ 0 already; bf16 rounding
        nmf, u, w = fit_concepts(activations, config.n_concepts, config.seed)
        sobol_rows = _subsample(np.arange(len(u)), config.max_sobol_crops, config.seed)
        importance = concept_importance(adapter.head, u[sobol_rows], w, class_index, nb_design=config.nb_design,
                                        seed=config.seed, output=output, device=device)
        _, values, attention = _activations(adapter, x, config.batch_size, autocast, embeddings)
        b, c, h, wd = values.shape
        map_size = (h, wd)
        positions = values.clamp_min(0).permute(0, 2, 3, 1).reshape(-1, c).cpu().numpy().astype(np.float64)
        coefficients = transform(nmf, positions).reshape(b, h, wd, -1).transpose(0, 3, 1, 2)  # (b, k, h, w)
        concept_maps = coefficients.mean(axis=0)
        attribution = np.tensordot(importance, coefficients, axes=(0, 1)).mean(axis=0)
        attention_map = attention.mean(dim=0).reshape(h, wd).cpu().numpy() if attention is not None else None
        results.append(ClassConcepts(cls=cls, n_images=len(chosen), n_crops=len(crops), components=w,
                                     importance=importance, relative_error=relative_error(activations, u, w),
                                     concept_maps=concept_maps, attribution_map=attribution,
                                     attention_map=attention_map))
    return CraftResult(classes=results, adapter=adapter.kind, skipped=None if results else
                       "fewer than 2 faces in every class", config=config.describe(), output=output,
                       map_size=map_size, seconds=time.perf_counter() - start)
