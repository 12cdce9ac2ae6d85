"""The image branch: four stages (Layer1–Layer4) of FSA blocks, or plain conv blocks for the no-FSA ablation.

FSA block (paper: "FSA (frequency sparse attention) module"; docs/methods.md) = three pre-norm residual sub-layers:
    x = x + TKSA(LN(x))     top-k sparse transposed channel attention (topk_attention.py)
    x = x + HiLo(LN(x))     high/low-frequency attention (hilo.py)
    x = x + FFN(LN(x))      1×1 conv -> 3×3 depthwise conv -> GELU -> 1×1 conv
LN is a LayerNorm over channels at every position. The paper cascades the sparse attention into the frequency
attention ("high/low-frequency components in the sparse feature map are processed separately"), hence the order.

Stem: two 3×3 stride-2 convs (224 -> 56). Between stages: LN + 2×2 stride-2 conv (pads odd maps first, so 7×7 ->
4×4 and nothing is dropped). After the last stage: LN. The output F (B, dims[-1], H/32, W/32) goes to SSAM.

Memory layout: the branch converts its input to channels-last once; every sub-layer keeps that layout, so the
LayerNorms, HiLo and the top-k attention read (B, H, W, C) views without copies.

Plain conv block (no-FSA ablation): ResNet's basic block (3×3 conv-BN-ReLU-3×3 conv-BN + identity, ReLU), same
widths and depths, same stem and downsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from f2b_study.models import onednn
from f2b_study.models.hilo import HiLoAttention
from f2b_study.models.topk_attention import TopKChannelAttention


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (a view permute; free for channels_last tensors)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvFFN(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = round(dim * ratio)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)
        if onednn.fusable(hidden):  # depthwise conv and GELU in one pass over the widest map (~1.4× on the CPU)
            return self.fc2(onednn.conv_pointwise(hidden, self.dwconv, "gelu"))
        return self.fc2(F.gelu(self.dwconv(hidden)))


class FSABlock(nn.Module):
    def __init__(self, dim: int, heads: int, *, window: int = 2, alpha: float = 0.5, ffn_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.sparse = TopKChannelAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.hilo = HiLoAttention(dim, heads, window=window, alpha=alpha)
        self.norm3 = LayerNorm2d(dim)
        self.ffn = ConvFFN(dim, ffn_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sparse(self.norm1(x))
        y = x.permute(0, 2, 3, 1)  # HiLo works on (B, H, W, C)
        y = y + self.hilo(self.norm2(y))
        x = y.permute(0, 3, 1, 2)
        return x + self.ffn(self.norm3(x))


class ConvBlock(nn.Module):
    """ResNet basic block at constant width (the no-FSA ablation)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class Downsample(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim_in)
        self.conv = nn.Conv2d(dim_in, dim_out, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        return self.conv(x)


class ImageBranch(nn.Module):
    """Stem + four stages; `block` = "fsa" (Face2Bone) or "conv" (no-FSA ablation). (B, 3, H, W) -> F."""

    def __init__(self, *, dims: Sequence[int], depths: Sequence[int], heads: Sequence[int], block: str = "fsa",
                 window: int = 2, alpha: float = 0.5, ffn_ratio: float = 2.0) -> None:
        super().__init__()
        if not (len(dims) == len(depths) == len(heads)) or not dims:
            raise ValueError(f"dims, depths and heads need one entry per stage: {dims}, {depths}, {heads}")
        if block not in ("fsa", "conv"):
            raise ValueError(f"block must be 'fsa' or 'conv', got {block!r}")
        self.out_channels = dims[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(3, dims[0] // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(dims[0] // 2), nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1))
        stages: list[nn.Module] = []
        for i, (dim, depth, n_heads) in enumerate(zip(dims, depths, heads, strict=True)):
            layers: list[nn.Module] = [] if i == 0 else [Downsample(dims[i - 1], dim)]
            for _ in range(depth):
                if block == "fsa":
                    layers.append(FSABlock(dim, n_heads, window=window, alpha=alpha, ffn_ratio=ffn_ratio))
                else:
                    layers.append(ConvBlock(dim))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.norm = LayerNorm2d(dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last throughout: LayerNorm, HiLo and the top-k attention read the map as (B, H, W, C) views,
        # and oneDNN's depthwise and 1×1 convolutions are several times faster in this layout on the CPU.
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)
