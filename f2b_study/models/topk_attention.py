"""Top-k sparse transposed channel attention (DRSformer's TKSA, Chen et al. CVPR 2023; paper eqs. 7–8).

Per head, the attention matrix is over channels: S = temperature · q̂ k̂ᵀ (c × c, c = channels per head), with q̂, k̂
the qkv projection (1×1 conv then 3×3 depthwise conv) L2-normalised along the spatial dimension. Four sparse
attentions keep the top-k entries of each row of S for k = int(c·1/2), int(c·2/3), int(c·3/4), int(c·4/5), softmax
each, and mix the four outputs with four learnable weights (DRSformer: `attn1..attn4`, initialised 0.2).

DRSformer computes four topk calls, four scatters, four masked softmaxes and four matmuls with V. Because the mix
is linear, Σ_i w_i·softmax(mask_i(S))·V = (Σ_i w_i·P_i)·V, and each masked softmax only needs the exponentials of
the row's top-k_i values and their sum. So this module does one topk with the largest k, one exp and cumsum over
the sorted values (the four softmax denominators are the cumsum at k_i − 1), gives each rank r the coefficient
Σ_i w_i·[r < k_i]/Z_i, and scatters exp(s_r − max)·coef_r back to the columns: one mixed attention matrix, one
matmul with V. The same mathematics (tested against the four-mask reference), tie-safe (each mask keeps exactly
k_i entries, as topk does), and gradients flow exactly as through the reference (through the gathered values).
The map stays channels-last and the output projection is folded into the mixed attention matrix (see forward);
tests/test_models_equality.py checks values and gradients against the textbook layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# DRSformer's four sparsity levels, as fractions of the channels per head.
TOPK_FRACTIONS: tuple[tuple[int, int], ...] = ((1, 2), (2, 3), (3, 4), (4, 5))


def topk_sizes(channels_per_head: int, fractions: Sequence[tuple[int, int]] = TOPK_FRACTIONS) -> tuple[int, ...]:
    """k for each fraction, as DRSformer computes them: int(c · num / den)."""
    ks = tuple(int(channels_per_head * num / den) for num, den in fractions)
    if min(ks) < 1:
        raise ValueError(f"{channels_per_head} channels per head is too few for top-k fractions {fractions}")
    return ks


def rank_masks(ks: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """(len(ks), max(ks)) float: row i is 1 for the ranks r < ks[i] (inside the top-k_i set)."""
    ranks = torch.arange(max(ks), device=device)
    return torch.stack([ranks < k for k in ks]).float()


def mixed_topk_softmax(scores: torch.Tensor, ks: Sequence[int], weights: torch.Tensor,
                       masks: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_i weights[i] · softmax over the top-ks[i] entries of each row of `scores` (other entries 0).

    scores: (..., n, n_cols); weights: (len(ks),); masks: rank_masks(ks) (built when not given; modules cache it
    so no host-to-device copy happens per call). Computed in float32 (the matrix is small; in bf16, ties and
    rounding in the cumulative sums would be common). Returns float32 of the same shape.
    """
    s = scores.float()
    if masks is None:
        masks = rank_masks(ks, s.device)
    values, index = torch.topk(s, max(ks), dim=-1, largest=True, sorted=True)
    # The shift cancels in every ratio; detached so autograd does not carry the cancelling terms.
    exp_sorted = torch.exp(values - values[..., :1].detach())
    cumulative = torch.cumsum(exp_sorted, dim=-1)
    denominators = torch.stack([cumulative[..., k - 1] for k in ks], dim=-1)  # Z_i = Σ_{r<k_i} exp
    coefficients = (weights.float() / denominators) @ masks.float()  # (..., n, k_max): Σ_i w_i [r < k_i] / Z_i
    return torch.zeros_like(s).scatter(-1, index, exp_sorted * coefficients)


