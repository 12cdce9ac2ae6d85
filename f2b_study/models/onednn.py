"""oneDNN's fused convolution on the CPU (conv + bias + activation in one pass), where eager PyTorch runs them as
separate passes over memory.

torch.ops.mkldnn._convolution_pointwise is the op inductor emits for frozen CPU graphs; it is private, so every use
goes through here, is guarded by `available()` and falls back to eager ops where it is missing. Used only for
gradient-free float32 CPU forwards (`fusable`): the op has no autograd formula.
"""

from __future__ import annotations

import torch
from torch import nn


def _probe() -> bool:
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return bool(torch.backends.mkldnn.is_available() and hasattr(ops, "_convolution_pointwise")
                    and hasattr(ops, "_reorder_convolution_weight"))
    except (AttributeError, RuntimeError):
        return False


AVAILABLE = _probe()


def available() -> bool:
    return AVAILABLE


def cpu_inference(x: torch.Tensor) -> bool:
    """True for a forward on x that records no gradient, in float32 on the CPU, without autocast and not traced
    by torch.compile: where inference-only rewrites of a module (this op, FaceNet's fused copy) may run."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def fusable(x: torch.Tensor) -> bool:
    """True when a forward on x may use the fused op: oneDNN present and `cpu_inference(x)`."""
    return AVAILABLE and cpu_inference(x)


def conv_pointwise(x: torch.Tensor, conv: nn.Conv2d, activation: str = "none", *,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """activation(conv(x)) in one oneDNN call; activation "none", "relu" or "gelu" (the exact, erf form, as
    F.gelu's default). weight: a weight already reordered by `pack_weight` instead of the conv's."""
    x = x.contiguous(memory_format=torch.channels_last)
    weight = conv.weight if weight is None else weight
    algorithm = "none" if activation == "gelu" else ""
    return torch.ops.mkldnn._convolution_pointwise(x, weight, conv.bias, list(conv.padding), list(conv.stride),
                                                   list(conv.dilation), conv.groups, activation, [], algorithm)


def pack_weight(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv's weight reordered once into the blocked layout oneDNN picks for inputs shaped like x (the layout does
    not depend on the batch size, measured: one pack serves every batch)."""
    return torch.ops.mkldnn._reorder_convolution_weight(conv.weight, list(conv.padding), list(conv.stride),
                                                        list(conv.dilation), conv.groups, list(x.shape))
