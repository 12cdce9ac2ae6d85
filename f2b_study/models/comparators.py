"""The paper's comparators (Table 2): torchvision's VGG16, VGG19, ResNet18, ResNet34 and ViT-B/16, 3-class heads.

The definitions are torchvision's own (`torchvision.models.<name>(num_classes=...)`). ImageNet weights come only
from a local file (`weights=PATH`: torchvision's release .pth, loaded with weights_only=True, or .safetensors):
every tensor except the 1000-class head must match; the head stays freshly initialised for our classes; sha256
recorded. ViT-B/16 takes its image size from input_size (a multiple of 16); ImageNet position embeddings are
interpolated to it (torchvision's interpolate_embeddings). Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from f2b_study.errors import InputError
from f2b_study.models.weights import load_matching, read_state_dict, sha256_file

log = logging.getLogger(__name__)

# The classification head's parameter prefix in torchvision's state dicts (replaced for our classes).
HEAD_PREFIX = {"vgg16": "classifier.6.", "vgg19": "classifier.6.", "resnet18": "fc.", "resnet34": "fc.",
               "vit_b_16": "heads.head."}
IMAGENET_FILES = {"vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth", "resnet18": "resnet18-f37072fd.pth",
                  "resnet34": "resnet34-b627a593.pth", "vit_b_16": "vit_b_16-c867db91.pth"}


def build_torchvision(arch: str, *, num_classes: int = 3, input_size: int = 224, **_preprocessing: Any) -> nn.Module:
    """torchvision's `arch` with a num_classes head (mean/std are preprocessing only and ignored here)."""
    import torchvision

    if arch not in HEAD_PREFIX:
        raise ValueError(f"unknown comparator {arch!r}")
    if arch == "vit_b_16":
        if input_size % 16:
            raise InputError(f"vit_b_16 input size {input_size}: expected a multiple of 16")
        return torchvision.models.vit_b_16(num_classes=num_classes, image_size=input_size)
    return getattr(torchvision.models, arch)(num_classes=num_classes)


def load_imagenet_weights(model: nn.Module, arch: str, source: str | Path | None) -> dict[str, Any]:
    """Load torchvision ImageNet weights from a local file into `model`; the provenance record."""
    if source is None:
        log.warning("%s: no ImageNet weights given (weights=FILE); training from random initialisation", arch)
        return {"source": "random-init"}
    path = Path(source)
    state = read_state_dict(path, f"{arch} ImageNet")
    head = HEAD_PREFIX[arch]
    if arch == "vit_b_16":
        from torchvision.models.vision_transformer import interpolate_embeddings

        image_size = model.image_size
        pos = state.get("encoder.pos_embedding")
        if pos is not None and pos.shape != model.encoder.pos_embedding.shape:
            state = interpolate_embeddings(image_size, 16, state)
    load_matching(model, state, path, f"{arch} ImageNet", ignore_prefixes=(head,), allow_missing_step_counters=True)
    return {"source": "file", "path": str(path.resolve()), "file": path.name, "sha256": sha256_file(path),
            "dataset": "ImageNet-1k"}
