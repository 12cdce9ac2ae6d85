"""The model registry (DESIGN §7): every architecture by name, with its preprocessing and default config.

    list_models() -> list[str]
    get_spec(name) -> ModelSpec            (InputError for an unknown name)
    create_model(name, num_classes=3, *, facenet_weights=None, weights=None, **overrides) -> nn.Module
    preprocessing(model_or_config) -> {"input_size", "mean", "std", "interpolation"}

Model input contract: a float tensor (B, 3, H, W) with H = W = the config's input_size (224 for every entry),
RGB in [0, 1] then normalised with the config's mean/std (ImageNet's for every entry: weights and transforms
travel together, as in timm/torchvision). Face2Bone derives its FaceNet input from this tensor itself.

Every model create_model returns carries:
    model.f2b_arch     the registry name
    model.f2b_config   the full builder kwargs (JSON-able; what a checkpoint stores and rebuilds from)
    model.f2b_weights  {"facenet": record | None, "imagenet": record | None}: where pretrained weights came from
                       (facenet.provenance(model) reads it)
Overrides are architecture kwargs (e.g. face2bone: dims, depths, heads, alpha, window, ffn_ratio, ssam_heads,
kan_hidden, kan_grid, kan_order, facenet_trainable, facenet_size, input_size); unknown names are an InputError.
`facenet_weights` (Face2Bone family: file | "cache" | "download" | None) and `weights` (comparators: a local
ImageNet file | None) name pretrained weights; they are not part of the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from f2b_study import CLASSES
from f2b_study.errors import InputError
from f2b_study.models import comparators
from f2b_study.models.face2bone import DEFAULTS, IMAGENET_MEAN, IMAGENET_STD, build_face2bone

INTERPOLATION = "bilinear"  # the paper resizes to 224×224 bilinearly


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]  # architecture only: builder(**config) -> randomly initialised model
    description: str
    family: str  # "face2bone" or "comparator"
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # architecture kwargs
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classes: tuple[str, ...] = CLASSES
    weights_hint: str = ""  # the pretrained file the user may pass

    def config(self, num_classes: int = 3, **overrides: Any) -> dict[str, Any]:
        """The full builder kwargs: defaults, preprocessing, num_classes, then overrides (validated)."""
        allowed = set(self.defaults) | {"input_size", "mean", "std", "num_classes"}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise InputError(f"model {self.name}: unknown setting(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(sorted(allowed))}")
        config = {"num_classes": num_classes, "input_size": self.input_size, "mean": self.mean, "std": self.std,
                  **self.defaults, **overrides}
        return _jsonable(config)


def _jsonable(value: Any) -> Any:
    """Tuples -> lists, recursively, so a config survives a JSON round trip unchanged."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _face2bone_spec(name: str, description: str, **switches: Any) -> ModelSpec:
    return ModelSpec(name=name, builder=build_face2bone, description=description, family="face2bone",
                     defaults={**DEFAULTS, **switches}, weights_hint="facenet: 20180402-114759-vggface2.pt")


def _comparator_spec(name: str, description: str) -> ModelSpec:
    def builder(**config: Any) -> nn.Module:
        return comparators.build_torchvision(name, **config)

    return ModelSpec(name=name, builder=builder, description=description, family="comparator",
                     weights_hint=comparators.IMAGENET_FILES[name])


_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    _face2bone_spec("face2bone", "FaceNet + FSA image branch + SSAM + KAN head (the paper's network)"),
    _face2bone_spec("face2bone-no-fsa", "ablation: FSA blocks -> ResNet basic conv blocks of the same widths",
                    block="conv"),
    _face2bone_spec("face2bone-no-ssam", "ablation: SSAM -> global average pooling (no FaceNet branch)",
                    pooling="gap"),
    _face2bone_spec("face2bone-no-kan", "ablation: KAN head -> MLP head of the same widths", head="mlp"),
    _comparator_spec("vgg16", "torchvision VGG16, 3-class head"),
    _comparator_spec("vgg19", "torchvision VGG19, 3-class head"),
    _comparator_spec("resnet18", "torchvision ResNet18, 3-class head"),
    _comparator_spec("resnet34", "torchvision ResNet34, 3-class head"),
    _comparator_spec("vit_b_16", "torchvision ViT-B/16, 3-class head"),
)}


def list_models() -> list[str]:
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}: expected one of {', '.join(_SPECS)}") from None


def build_architecture(name: str, config: Mapping[str, Any]) -> nn.Module:
    """The randomly initialised network for a full config (no pretrained weights, no warnings), tagged."""
    spec = get_spec(name)
    model = spec.builder(**config)
    model.f2b_arch = name
    model.f2b_config = _jsonable(dict(config))
    model.f2b_weights = {"facenet": None, "imagenet": None}
    return model


def create_model(name: str, num_classes: int = 3, *, facenet_weights: str | Path | None = None,
                 weights: str | Path | None = None, **overrides: Any) -> nn.Module:
    """A registry model with its pretrained weights loaded (FaceNet for the Face2Bone family, ImageNet for the
    comparators) and their provenance recorded in model.f2b_weights."""
    from f2b_study.models.face2bone import load_facenet_weights

    spec = get_spec(name)
    if spec.family == "face2bone" and weights is not None:
        raise InputError(f"model {name}: ImageNet weights apply to the comparators only; use facenet_weights")
    if spec.family == "comparator" and facenet_weights is not None:
        raise InputError(f"model {name}: has no FaceNet branch; facenet_weights applies to the face2bone family")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise InputError(f"model {name}: num_classes {num_classes!r}: expected an integer >= 2")
    try:
        model = build_architecture(name, spec.config(num_classes, **overrides))
    except (TypeError, ValueError) as error:  # e.g. dims not divisible by heads: a bad setting, not a crash
        raise InputError(f"model {name}: settings {overrides}: {error}") from None
    if spec.family == "face2bone":
        model.f2b_weights["facenet"] = load_facenet_weights(model, facenet_weights)
    else:
        model.f2b_weights["imagenet"] = comparators.load_imagenet_weights(model, name, weights)
    return model


def preprocessing(model_or_config: nn.Module | Mapping[str, Any]) -> dict[str, Any]:
    """What the model expects of its input: input_size, mean, std, interpolation."""
    config = model_or_config.f2b_config if isinstance(model_or_config, nn.Module) else model_or_config
    return {"input_size": int(config["input_size"]), "mean": list(config["mean"]), "std": list(config["std"]),
            "interpolation": INTERPOLATION}
