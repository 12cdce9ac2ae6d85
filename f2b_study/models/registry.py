"""The model registry (docs/methods.md, Model): every architecture by name, with its preprocessing and default config.

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
        config = _jsonable({"num_classes": num_classes, "input_size": self.input_size, "mean": self.mean,
                            "std": self.std, **self.defaults, **overrides})
        validate_config(self.name, config)
        return config


# Bounds on a config's numbers, checked before anything is built: a sidecar or a command line with dims of 10^6
# must be a one-line error, not an out-of-memory crash. Generous: 10x beyond every published setting.
MAX_WIDTH = 16_384  # channels, hidden units, heads, grid sizes
MAX_INPUT_SIZE = 2_048  # pixels per side of the model input
MIN_INPUT_SIZE = 16
MAX_LIST = 64  # stages / layers listed in one setting
MAX_CLASSES = 1_000
MAX_REAL = 1_000.0  # alpha, ffn_ratio, ...


def validate_config(name: str, config: Any, source: str | Path | None = None) -> None:
    """Refuse (InputError naming ``source`` and the setting) a config that is not a mapping of the architecture's
    own settings, each of its default's type and within the bounds above. Allocates nothing."""
    spec = get_spec(name)
    where = source if source is not None else f"model {name}"
    if not isinstance(config, Mapping):
        raise InputError.at(where, column="config", value=config, expected="a mapping of settings")
    allowed = set(spec.defaults) | {"input_size", "mean", "std", "num_classes"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise InputError.at(where, column=f"config.{unknown[0]}", value=unknown[0],
                            expected=f"one of the {name} settings {', '.join(sorted(allowed))}")
    reference = {"input_size": spec.input_size, "mean": spec.mean, "std": spec.std, "num_classes": 3,
                 **spec.defaults}
    for key, value in config.items():
        _check_setting(where, key, value, reference[key])


def _check_setting(where: str | Path, key: str, value: Any, default: Any) -> None:
    column = f"config.{key}"

    def refuse(expected: str) -> None:
        raise InputError.at(where, column=column, value=value, expected=expected)

    def whole(number: Any, low: int, high: int) -> None:
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
            refuse(f"a whole number from {low} to {high:,}")

    def real(number: Any, low: float, high: float) -> None:
        if isinstance(number, bool) or not isinstance(number, int | float) or not (low <= number <= high):
            refuse(f"a number from {low:g} to {high:g}")  # NaN fails the comparison too

    if key == "input_size":
        whole(value, MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    elif key == "num_classes":
        whole(value, 2, MAX_CLASSES)
    elif key in ("mean", "std"):
        if not isinstance(value, list | tuple) or len(value) != 3:
            refuse("three numbers, one per RGB channel")
        for number in value:
            real(number, 1e-6 if key == "std" else 0.0, 1.0 if key == "mean" else 10.0)
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            refuse("true or false")
    elif isinstance(default, int):
        whole(value, 1, MAX_WIDTH)
    elif isinstance(default, float):
        real(value, 0.0, MAX_REAL)
    elif isinstance(default, str):
        if not isinstance(value, str) or len(value) > 64:
            refuse("a short text setting")
    elif isinstance(default, list | tuple):
        if not isinstance(value, list | tuple) or not 1 <= len(value) <= MAX_LIST:
            refuse(f"a list of 1 to {MAX_LIST} whole numbers")
        for number in value:
            whole(number, 1, MAX_WIDTH)


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
