"""Face2Bone (paper Fig. 2; docs/methods.md, Model) and its ablations.

    x (B, 3, H, W), normalised with the model's mean/std (224 px by default)
      ├─ FaceNet branch: resize to 160, FaceNet normalisation, InceptionResnetV1 -> e (B, 512)     facenet.py
      └─ image branch: stem + 4 stages of FSA blocks -> F (B, C, H/32, W/32)                        fsa.py
    SSAM(F, e): V = ReLU(conv F) ≥ 0, attention a = softmax over positions of q·K(e) -> A = Σ a·V (B, C)  ssam.py
    KAN head(A) -> 3 logits                                                                          kan.py

Ablations (one builder, three switches kept in the config): block="conv" (no-FSA: ResNet basic blocks of the same
widths and depths), pooling="gap" (no-SSAM: global average pooling of F; the FaceNet branch is then not built at
all, since SSAM is the only place the embedding enters the network — our reading of the paper's "removing this
module"), head="mlp" (no-KAN: LayerNorm + Linear/GELU layers of the same widths).

Interface other parts rely on:
- forward(x, face_embedding=None) -> logits (B, num_classes). Pass a precomputed face_embedding (B, 512) to skip
  the FaceNet branch (only with a frozen FaceNet, or in eval mode: otherwise FaceNet would silently get no
  gradient, so that raises ValueError).
- face_embedding(x) -> (B, 512): what to cache per image when FaceNet is frozen; facenet_frozen (bool property)
  says whether that is allowed; facenet_eval() puts the branch in eval mode.
- Explainability (CRAFT, docs/methods.md, Explanations), models with has_ssam:
    concept_activations(x, face_embedding=None) -> (V, attention): V (B, C, h, w) ≥ 0, attention (B, heads, h·w)
    ssam_values(x) -> V;  ssam_attention(x, face_embedding=None) -> attention (rows sum to 1)
    pooled_features(x, face_embedding=None) -> A (B, C) ≥ 0 (for has_ssam; GAP of F otherwise)
    head_from_pooled(A) -> logits       : h(A), the rest of the network after the activations
    head_from_values(V, attention) -> logits = head_from_pooled(ssam.pool(V, attention))
  CRAFT: activations A = pooled_features(crops) (non-negative), NMF A ≈ U W, importance from
  head_from_pooled((U ⊙ masks) W); concept maps from V's per-position vectors with the same W. For crops, pass
  the whole face's embedding (face_embedding=model.face_embedding(face)): FaceNet on a crop is not a face.
- feature_map(x) -> F (B, C, h, w): the image branch output (after its final LayerNorm).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from f2b_study.models.facenet import EMBEDDING_DIM, FACENET_SIZE, FaceNetBranch
from f2b_study.models.fsa import ImageBranch
from f2b_study.models.kan import KAN, MLPHead
from f2b_study.models.ssam import SSAM

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The default architecture: a straightforward reading of docs/methods.md (DRSformer-like widths, per-head channels 24).
DEFAULTS: dict[str, Any] = {
    "dims": (48, 96, 192, 384),
    "depths": (2, 2, 4, 2),
    "heads": (2, 4, 8, 16),
    "alpha": 0.5,
    "window": 2,
    "ffn_ratio": 2.0,
    "ssam_heads": 8,
    "kan_hidden": (64,),
    "kan_grid": 5,
    "kan_order": 3,
    "facenet_trainable": "frozen",
    "facenet_size": FACENET_SIZE,
    "block": "fsa",
    "pooling": "ssam",
    "head": "kan",
}


# A small, fast configuration for the CPU demo (docs/methods.md: plan the demo from CPU timings): 112 px, a quarter of
# the default's trainable parameters (1.75M of 6.6M), FaceNet frozen so its embeddings are computed once per image.
# create_model("face2bone", **DEMO_CONFIG); it goes into the checkpoint's config like any override.
DEMO_CONFIG: dict[str, Any] = {
    "input_size": 112,
    "dims": (32, 64, 128, 256),
    "depths": (1, 1, 2, 1),
    "heads": (2, 4, 8, 16),
    "kan_hidden": (32,),
    "facenet_trainable": "frozen",
}


class Face2Bone(nn.Module):
    def __init__(self, *, num_classes: int = 3, input_size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, dims: Sequence[int] = DEFAULTS["dims"],
                 depths: Sequence[int] = DEFAULTS["depths"], heads: Sequence[int] = DEFAULTS["heads"],
                 alpha: float = 0.5, window: int = 2, ffn_ratio: float = 2.0, ssam_heads: int = 8,
                 kan_hidden: Sequence[int] = (64,), kan_grid: int = 5, kan_order: int = 3,
                 facenet_trainable: str = "frozen", facenet_size: int = FACENET_SIZE, block: str = "fsa",
                 pooling: str = "ssam", head: str = "kan") -> None:
        super().__init__()
        if pooling not in ("ssam", "gap"):
            raise ValueError(f"pooling must be 'ssam' or 'gap', got {pooling!r}")
        if head not in ("kan", "mlp"):
            raise ValueError(f"head must be 'kan' or 'mlp', got {head!r}")
        self.input_size = input_size
        self.image = ImageBranch(dims=dims, depths=depths, heads=heads, block=block, window=window, alpha=alpha,
                                 ffn_ratio=ffn_ratio)
        channels = self.image.out_channels
        self.has_ssam = pooling == "ssam"
        self.facenet: FaceNetBranch | None = None
        self.ssam: SSAM | None = None
        if self.has_ssam:
            self.facenet = FaceNetBranch(mean=mean, std=std, trainable=facenet_trainable, size=facenet_size)
            self.ssam = SSAM(channels, EMBEDDING_DIM, ssam_heads)
        if head == "kan":
            self.head: nn.Module = KAN(channels, kan_hidden, num_classes, grid_size=kan_grid, spline_order=kan_order)
        else:
            self.head = MLPHead(channels, kan_hidden, num_classes)

    # --- the two branches ---------------------------------------------------------------------------------------
    def face_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """FaceNet's 512-d L2-normalised embedding of the model input x."""
        if self.facenet is None:
            raise RuntimeError("this Face2Bone variant has no FaceNet branch (pooling='gap')")
        return self.facenet(x)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.image(x)

    def _embedding(self, x: torch.Tensor, face_embedding: torch.Tensor | None) -> torch.Tensor:
        if face_embedding is None:
            return self.face_embedding(x)
        assert self.facenet is not None
        if self.training and self.facenet.trainable != "frozen":
            raise ValueError(f"face_embedding given while FaceNet trains (mode {self.facenet.trainable!r}): "
                             "its weights would get no gradient; pass none, or freeze FaceNet")
        if face_embedding.shape != (x.shape[0], EMBEDDING_DIM):
            raise ValueError(f"face_embedding must be ({x.shape[0]}, {EMBEDDING_DIM}), got "
                             f"{tuple(face_embedding.shape)}")
        return face_embedding

    @property
    def facenet_frozen(self) -> bool:
        """True when the FaceNet branch exists and never trains: its embeddings can be cached per image."""
        return self.facenet is not None and self.facenet.trainable == "frozen"

    def facenet_eval(self) -> None:
        """Put the FaceNet branch in eval mode (a frozen branch already stays there through model.train())."""
        if self.facenet is not None:
            self.facenet.eval()

    # --- explainability interface (see module docstring) -------------------------------------------------------
    def _require_ssam(self) -> SSAM:
        if self.ssam is None:
            raise RuntimeError("this Face2Bone variant has no SSAM (pooling='gap'): no non-negative values")
        return self.ssam

    def ssam_values(self, x: torch.Tensor) -> torch.Tensor:
        return self._require_ssam().values(self.feature_map(x))

    def ssam_attention(self, x: torch.Tensor, face_embedding: torch.Tensor | None = None) -> torch.Tensor:
        return self._require_ssam().attention(self.feature_map(x), self._embedding(x, face_embedding))

    def concept_activations(self, x: torch.Tensor,
                            face_embedding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ssam = self._require_ssam()
        features = self.feature_map(x)
        return ssam.values(features), ssam.attention(features, self._embedding(x, face_embedding))

    def pooled_features(self, x: torch.Tensor, face_embedding: torch.Tensor | None = None) -> torch.Tensor:
        features = self.feature_map(x)
        if self.ssam is None:
            return features.mean(dim=(2, 3))
        return self.ssam(features, self._embedding(x, face_embedding))

    def head_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)

    def head_from_values(self, values: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return self.head(self._require_ssam().pool(values, attention))

    def forward(self, x: torch.Tensor, face_embedding: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.pooled_features(x, face_embedding))


def build_face2bone(**config: Any) -> Face2Bone:
    """Face2Bone from its config (DEFAULTS overridden by `config`); FaceNet randomly initialised, weights are loaded
    by the registry (`create_model(..., facenet_weights=...)`) or from a checkpoint."""
    return Face2Bone(**{**DEFAULTS, **config})


def load_facenet_weights(model: nn.Module, source: str | Path | None) -> dict[str, Any] | None:
    """Load VGGFace2 weights into a Face2Bone's FaceNet branch; the provenance record (None without the branch)."""
    facenet = getattr(model, "facenet", None)
    return facenet.load_weights(source) if facenet is not None else None
