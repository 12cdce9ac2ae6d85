"""[train]: the study's model and the paper's training recipe (docs/methods.md, "Training"). Torch-free, so
configs are checked before anything heavy loads.

    [train]
    arch = "face2bone"
    epochs = 80
    input_size = 112
    model = { dims = [24, 48, 96, 192], depths = [1, 1, 2, 1] }
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from f2b_study.training.augment import AUGMENTATIONS, AugmentConfig


def _field(default: Any, *, low: float | None = None, high: float | None = None, help: str = "") -> Any:
    metadata = {k: v for k, v in (("min", low), ("max", high), ("help", help)) if v not in (None, "")}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """What to train and how. Defaults are the paper's recipe: CrossEntropy, Adam, OneCycleLR (max lr 1e-3, 30%
    warm-up, annealed to 1e-6), batch 32, up to 150 epochs, early stopping on validation accuracy (patience 10),
    seed 42, patient-level stratified 8:2 split (seed 42) unless the cohort has a split column."""

    arch: str = _field("face2bone", help="registry model (f2b-study models)")
    target: str = _field("bone_status", help="column to learn")
    epochs: int = _field(150, low=1, high=100_000)
    batch_size: int = _field(32, low=1, high=65_536)
    lr: float = _field(1e-3, low=1e-9, high=10.0, help="OneCycleLR's maximum learning rate")
    final_lr: float = _field(1e-6, low=0.0, high=10.0)
    warmup_fraction: float = _field(0.3, low=0.0, high=1.0)
    patience: int = _field(10, low=1, high=100_000, help="early-stopping patience in epochs")
    seed: int = _field(42, low=0)
    split_seed: int = _field(42, low=0, help="seed of the stratified 8:2 split")
    validation_fraction: float = _field(0.2, low=0.01, high=0.99)
    input_size: int | None = _field(None, low=32, high=1024, help="model input size (default: the registry's)")
    model: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata={"help": "architecture settings, e.g. { dims = [24, 48, 96, 192] }"})
    augment: tuple[str, ...] | None = _field(None, help="augmentations (default the paper's four; [] none)")
    facenet_weights: str | None = _field(None, help="VGGFace2 weights: a file, or 'vggface2' (download/cache)")
    facenet_trainable: Literal["frozen", "last", "full"] | None = _field(None)
    imagenet_weights: str | None = _field(None, help="ImageNet weights file for a torchvision comparator")
    workers: int | None = _field(None, low=0, high=256, help="DataLoader workers (default 4 on a GPU, 0 on a CPU)")
    bf16: bool = _field(True, help="bf16 autocast on a GPU")
    compile: bool = _field(False, help="torch.compile the model")
    eval_batch_size: int = _field(128, low=1, high=65_536)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.augment or ()) - set(AUGMENTATIONS) - {"none"})
        if unknown:
            raise ValueError(f"augment: {', '.join(unknown)} are not augmentations ({', '.join(AUGMENTATIONS)}, "
                             "or none)")
        for key in ("input_size", "facenet_trainable"):
            if key in self.model and getattr(self, key) is not None and self.model[key] != getattr(self, key):
                raise ValueError(f"model.{key} {self.model[key]!r} and {key} {getattr(self, key)!r} disagree: "
                                 "give it once")

    @property
    def max_lr(self) -> float:
        return self.lr

    def augment_config(self) -> AugmentConfig | None:
        """The augmentations in effect (None: none at all)."""
        if self.augment is None:
            return AugmentConfig()
        chosen = [name for name in self.augment if name != "none"]
        return AugmentConfig.from_names(",".join(chosen)) if chosen else None

    def model_config(self) -> dict[str, Any]:
        """The registry builder's keyword arguments: ``model`` plus input_size and facenet_trainable when set."""
        config = dict(self.model)  # may carry input_size / facenet_trainable itself (checked not to disagree)
        if self.input_size is not None:
            config["input_size"] = self.input_size
        if self.facenet_trainable is not None:
            config["facenet_trainable"] = self.facenet_trainable
        return config

    def to_json(self) -> dict[str, Any]:
        from f2b_study.sections import to_mapping

        return to_mapping(self)

    def recipe(self) -> dict[str, Any]:
        """The settings that change the trained weights (a resumed run must match them)."""
        data = self.to_json()
        for key in ("workers", "eval_batch_size", "compile"):
            data.pop(key)
        return data
