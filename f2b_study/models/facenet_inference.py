"""An inference-only copy of facenet-pytorch's InceptionResnetV1: the same function in fewer passes over memory.

FaceNet is most of Face2Bone's CPU time at inference (and ~85 % of region Shapley's, which runs it on every
coalition's composite), and it never trains in the default configuration. Its eval-mode forward is rewritten here,
from the loaded weights, as:
- every BatchNorm folded into the conv before it (torch.nn.utils.fusion.fuse_conv_bn_eval), last_bn into
  last_linear (fuse_linear_bn_eval); ReLU applied in place;
- the parallel 1×1 convs that open each Inception block read the same input: merged into one conv whose output is
  split by channels;
- each residual block's scale folded into its up-projection's weight and bias;
- on the CPU, conv weights reordered once into oneDNN's blocked layout and each conv run with its ReLU fused
  (onednn.py: the op inductor emits for a frozen CPU graph), instead of eager's reorder on every call. Where that
  op is missing, the plain conv and an in-place ReLU.

Written by hand because the library routes do not fit: torch.compile does these fusions but takes about a minute
per input shape on 2 cores, and torch.jit.trace + optimize_for_inference measured no faster than eager here.
Equal to the original up to float32 rounding (tests/test_facenet_inference.py: ≤ 1e-5 on the L2-normalised
embedding, with non-trivial BatchNorm statistics).

    net = build_inference_net(inception_resnet_v1)   # eval-mode copy; the original is untouched
    with torch.inference_mode(): embedding = net(x)  # x (B, 3, 160, 160), FaceNet-normalised

FaceNetBranch uses it for gradient-free float32 CPU forwards (facenet.py); `plain_facenet()` turns it off (for
benchmarks and equality tests).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from f2b_study.models import onednn

_ENABLED = [True]


@contextlib.contextmanager
def plain_facenet() -> Iterator[None]:
    """Within this block FaceNetBranch runs facenet-pytorch's own forward (the reference)."""
    previous = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = previous


def fusion_enabled() -> bool:
    return _ENABLED[0]


class FusedConv(nn.Module):
    """conv (+ bias) (+ ReLU) with BatchNorm already folded in. On the CPU with oneDNN the weight is reordered once
    per input layout (channels, height, width) and the ReLU runs inside the convolution."""

    def __init__(self, conv: nn.Conv2d, *, relu: bool = True) -> None:
        super().__init__()
        self.conv = conv.requires_grad_(False)  # every conv here has a bias: BatchNorm's shift, or its own
        self.relu = relu
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if onednn.fusable(x):
            key = tuple(x.shape[1:])
            if key not in self._packed:
                self._packed[key] = onednn.pack_weight(self.conv, x)
            return onednn.conv_pointwise(x, self.conv, "relu" if self.relu else "none", weight=self._packed[key])
        out = self.conv(x)
        return torch.relu_(out) if self.relu else out


def _folded(basic: nn.Module) -> nn.Conv2d:
    """facenet-pytorch's BasicConv2d (conv, bn, relu) -> one conv with the BatchNorm folded in."""
    return fuse_conv_bn_eval(basic.conv, basic.bn)


def _merged(convs: Sequence[nn.Conv2d]) -> nn.Conv2d:
    """Convs of one input with the same geometry -> one conv whose output channels are theirs, concatenated."""
    first = convs[0]
    merged = nn.Conv2d(first.in_channels, sum(c.out_channels for c in convs), first.kernel_size, first.stride,
                       first.padding)
    merged.weight.data = torch.cat([c.weight.detach() for c in convs])
    merged.bias.data = torch.cat([c.bias.detach() for c in convs])  # type: ignore[union-attr]
    return merged


def _scaled(conv: nn.Conv2d, scale: float) -> nn.Conv2d:
    """scale · conv(x) as one conv: (scale·W) x + scale·b."""
    out = copy.deepcopy(conv)
    out.weight.data.mul_(scale)
    if out.bias is not None:
        out.bias.data.mul_(scale)
    return out


class _Branches(nn.Module):
    """A merged 1×1 opening conv split into branches, each continued by its own chain of convs."""

    def __init__(self, openings: Sequence[nn.Module], chains: Sequence[Sequence[nn.Module]]) -> None:
        super().__init__()
        self.opening = FusedConv(_merged([_folded(b) for b in openings]))
        self.widths = [b.conv.out_channels for b in openings]
        self.chains = nn.ModuleList(nn.Sequential(*(FusedConv(_folded(b)) for b in chain)) for chain in chains)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        parts = self.opening(x).split(self.widths, dim=1)
        return [chain(part) for chain, part in zip(self.chains, parts, strict=True)]