def channel_gram(q: torch.Tensor, k: torch.Tensor, heads: int, *, per_image: bool) -> torch.Tensor:
    """Per head, the (d × d) Gram matrix qᵀk over positions: q, k (B, n, heads·d) (strided views of the qkv map)
    -> (B, heads, d, d).

    per_image (the CPU's choice): one (heads, d, n) @ (heads, n, d) product per image straight from the strided
    views, since a 4-D matmul would copy both operands to merge batch and heads and on the CPU the copies cost more
    than this short loop. Otherwise one batched kernel (a loop of small launches would be launch-bound on a GPU)."""
    b, n, c = q.shape
    d = c // heads
    if per_image:
        return torch.stack([torch.bmm(q[i].view(n, heads, d).permute(1, 2, 0), k[i].view(n, heads, d).transpose(0, 1))
                            for i in range(b)])
    return torch.einsum("bnhi,bnhj->bhij", q.view(b, n, heads, d), k.view(b, n, heads, d))


class TopKChannelAttention(nn.Module):
    """TKSA on a (B, C, H, W) map -> (B, C, H, W)."""

    def __init__(self, dim: int, heads: int, *, bias: bool = False,
                 fractions: Sequence[tuple[int, int]] = TOPK_FRACTIONS) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.ks = topk_sizes(dim // heads, fractions)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.mix = nn.Parameter(torch.full((len(self.ks),), 0.2))
        self.register_buffer("masks", rank_masks(self.ks), persistent=False)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q̂, k̂ (L2-normalised over space) and v, each (B, heads, c, H·W): the textbook layout (reference and
        benchmarks; forward does not materialise these)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        return F.normalize(q, dim=-1), F.normalize(k, dim=-1), v

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return (q @ k.transpose(-2, -1)) * self.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last throughout (an NCHW input works, at the cost of copies): the qkv map is read as (B, H·W, 3C)
        views, never transposed into the textbook (B, heads, c, H·W) layout.

        - S = temperature · q̂ᵀk̂ per head = temperature · (qᵀk) / (‖q_i‖ ‖k_j‖): the Gram of the raw q, k divided by
          the norms (F.normalize's eps clamp kept), instead of normalising the whole q and k maps.
        - out = project_out(A·v) per position = v · blockdiag(Aᵀ) · Wᵀ: the (C × C) product blockdiag(Aᵀ)·Wᵀ is
          formed per image (tiny), then one matmul over positions gives the projected output directly.
        """
        b, c, h, w = x.shape
        heads, d = self.heads, c // self.heads
        n = h * w
        qkv = self.qkv_dwconv(self.qkv(x.contiguous(memory_format=torch.channels_last)))
        tokens = qkv.permute(0, 2, 3, 1).reshape(b, n, 3 * c)  # a view for a channels-last map
        q, k, v = tokens[..., :c], tokens[..., c:2 * c], tokens[..., 2 * c:]
        gram = channel_gram(q, k, heads, per_image=x.device.type == "cpu")
        norms = tokens[..., :2 * c].square().sum(1).sqrt().clamp_min(1e-12)  # F.normalize's eps
        q_norm, k_norm = norms[:, :c].view(b, heads, d, 1), norms[:, c:].view(b, heads, 1, d)
        scores = gram / (q_norm * k_norm) * self.temperature
        attention = mixed_topk_softmax(scores, self.ks, self.mix, self.masks).to(v.dtype)  # (B, heads, d, d)
        weight = self.project_out.weight.view(-1, heads, d)  # (C_out, heads, d)
        # mixed[b, h·d + j, o] = Σ_i A[b, h, i, j] · W[o, h·d + i]
        mixed = torch.einsum("bhij,ohi->bhjo", attention, weight.to(v.dtype)).reshape(b, c, -1)
        out = torch.bmm(v, mixed)  # (B, n, C_out)
        if self.project_out.bias is not None:
            out = out + self.project_out.bias
        return out.view(b, h, w, -1).permute(0, 3, 1, 2)
