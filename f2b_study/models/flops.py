"""Parameter counts and FLOPs of registry models, without allocating weights.

Models are built on the meta device (shapes only), so even VGG19 costs nothing to inspect. FLOPs come from
torch.utils.flop_counter.FlopCounterMode, which counts 2 FLOPs per multiply-add of matmuls, convolutions and
attention (on the meta device scaled_dot_product_attention is counted too; on the CPU it is not). Elementwise
ops, softmax, normalisation and top-k are not counted, as in the usual model tables. `gmacs` = FLOPs / 2 / 1e9 is
the number vision papers call "GFLOPs" (ResNet34: 3.6).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def count_flops(model: nn.Module, input_size: int, batch: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one eval-mode forward pass of `batch` images, on the model's device."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(batch, 3, input_size, input_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def describe(name: str, config_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parameters and GFLOPs of one registry entry (meta device: no weights, no warnings)."""
    from f2b_study.models.registry import build_architecture, get_spec

    spec = get_spec(name)
    config = spec.config(**dict(config_overrides or {}))
    with torch.device("meta"):
        model = build_architecture(name, config)
        total, trainable = count_parameters(model)
        flops = count_flops(model, config["input_size"])
    return {"name": name, "params": total, "trainable_params": trainable, "gflops": flops / 1e9,
            "gmacs": flops / 2e9, "input_size": config["input_size"], "description": spec.description,
            "pretrained_weights_file": spec.weights_hint}
