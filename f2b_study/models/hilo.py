"""HiLo attention (LITv2, Pan et al. NeurIPS 2022; paper: "High-frequency attention", "Low-frequency attention").

The heads are split by alpha: int(heads·alpha) low-frequency heads, the rest high-frequency.
- Low frequency (Lo-Fi): queries from every position; keys and values from the map average-pooled in s×s windows
  (average pooling is the low-pass filter); global attention.
- High frequency (Hi-Fi): self-attention inside each non-overlapping s×s window (s = 2 in the paper).
The two outputs (each with its own projection) are concatenated along channels, as in LITv2.

Odd sizes: Hi-Fi pads the map to a multiple of s and masks the padded keys, so a window at the border attends only
to real positions; Lo-Fi pools with ceil_mode, whose border windows average only the real positions; the output is
cropped back. Lo-Fi uses torch's scaled_dot_product_attention; Hi-Fi too, except on the CPU for small windows
(see hifi).

Layout: (B, H, W, C) in and out (the FSA block passes a permuted view of its channels-last map, so no copy).
Speed (CPU, 2×2 windows): copy-free variants of Hi-Fi (the linear on the map, then strided window views and
elementwise 4×4 scores) measured slower than one window copy; on the copied windows two small matmuls and a softmax
beat the fused SDPA kernel ~1.5× (its per-sequence overhead dominates 4-token sequences). Lo-Fi's SDPA is the
branch's cost at stage 1 (224 px: 3136 queries × 784 pooled keys); there the fused kernel beats the matmuls.
With window 1 and alpha 1 this is plain multi-head self-attention; with alpha 0 and one window covering the whole
map it is too (both tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class HiLoAttention(nn.Module):
    # Hi-Fi's small-window matmul path on the CPU (see hifi); benchmarks turn it off to time the fused kernel.
    cpu_window_matmuls: bool = True

    def __init__(self, dim: int, heads: int, *, window: int = 2, alpha: float = 0.5, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        head_dim = dim // heads
        self.window = window
        self.head_dim = head_dim
        self.l_heads = int(heads * alpha)
        self.h_heads = heads - self.l_heads
        self.l_dim = self.l_heads * head_dim
        self.h_dim = self.h_heads * head_dim
        if self.l_heads:
            self.l_q = nn.Linear(dim, self.l_dim, bias=qkv_bias)
            self.l_kv = nn.Linear(dim, self.l_dim * 2, bias=qkv_bias)
            self.l_proj = nn.Linear(self.l_dim, self.l_dim)
        if self.h_heads:
            self.h_qkv = nn.Linear(dim, self.h_dim * 3, bias=qkv_bias)
            self.h_proj = nn.Linear(self.h_dim, self.h_dim)

    def hifi(self, x: torch.Tensor, *, sdpa: bool | None = None) -> torch.Tensor:
        """sdpa: attend with torch's scaled_dot_product_attention (True) or with two small matmuls and a softmax
        (False); None chooses: the matmuls on the CPU for windows of up to 16 tokens (unless the class attribute
        cpu_window_matmuls is off), where the fused kernel's per-sequence overhead dominates (2×2 windows, 224 px,
        batch 8, over the ten blocks: 77 ms with the kernel, 50 ms with the matmuls; bench_models --breakdown)."""
        b, h, w, c = x.shape
        s = self.window
        pad_h, pad_w = (-h) % s, (-w) % s
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        gh, gw = hp // s, wp // s
        # (B, gh, s, gw, s, C) -> (B, gh, gw, s·s, C): one row of tokens per window.
        windows = x.reshape(b, gh, s, gw, s, c).transpose(2, 3).reshape(b, gh * gw, s * s, c)
        qkv = self.h_qkv(windows).reshape(b, gh * gw, s * s, 3, self.h_heads, self.head_dim)
        flat = (b * gh * gw, self.h_heads, s * s, self.head_dim)
        q, k, v = (t.reshape(flat) for t in qkv.permute(3, 0, 1, 4, 2, 5).unbind(0))  # (B·G, heads, s·s, d)
        key_mask = None
        if pad_h or pad_w:
            valid = torch.zeros(hp, wp, dtype=torch.bool, device=x.device)
            valid[:h, :w] = True
            key_mask = valid.reshape(gh, s, gw, s).transpose(1, 2).reshape(1, gh * gw, 1, 1, s * s)
            key_mask = key_mask.expand(b, -1, -1, -1, -1).reshape(b * gh * gw, 1, 1, s * s)
        if sdpa is None:
            sdpa = x.device.type != "cpu" or s * s > 16 or not self.cpu_window_matmuls
        if sdpa:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
            if key_mask is not None:  # every window keeps its top-left key, so no row is all -inf
                scores = scores.masked_fill(~key_mask, float("-inf"))
            out = scores.softmax(dim=-1) @ v
        out = out.reshape(b, gh, gw, self.h_heads, s, s, self.head_dim)
        # (B, gh, gw, heads, s, s, d) -> (B, gh, s, gw, s, heads·d)
        out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, self.h_dim)
        return self.h_proj(out[:, :h, :w])

    def lofi(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q = self.l_q(x).reshape(b, h * w, self.l_heads, self.head_dim).transpose(1, 2)
        pooled = x
        if self.window > 1:
            pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), self.window, self.window, ceil_mode=True)
            pooled = pooled.permute(0, 2, 3, 1)
        kv = self.l_kv(pooled).reshape(b, -1, 2, self.l_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])  # (B, heads, H·W, d)
        return self.l_proj(out.transpose(1, 2).reshape(b, h, w, self.l_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.h_heads:
            return self.lofi(x)
        if not self.l_heads:
            return self.hifi(x)
        return torch.cat((self.hifi(x), self.lofi(x)), dim=-1)