class _Residual(nn.Module):
    """Block35 / Block17 / Block8: relu(scale · up(cat(branches)) + x), the scale folded into up."""

    def __init__(self, block: nn.Module, openings: Sequence[nn.Module], chains: Sequence[Sequence[nn.Module]],
                 *, relu: bool = True) -> None:
        super().__init__()
        self.branches = _Branches(openings, chains)
        self.up = FusedConv(_scaled(block.conv2d, block.scale), relu=False)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.up(torch.cat(self.branches(x), dim=1)).add_(x)
        return torch.relu_(out) if self.relu else out


def _block35(block: nn.Module) -> _Residual:
    return _Residual(block, [block.branch0, block.branch1[0], block.branch2[0]],
                     [[], block.branch1[1:], block.branch2[1:]])


def _block17_or_8(block: nn.Module) -> _Residual:
    return _Residual(block, [block.branch0, block.branch1[0]], [[], block.branch1[1:]],
                     relu=not getattr(block, "noReLU", False))


class _Mixed6a(nn.Module):
    def __init__(self, mixed: nn.Module) -> None:
        super().__init__()
        self.branch0 = FusedConv(_folded(mixed.branch0))
        self.branch1 = nn.Sequential(*(FusedConv(_folded(b)) for b in mixed.branch1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), F.max_pool2d(x, 3, stride=2)), dim=1)


class _Mixed7a(nn.Module):
    def __init__(self, mixed: nn.Module) -> None:
        super().__init__()
        self.branches = _Branches([mixed.branch0[0], mixed.branch1[0], mixed.branch2[0]],
                                  [mixed.branch0[1:], mixed.branch1[1:], mixed.branch2[1:]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((*self.branches(x), F.max_pool2d(x, 3, stride=2)), dim=1)


class InferenceInceptionResnetV1(nn.Module):
    """InceptionResnetV1(classify=False) in eval mode, fused (see the module docstring). Input (B, 3, H, W) in
    FaceNet's normalisation; output the (B, 512) L2-normalised embedding."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if getattr(net, "classify", False):
            raise ValueError("only the embedding network (classify=False) has an inference copy")
        net = copy.deepcopy(net).eval()  # fuse_* read eval statistics; the caller's network stays as it is
        self.stem = nn.Sequential(FusedConv(_folded(net.conv2d_1a)), FusedConv(_folded(net.conv2d_2a)),
                                  FusedConv(_folded(net.conv2d_2b)))
        self.stem2 = nn.Sequential(FusedConv(_folded(net.conv2d_3b)), FusedConv(_folded(net.conv2d_4a)),
                                   FusedConv(_folded(net.conv2d_4b)))
        self.blocks = nn.Sequential(*(_block35(b) for b in net.repeat_1), _Mixed6a(net.mixed_6a),
                                    *(_block17_or_8(b) for b in net.repeat_2), _Mixed7a(net.mixed_7a),
                                    *(_block17_or_8(b) for b in net.repeat_3), _block17_or_8(net.block8))
        self.last = fuse_linear_bn_eval(net.last_linear, net.last_bn)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem2(F.max_pool2d(self.stem(x), 3, stride=2))
        x = self.blocks(x).mean(dim=(2, 3))  # adaptive average pool to 1×1, flattened; dropout is off in eval
        return F.normalize(self.last(x), p=2, dim=1)


def weights_key(modules: Sequence[nn.Module]) -> tuple[tuple[int, int], ...] | None:
    """(address, version) of every parameter and buffer held by `modules` (the network's module list): changes
    whenever one is replaced (set on its module, or moved by .to()) or modified in place (load_state_dict, an
    optimiser step), and the inference copy is rebuilt then. None when a tensor was created under
    torch.inference_mode: such tensors keep no version counter, so a change could not be seen.
    Reads the modules' own dicts (~0.4 ms for FaceNet's 714 tensors; nn.Module.parameters() takes ~3 ms)."""
    try:
        return tuple((t.data_ptr(), t._version) for module in modules
                     for tensors in (module._parameters, module._buffers) for t in tensors.values() if t is not None)
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None


def build_inference_net(net: nn.Module) -> InferenceInceptionResnetV1:
    """The fused eval-mode copy of an InceptionResnetV1 (no gradients; built outside inference mode so it can be
    used under torch.no_grad as well)."""
    with torch.inference_mode(False), torch.no_grad():
        return InferenceInceptionResnetV1(net)
