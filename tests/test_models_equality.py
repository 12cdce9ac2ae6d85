"""The fast (channels-last, fused) image branch computes the same function as a straightforward reading of its
definition: values and gradients, train and eval mode, float32, against reference modules written here in the
textbook NCHW layout with explicit loops over the four top-k masks, explicit windows and explicit softmaxes.

The references hold the same parameters under the same names (so one state dict loads into both, as the existing
checkpoints load into the new modules)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from f2b_study.models import create_model, onednn
from f2b_study.models.fsa import FSABlock, ImageBranch
from f2b_study.models.hilo import HiLoAttention
from f2b_study.models.topk_attention import TopKChannelAttention, channel_gram

torch.set_num_threads(1)

TOL = {"rtol": 1e-5, "atol": 1e-5}
# Gradients sum over every position and batch element (and, in train mode, pass through BatchNorm's centring), so
# float32 reordering shows up more there: they are compared relative to the tensor's scale, max|a − b| <= 1e-4 ·
# max|b| (+1e-6). The float64 runs repeat every comparison at 1e-6 (not tighter: the top-k softmax works in
# float32 by design, see mixed_topk_softmax).
GRAD_SCALE_TOL, F64_TOL = 1e-4, 1e-6


def assert_grad_close(fast: torch.Tensor, ref: torch.Tensor, scale_tol: float, name: str) -> None:
    gap, scale = (fast - ref).abs().max().item(), ref.abs().max().item()
    assert gap <= scale_tol * scale + 1e-6, f"{name}: max gap {gap:.3g} > {scale_tol:g} × max|grad| {scale:.3g}"


# --- reference modules (same parameter names as the fast ones) -------------------------------------------------

class RefTKSA(nn.Module):
    """DRSformer's TKSA as written in its paper/code: normalise q, k over space, four topk masks, four softmaxes,
    four matmuls with V, weighted sum, 1×1 output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)
        self.mix = nn.Parameter(torch.full((4,), 0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = c // self.heads
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q = F.normalize(q.reshape(b, self.heads, n, h * w), dim=-1)
        k = F.normalize(k.reshape(b, self.heads, n, h * w), dim=-1)
        v = v.reshape(b, self.heads, n, h * w)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = 0
        for i, k_i in enumerate((int(n / 2), int(n * 2 / 3), int(n * 3 / 4), int(n * 4 / 5))):
            mask = torch.zeros_like(attn).scatter_(-1, torch.topk(attn, k=k_i, dim=-1)[1], 1.0)
            masked = torch.where(mask > 0, attn, torch.full_like(attn, float("-inf")))
            out = out + (masked.softmax(dim=-1) @ v) * self.mix[i]
        return self.project_out(out.reshape(b, c, h, w))


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       key_mask: torch.Tensor | None = None) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
    return scores.softmax(-1) @ v


class RefHiLo(nn.Module):
    """LITv2's HiLo on a (B, H, W, C) map: Hi-Fi = attention inside each zero-padded s×s window (padded keys
    masked), Lo-Fi = attention to the s×s average-pooled map (ceil mode); explicit softmax attention."""

    def __init__(self, dim: int, heads: int, window: int = 2, alpha: float = 0.5) -> None:
        super().__init__()
        self.window, self.head_dim = window, dim // heads
        self.l_heads = int(heads * alpha)
        self.h_heads = heads - self.l_heads
        self.l_dim, self.h_dim = self.l_heads * self.head_dim, self.h_heads * self.head_dim
        if self.l_heads:
            self.l_q = nn.Linear(dim, self.l_dim, bias=False)
            self.l_kv = nn.Linear(dim, self.l_dim * 2, bias=False)
            self.l_proj = nn.Linear(self.l_dim, self.l_dim)
        if self.h_heads:
            self.h_qkv = nn.Linear(dim, self.h_dim * 3, bias=False)
            self.h_proj = nn.Linear(self.h_dim, self.h_dim)

    def split(self, t: torch.Tensor, heads: int) -> torch.Tensor:  # (..., L, heads·d) -> (..., heads, L, d)
        return t.unflatten(-1, (heads, self.head_dim)).transpose(-3, -2)

    def hifi(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        s = self.window
        hp, wp = math.ceil(h / s) * s, math.ceil(w / s) * s
        padded = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        device = x.device
        valid = F.pad(torch.ones(h, w, dtype=torch.bool, device=device), (0, wp - w, 0, hp - h))
        out = torch.zeros(b, hp, wp, self.h_dim, dtype=x.dtype, device=device)
        for i in range(0, hp, s):
            for j in range(0, wp, s):
                tokens = padded[:, i:i + s, j:j + s].reshape(b, s * s, c)
                q, k, v = (self.split(t, self.h_heads) for t in self.h_qkv(tokens).chunk(3, dim=-1))
                mask = valid[i:i + s, j:j + s].reshape(1, 1, 1, s * s)
                att = explicit_attention(q, k, v, mask).transpose(1, 2).reshape(b, s, s, self.h_dim)
                out = out.index_put((torch.arange(b, device=device)[:, None, None],
                                     torch.arange(i, i + s, device=device)[None, :, None],
                                     torch.arange(j, j + s, device=device)[None, None, :]), att)
        return self.h_proj(out[:, :h, :w])

    def lofi(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s = self.window
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), s, s, ceil_mode=True).flatten(2).transpose(1, 2)
        k, v = (self.split(t, self.l_heads) for t in self.l_kv(pooled).chunk(2, dim=-1))
        q = self.split(self.l_q(x.reshape(b, h * w, -1)), self.l_heads)
        out = explicit_attention(q, k, v).transpose(1, 2).reshape(b, h, w, self.l_dim)
        return self.l_proj(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = ([self.hifi(x)] if self.h_heads else []) + ([self.lofi(x)] if self.l_heads else [])
        return torch.cat(parts, dim=-1)


class RefLayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # over channels of a contiguous NCHW map
        return F.layer_norm(x.permute(0, 2, 3, 1).contiguous(), self.normalized_shape, self.weight,
                            self.bias, self.eps).permute(0, 3, 1, 2).contiguous()


class RefFFN(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = round(dim * ratio)
        self.fc1, self.fc2 = nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, dim, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x))))


class RefFSABlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int = 2, alpha: float = 0.5, ffn_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1, self.sparse = RefLayerNorm2d(dim), RefTKSA(dim, heads)
        self.norm2, self.hilo = nn.LayerNorm(dim), RefHiLo(dim, heads, window, alpha)
        self.norm3, self.ffn = RefLayerNorm2d(dim), RefFFN(dim, ffn_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sparse(self.norm1(x))
        y = x.permute(0, 2, 3, 1).contiguous()
        x = x + self.hilo(self.norm2(y)).permute(0, 3, 1, 2).contiguous()
        return x + self.ffn(self.norm3(x))


class RefDownsample(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.norm, self.conv = RefLayerNorm2d(dim_in), nn.Conv2d(dim_in, dim_out, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        h, w = x.shape[-2:]
        return self.conv(F.pad(x, (0, w % 2, 0, h % 2), mode="replicate"))


class RefImageBranch(nn.Module):
    def __init__(self, dims, depths, heads) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0] // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(dims[0] // 2),
                                  nn.GELU(), nn.Conv2d(dims[0] // 2, dims[0], 3, 2, 1))
        self.stages = nn.ModuleList(
            nn.Sequential(*([] if i == 0 else [RefDownsample(dims[i - 1], dim)]),
                          *(RefFSABlock(dim, n) for _ in range(depth)))
            for i, (dim, depth, n) in enumerate(zip(dims, depths, heads, strict=True)))
        self.norm = RefLayerNorm2d(dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous())
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)


# --- helpers ----------------------------------------------------------------------------------------------------

def paired(fast: nn.Module, ref: nn.Module, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Random, non-default weights in `fast` (mix weights, temperatures, norms' affine too), copied into `ref`."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in fast.named_parameters():
            if name.endswith("mix"):
                p.copy_(torch.tensor([0.7, -0.3, 0.5, 0.1]))
            elif name.endswith("temperature"):
                p.copy_(torch.rand_like(p) * 3 + 0.3)
            else:
                p.add_(torch.randn_like(p) * 0.1)
    missing, unexpected = ref.load_state_dict(fast.state_dict(), strict=True)
    assert not missing and not unexpected
    return fast, ref


def values_and_grads(module: nn.Module, x: torch.Tensor, train: bool) -> tuple[torch.Tensor, ...]:
    module.train(train)
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    # an asymmetric loss: every output matters
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return out.detach(), x.grad.clone(), grads


def assert_same(fast: nn.Module, ref: nn.Module, x: torch.Tensor, train: bool) -> None:
    """float32: values to 1e-5, gradients to GRAD_SCALE_TOL of their scale; float64: both to F64_TOL."""
    for dtype, tol, grad_tol in ((torch.float32, TOL, GRAD_SCALE_TOL),
                                 (torch.float64, {"rtol": F64_TOL, "atol": F64_TOL}, F64_TOL)):
        fast, ref = fast.to(dtype), ref.to(dtype)
        out_f, gx_f, gp_f = values_and_grads(fast, x.to(dtype), train)
        out_r, gx_r, gp_r = values_and_grads(ref, x.to(dtype), train)
        torch.testing.assert_close(out_f, out_r, **tol)
        assert_grad_close(gx_f, gx_r, grad_tol, "input")
        assert set(gp_f) == set(gp_r) and gp_f
        for name in gp_r:
            assert_grad_close(gp_f[name], gp_r[name], grad_tol, name)
    fast.float(), ref.float()


# --- the tests --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("dim", "heads", "size"), [(48, 2, (6, 6)), (40, 4, (5, 7)), (24, 1, (1, 3))])
def test_topk_attention_equals_drsformer_reference(dim: int, heads: int, size: tuple[int, int], train: bool) -> None:
    fast, ref = paired(TopKChannelAttention(dim, heads), RefTKSA(dim, heads))
    x = torch.randn(3, dim, *size)
    assert_same(fast, ref, x, train)
    # channels-last input: same numbers
    torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), ref(x), **TOL)


@pytest.mark.parametrize("window_matmuls", [True, False])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(("heads", "alpha", "size"), [(4, 0.5, (6, 8)), (4, 0.5, (5, 7)), (2, 0.5, (1, 1)),
                                                      (4, 0.25, (3, 4)), (2, 1.0, (4, 4)), (2, 0.0, (3, 5))])
def test_hilo_equals_explicit_window_reference(heads: int, alpha: float, size: tuple[int, int], train: bool,
                                               window_matmuls: bool, monkeypatch) -> None:
    # both Hi-Fi paths on the CPU: the small-window matmuls (default) and the fused SDPA kernel
    monkeypatch.setattr(HiLoAttention, "cpu_window_matmuls", window_matmuls)
    fast, ref = paired(HiLoAttention(32, heads, alpha=alpha), RefHiLo(32, heads, alpha=alpha))
    x = torch.randn(2, *size, 32)
    assert_same(fast, ref, x, train)
    # the FSA block hands HiLo a permuted view of a channels-last map
    view = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
    torch.testing.assert_close(fast(view), ref(x), **TOL)


@pytest.mark.parametrize("train", [False, True])
def test_fsa_block_equals_reference(train: bool) -> None:
    fast, ref = paired(FSABlock(48, 2), RefFSABlock(48, 2))
    x = torch.randn(2, 48, 7, 6)
    assert_same(fast, ref, x, train)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("input_size", [64, 72])
def test_image_branch_equals_reference(input_size: int, train: bool) -> None:
    config = {"dims": (24, 48, 48, 96), "depths": (1, 2, 1, 1), "heads": (1, 2, 4, 4)}
    fast, ref = paired(ImageBranch(**config), RefImageBranch(**config))
    x = torch.randn(2, 3, input_size, input_size)
    assert_same(fast, ref, x, train)


def reference_face2bone(model: nn.Module, ref_branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Face2Bone's forward with the reference image branch and FaceNet on a contiguous NCHW input."""
    facenet = model.facenet
    face = F.interpolate(x, size=(facenet.size, facenet.size), mode="bilinear", align_corners=False, antialias=True)
    embedding = facenet.net((face * facenet.scale + facenet.shift).contiguous())
    return model.head(model.ssam(ref_branch(x), embedding))


@pytest.mark.parametrize("train", [False, True])
def test_face2bone_equals_reference_and_checkpoint_layout_is_unchanged(train: bool) -> None:
    config = {"dims": (24, 48, 48, 96), "depths": (1, 1, 1, 1), "heads": (1, 2, 2, 4), "ssam_heads": 4,
              "kan_hidden": (8,), "input_size": 64, "facenet_size": 96}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", **config)
    ref_branch = RefImageBranch(config["dims"], config["depths"], config["heads"])
    paired(model.image, ref_branch)
    # Parameter names and shapes: exactly those of the reference (the pre-speed-up layout the checkpoints hold).
    assert {n: p.shape for n, p in model.image.state_dict().items()} == \
        {n: p.shape for n, p in ref_branch.state_dict().items()}

    class Reference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.branch = model, ref_branch

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return reference_face2bone(self.model, self.branch, x)

    reference = Reference()
    x = torch.randn(3, 3, 64, 64)
    model.train(train)
    reference.train(train)
    out_f, gx_f, gp_f = values_and_grads(model, x, train)
    out_r, gx_r, gp_r = values_and_grads(reference, x, train)
    torch.testing.assert_close(out_f, out_r, **TOL)
    assert_grad_close(gx_f, gx_r, GRAD_SCALE_TOL, "input")
    renamed = {name.replace("branch.", "image.", 1).removeprefix("model."): g for name, g in gp_r.items()}
    assert set(renamed) == set(gp_f) and any(n.startswith("image.") for n in gp_f)
    for name, grad in gp_f.items():
        assert_grad_close(grad, renamed[name], GRAD_SCALE_TOL, name)
    if not train:
        # Inference (screening, Shapley, CRAFT): the gradient-free CPU paths (oneDNN's fused depthwise conv + GELU,
        # FaceNet's fused copy, Hi-Fi's matmuls) against the reference; and the same with oneDNN off.
        with torch.inference_mode():
            torch.testing.assert_close(model(x), out_r, **TOL)
            torch.testing.assert_close(model.image(x), ref_branch(x), **TOL)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(onednn, "AVAILABLE", False)
                torch.testing.assert_close(model(x), out_r, **TOL)


@pytest.mark.parametrize("per_image", [True, False])
def test_both_gram_paths_agree(per_image: bool) -> None:
    """The CPU's per-image loop and the batched kernel the GPU takes: the same Gram, values and gradients."""
    torch.manual_seed(6)
    tokens = torch.randn(3, 35, 3 * 40, requires_grad=True)
    q, k = tokens[..., :40], tokens[..., 40:80]
    gram = channel_gram(q, k, 4, per_image=per_image)
    expected = torch.einsum("bnhi,bnhj->bhij", q.detach().reshape(3, 35, 4, 10), k.detach().reshape(3, 35, 4, 10))
    torch.testing.assert_close(gram.detach(), expected, **TOL)
    gram.pow(2).sum().backward()
    grad = tokens.grad.clone()
    tokens.grad = None
    channel_gram(q, k, 4, per_image=not per_image).pow(2).sum().backward()
    torch.testing.assert_close(grad, tokens.grad, **TOL)


def test_topk_attention_on_the_gpu_path_equals_reference(monkeypatch) -> None:
    """The whole module with the batched Gram (what CUDA runs), against DRSformer's reference on the CPU."""
    from f2b_study.models import topk_attention

    batched = topk_attention.channel_gram
    monkeypatch.setattr(topk_attention, "channel_gram",
                        lambda q, k, heads, per_image: batched(q, k, heads, per_image=False))
    fast, ref = paired(TopKChannelAttention(40, 4), RefTKSA(40, 4))
    assert_same(fast, ref, torch.randn(2, 40, 5, 6), train=True)
