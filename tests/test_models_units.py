"""Unit tests of the Face2Bone building blocks against obviously-correct references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.interpolate import BSpline

from f2b_study.models.hilo import HiLoAttention
from f2b_study.models.kan import KAN, GridNorm, KANLinear, b_spline_bases
from f2b_study.models.ssam import SSAM
from f2b_study.models.topk_attention import TopKChannelAttention, mixed_topk_softmax, topk_sizes

torch.set_num_threads(1)


# --- top-k sparse attention -----------------------------------------------------------------------------------

def test_topk_sizes_follow_drsformer() -> None:
    assert topk_sizes(48) == (24, 32, 36, 38)
    assert topk_sizes(24) == (12, 16, 18, 19)
    with pytest.raises(ValueError):
        topk_sizes(1)


@pytest.mark.parametrize("which", range(4))
def test_each_topk_mask_keeps_exactly_k_entries_per_row(which: int) -> None:
    torch.manual_seed(which)
    scores = torch.randn(2, 3, 24, 24)
    ks = topk_sizes(24)
    weights = torch.zeros(4)
    weights[which] = 1.0
    attention = mixed_topk_softmax(scores, ks, weights)
    kept = attention > 0
    assert (kept.sum(-1) == ks[which]).all()
    # The kept entries are the row's k largest, and they hold its softmax.
    threshold = scores.topk(ks[which], dim=-1).values[..., -1:]
    assert torch.equal(kept, scores >= threshold)
    expected = torch.where(kept, scores, torch.tensor(float("-inf"))).softmax(-1)
    torch.testing.assert_close(attention, expected)


def test_topk_masks_are_exact_with_ties() -> None:
    scores = torch.zeros(1, 1, 10, 10)  # every entry tied: topk still keeps exactly k
    attention = mixed_topk_softmax(scores, (5,), torch.ones(1))
    assert ((attention > 0).sum(-1) == 5).all()
    torch.testing.assert_close(attention.sum(-1), torch.ones(1, 1, 10))


def reference_tksa(module: TopKChannelAttention, x: torch.Tensor) -> torch.Tensor:
    """DRSformer's forward, literally: four topk calls, four scattered masks, four softmaxes, four matmuls."""
    b, c, h, w = x.shape
    heads = module.heads
    qkv = module.qkv_dwconv(module.qkv(x))
    q, k, v = qkv.chunk(3, dim=1)
    q = F.normalize(q.reshape(b, heads, c // heads, h * w), dim=-1)
    k = F.normalize(k.reshape(b, heads, c // heads, h * w), dim=-1)
    v = v.reshape(b, heads, c // heads, h * w)
    n = c // heads
    attn = (q @ k.transpose(-2, -1)) * module.temperature
    out = 0
    for i, k_i in enumerate((int(n / 2), int(n * 2 / 3), int(n * 3 / 4), int(n * 4 / 5))):
        mask = torch.zeros_like(attn)
        mask.scatter_(-1, torch.topk(attn, k=k_i, dim=-1, largest=True)[1], 1.0)
        masked = torch.where(mask > 0, attn, torch.full_like(attn, float("-inf")))
        out = out + (masked.softmax(dim=-1) @ v) * module.mix[i]
    return module.project_out(out.reshape(b, c, h, w))


def test_tksa_equals_drsformer_reference_in_value_and_gradient() -> None:
    torch.manual_seed(0)
    module = TopKChannelAttention(24, 2).double()
    with torch.no_grad():
        module.mix.copy_(torch.tensor([0.7, -0.3, 0.5, 0.1]))
        module.temperature.copy_(torch.tensor([3.0, 0.5]).reshape(2, 1, 1))
    x = torch.randn(2, 24, 5, 7, dtype=torch.float64, requires_grad=True)

    def value_and_grads(fn):
        module.zero_grad()
        x.grad = None
        out = fn(module, x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
        return out.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in module.named_parameters()}

    fast, fast_x, fast_p = value_and_grads(lambda m, t: m(t))
    ref, ref_x, ref_p = value_and_grads(reference_tksa)
    # The fast path works in float32 (bf16 inputs on GPU), hence float32 tolerances.
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_x, ref_x, rtol=1e-4, atol=1e-5)
    for name in ref_p:
        torch.testing.assert_close(fast_p[name], ref_p[name], rtol=1e-4, atol=1e-5, msg=name)


# --- HiLo -----------------------------------------------------------------------------------------------------

def plain_attention(x: torch.Tensor, q_proj, k_proj, v_proj, out_proj, heads: int) -> torch.Tensor:
    """Textbook multi-head self-attention over all positions of a (B, H, W, C) map."""
    b, h, w, _ = x.shape
    tokens = x.reshape(b, h * w, -1)
    q, k, v = q_proj(tokens), k_proj(tokens), v_proj(tokens)
    d = q.shape[-1] // heads
    split = lambda t: t.reshape(b, h * w, heads, d).transpose(1, 2)  # noqa: E731
    weights = (split(q) @ split(k).transpose(-2, -1) / math.sqrt(d)).softmax(-1)
    out = (weights @ split(v)).transpose(1, 2).reshape(b, h, w, heads * d)
    return out_proj(out)


def test_hilo_with_window_1_and_alpha_1_is_plain_attention() -> None:
    torch.manual_seed(1)
    module = HiLoAttention(16, 4, window=1, alpha=1.0)
    assert module.h_heads == 0
    x = torch.randn(2, 5, 3, 16)
    c = module.l_dim
    expected = plain_attention(x, module.l_q, lambda t: F.linear(t, module.l_kv.weight[:c]),
                               lambda t: F.linear(t, module.l_kv.weight[c:]), module.l_proj, 4)
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


def test_hilo_with_alpha_0_and_one_window_over_the_map_is_plain_attention() -> None:
    torch.manual_seed(2)
    module = HiLoAttention(16, 4, window=4, alpha=0.0)
    assert module.l_heads == 0
    x = torch.randn(2, 4, 4, 16)
    c = module.h_dim
    weight = module.h_qkv.weight
    expected = plain_attention(x, lambda t: F.linear(t, weight[:c]), lambda t: F.linear(t, weight[c:2 * c]),
                               lambda t: F.linear(t, weight[2 * c:]), module.h_proj, 4)
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


def reference_hifi_lofi(module: HiLoAttention, x: torch.Tensor) -> torch.Tensor:
    """Loops: each position attends within its s×s window (real positions only) / to s×s block means."""
    b, h, w, _ = x.shape
    s, d = module.window, module.head_dim
    hi_q, hi_k, hi_v = module.h_qkv(x).split(module.h_dim, dim=-1)
    lo_q = module.l_q(x)
    blocks = [(i, j) for i in range(0, h, s) for j in range(0, w, s)]
    pooled = torch.stack([x[:, i:i + s, j:j + s].mean(dim=(1, 2)) for i, j in blocks], dim=1)  # (B, n, C)
    lo_k, lo_v = module.l_kv(pooled).split(module.l_dim, dim=-1)
    hi_out = torch.zeros(b, h, w, module.h_dim)
    lo_out = torch.zeros(b, h, w, module.l_dim)
    for i in range(h):
        for j in range(w):
            wi, wj = i - i % s, j - j % s
            keys = [(a, c) for a in range(wi, min(wi + s, h)) for c in range(wj, min(wj + s, w))]
            for head in range(module.h_heads):
                sl = slice(head * d, (head + 1) * d)
                kk = torch.stack([hi_k[:, a, c, sl] for a, c in keys], 1)
                vv = torch.stack([hi_v[:, a, c, sl] for a, c in keys], 1)
                att = ((kk @ hi_q[:, i, j, sl].unsqueeze(-1)).squeeze(-1) / math.sqrt(d)).softmax(-1)
                hi_out[:, i, j, sl] = (att.unsqueeze(-1) * vv).sum(1)
            for head in range(module.l_heads):
                sl = slice(head * d, (head + 1) * d)
                att = ((lo_k[..., sl] @ lo_q[:, i, j, sl].unsqueeze(-1)).squeeze(-1) / math.sqrt(d)).softmax(-1)
                lo_out[:, i, j, sl] = (att.unsqueeze(-1) * lo_v[..., sl]).sum(1)
    return torch.cat((module.h_proj(hi_out), module.l_proj(lo_out)), dim=-1)


@pytest.mark.parametrize("size", [(4, 6), (5, 7), (3, 3), (1, 2)])
def test_hilo_matches_loop_reference_including_odd_sizes(size: tuple[int, int]) -> None:
    torch.manual_seed(3)
    module = HiLoAttention(16, 4, window=2, alpha=0.5)
    x = torch.randn(2, *size, 16)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference_hifi_lofi(module, x), rtol=1e-5, atol=1e-5)


# --- KAN ------------------------------------------------------------------------------------------------------

def test_kan_layer_matches_scipy_bspline_evaluation() -> None:
    torch.manual_seed(4)
    layer = KANLinear(3, 2, grid_size=5, spline_order=3).double()
    with torch.no_grad():
        layer.spline_weight.normal_()
    x = torch.rand(50, 3, dtype=torch.float64) * 1.98 - 0.99  # inside the grid range
    out = layer(x).detach().numpy()
    knots = layer.knots.double().numpy()
    xs = x.numpy()
    silu = xs / (1 + np.exp(-xs))
    expected = np.zeros((50, 2))
    for o in range(2):
        for i in range(3):
            coefficients = (layer.spline_weight[o, i] * layer.spline_scaler[o, i]).detach().numpy()
            spline = BSpline(knots, coefficients, 3, extrapolate=False)(xs[:, i])
            expected[:, o] += layer.base_weight[o, i].item() * silu[:, i] + spline
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_bspline_bases_partition_unity_inside_the_grid() -> None:
    from f2b_study.models.kan import uniform_knots

    x = torch.linspace(-1, 0.999, 101, dtype=torch.float64).unsqueeze(-1)
    bases = b_spline_bases(x, uniform_knots(5, 3, (-1.0, 1.0)), 3)
    assert bases.shape == (101, 1, 8)
    torch.testing.assert_close(bases.sum(-1), torch.ones(101, 1, dtype=torch.float64))


def test_grid_norm_puts_every_input_inside_the_grid_range() -> None:
    norm = GridNorm(8)
    x = torch.randn(64, 8) * 1000 + 50
    y = norm(x)
    assert y.min() > -1 and y.max() < 1
    kan = KAN(8, [4], 3)
    out = kan(x)
    assert out.shape == (64, 3) and torch.isfinite(out).all()


# --- SSAM -----------------------------------------------------------------------------------------------------

def test_ssam_attention_sums_to_one_over_positions_and_pools_non_negative_values() -> None:
    torch.manual_seed(5)
    module = SSAM(16, embedding_dim=12, heads=4)
    features = torch.randn(3, 16, 5, 7)
    embedding = torch.randn(3, 12)
    attention = module.attention(features, embedding)
    assert attention.shape == (3, 4, 35)
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 4))
    values = module.values(features)
    assert (values >= 0).all()
    pooled = module(features, embedding)
    assert (pooled >= 0).all()
    # Explicit sum over positions, head by head.
    v = values.reshape(3, 4, 4, 35)
    expected = (v * attention.unsqueeze(2)).sum(-1).reshape(3, 16)
    torch.testing.assert_close(pooled, expected)
    # The face key decides the weighting: another embedding, other weights.
    assert not torch.allclose(attention, module.attention(features, torch.randn(3, 12)))


# --- the whole network on odd sizes ----------------------------------------------------------------------------

@pytest.mark.parametrize("input_size", [72, 100])
def test_face2bone_runs_on_odd_feature_map_sizes(input_size: int) -> None:
    from f2b_study.models import create_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", dims=(16, 16, 32, 32), depths=(1, 1, 1, 1), heads=(2, 2, 2, 2),
                             ssam_heads=2, kan_hidden=(8,), input_size=input_size, facenet_size=96).eval()
    x = torch.randn(2, 3, input_size, input_size)
    sizes: list[int] = []
    hooks = [stage.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for stage in model.image.stages]
    with torch.no_grad():
        logits = model(x)
    for hook in hooks:
        hook.remove()
    assert sizes == {72: [18, 9, 5, 3], 100: [25, 13, 7, 4]}[input_size]  # odd maps in HiLo and downsampling
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
