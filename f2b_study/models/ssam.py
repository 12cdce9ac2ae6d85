"""Spatial supervised attention module (paper eqs. 9–11; docs/methods.md, Model).

K = Linear(FaceNet embedding) ∈ R^C (one key per image, split into heads of d = C/heads channels);
Q = ReLU(1×1 conv(F)), V = ReLU(1×1 conv(F)) ∈ R^{C×H×W}.
Per head the face key attends over the H·W positions: a = softmax_n(q_n · k / √d), and the head's output is the
attention-weighted sum of V over positions, Σ_n a_n v_n ∈ R^d. The heads concatenate to the pooled feature
A ∈ R^C. (Read literally, softmax(Q Kᵀ) over a single key is identically 1; the key attending over positions is
the only reading in which the face embedding weighs the features, and it matches "computes attention weights for
relevant facial features".) No output projection: the classifier head follows directly, so A is exactly the
head's input.

For CRAFT (docs/methods.md): V ≥ 0 (ReLU) and A = Σ_n a_n v_n is a convex combination of V per head, so A ≥ 0 too.
CRAFT factorises A (crop level) and V (per position, for concept maps), and runs the rest of the network as
h(A) = head(A) (see face2bone.py). The 1×1 conv keeps every V vector aligned with its position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SSAM(nn.Module):
    def __init__(self, channels: int, embedding_dim: int = 512, heads: int = 8) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"SSAM channels {channels} are not divisible by heads {heads}")
        self.heads = heads
        self.key = nn.Linear(embedding_dim, channels)
        self.query = nn.Conv2d(channels, channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)

    def values(self, features: torch.Tensor) -> torch.Tensor:
        """V = ReLU(conv(F)): (B, C, H, W), non-negative."""
        return F.relu(self.value(features))

    def attention(self, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Softmax over positions of each head's q·k/√d: (B, heads, H·W), each row sums to 1."""
        b, c, h, w = features.shape
        d = c // self.heads
        q = F.relu(self.query(features)).reshape(b, self.heads, d, h * w)
        k = self.key(embedding).reshape(b, self.heads, 1, d)
        logits = (k @ q).squeeze(2) / math.sqrt(d)
        return logits.float().softmax(dim=-1).to(q.dtype)

    def pool(self, values: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """A = per-head attention-weighted sum of V over positions: (B, C)."""
        b, c, h, w = values.shape
        v = values.reshape(b, self.heads, c // self.heads, h * w)
        return (v @ attention.to(v.dtype).unsqueeze(-1)).reshape(b, c)

    def forward(self, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.pool(self.values(features), self.attention(features, embedding))
