"""Kolmogorov–Arnold network head (paper: "Kolmogorov-Arnold networks", eqs. 13–18).

Written by hand: pykan is a research package with heavy dependencies and grid-update machinery we do not use,
and efficient-kan is not published on PyPI; the layer is ~60 lines. It follows efficient-kan (Blealtan): each
edge is φ(x) = w_b·silu(x) + w_s·Σ_i c_i B_i(x), with B_i the cubic B-splines on a uniform grid of `grid_size`
intervals over `grid_range`, extended by `spline_order` knots on each side (so there are grid_size + spline_order
basis functions and they sum to 1 everywhere inside `grid_range`).

Inputs normalised into the grid range: every KAN layer first applies LayerNorm (scale-free: the SSAM output's
magnitude drifts during training) and then tanh, which maps R monotonically and smoothly onto (-1, 1) = the grid
range. So no input ever falls outside the grid, where the spline part would be silently zero or only partly
supported, and the map stays differentiable (a clamp would kill gradients at the edges). LayerNorm output is
roughly N(0, 1), where tanh keeps good resolution (|x| < 2 covers 96 % of the range).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def uniform_knots(grid_size: int, spline_order: int, grid_range: tuple[float, float]) -> torch.Tensor:
    """The extended uniform knot vector: grid_size + 2·spline_order + 1 knots."""
    low, high = grid_range
    step = (high - low) / grid_size
    return torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float64) * step + low


def b_spline_bases(x: torch.Tensor, knots: torch.Tensor, spline_order: int) -> torch.Tensor:
    """Cox–de Boor recursion. x: (..., n_in); knots: (n_knots,). Returns (..., n_in, n_knots - 1 - spline_order)."""
    x = x.unsqueeze(-1)
    t = knots.to(x.dtype)
    # Order 0: indicator of the half-open knot interval [t_i, t_{i+1}).
    bases = ((x >= t[:-1]) & (x < t[1:])).to(x.dtype)
    for k in range(1, spline_order + 1):
        left = (x - t[: -(k + 1)]) / (t[k:-1] - t[: -(k + 1)]) * bases[..., :-1]
        right = (t[k + 1:] - x) / (t[k + 1:] - t[1:-k]) * bases[..., 1:]
        bases = left + right
    return bases


class KANLinear(nn.Module):
    """One KAN layer n_in -> n_out: base SiLU branch + B-spline branch per edge (no input normalisation)."""

    def __init__(self, in_features: int, out_features: int, *, grid_size: int = 5, spline_order: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), spline_noise: float = 0.1) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.register_buffer("knots", uniform_knots(grid_size, spline_order, self.grid_range).float(),
                             persistent=False)
        n_bases = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, n_bases))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5))
        # efficient-kan fits the coefficients to small noise by least squares; small Gaussian coefficients give the
        # same start (a near-zero spline) without the lstsq.
        nn.init.normal_(self.spline_weight, std=spline_noise / grid_size)

    def bases(self, x: torch.Tensor) -> torch.Tensor:
        return b_spline_bases(x, self.knots, self.spline_order)

    def scaled_spline_weight(self) -> torch.Tensor:
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.in_features)
        base = F.linear(F.silu(x), self.base_weight)
        spline = F.linear(self.bases(x).reshape(x.shape[0], -1),
                          self.scaled_spline_weight().reshape(self.out_features, -1))
        return (base + spline).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, grid_size={self.grid_size}, "
                f"spline_order={self.spline_order}, grid_range={self.grid_range}")


class GridNorm(nn.Module):
    """LayerNorm then tanh: puts every input inside the KAN grid range (-1, 1) (see the module docstring)."""

    def __init__(self, features: int, grid_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features)
        self.low, self.high = float(grid_range[0]), float(grid_range[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = (self.high - self.low) / 2
        return torch.tanh(self.norm(x)) * half + (self.low + half)


class KAN(nn.Module):
    """Stacked KAN layers in_features -> *hidden -> out_features, each preceded by GridNorm."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *, grid_size: int = 5,
                 spline_order: int = 3, grid_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        widths = [in_features, *hidden, out_features]
        self.norms = nn.ModuleList(GridNorm(w, grid_range) for w in widths[:-1])
        self.layers = nn.ModuleList(
            KANLinear(a, b, grid_size=grid_size, spline_order=spline_order, grid_range=grid_range)
            for a, b in itertools.pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for norm, layer in zip(self.norms, self.layers, strict=True):
            x = layer(norm(x))
        return x


class MLPHead(nn.Module):
    """The no-KAN ablation's head: the same widths with Linear + GELU (LayerNorm on the input, as KAN has)."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int) -> None:
        super().__init__()
        widths = [in_features, *hidden, out_features]
        layers: list[nn.Module] = [nn.LayerNorm(in_features)]
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
