"""[explain]: which faces are explained and how (docs/methods.md, "Explanations"). Torch-free.

    [explain]
    max_images = 64
    facenet_input = "original"
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class ExplainSettings:
    """Region Shapley values, pixel maps and CRAFT concepts. ``split``: "validation" = the run's validation patients
    and any patient the run never saw; "train"; "all". ``baseline``: what an absent region becomes (the training
    split's mean face, or a blur). ``facenet_input``: "masked" (Face2Bone's FaceNet sees each composite: exact for
    the whole model) or "original" (the unmasked face: far cheaper, attributes the image branch only)."""

    enabled: bool = True  # `study` runs the explanations
    split: Literal["validation", "train", "all"] = "validation"
    baseline: Literal["mean", "blur"] = "mean"
    blur_sigma: float | None = dataclasses.field(default=None, metadata={"min": 1e-3, "max": 1024})
    output: Literal["probability", "logit"] = "probability"
    facenet_input: Literal["masked", "original"] = "masked"
    max_images: int | None = dataclasses.field(default=None, metadata={"min": 1})
    batch_size: int | None = dataclasses.field(default=None, metadata={"min": 1, "max": 65_536})
    bf16: bool = True
    pixel_maps: bool = True
    pixel_max_per_class: int | None = dataclasses.field(default=24, metadata={"min": 1})
    craft: bool = True
    n_concepts: int = dataclasses.field(default=6, metadata={"min": 1, "max": 50})
    seed: int = dataclasses.field(default=0, metadata={"min": 0})

    def craft_config(self) -> Any:
        """CRAFT's settings (None when CRAFT is off); imports torch."""
        if not self.craft:
            return None
        from f2b_study.explain.craft import CraftConfig

        return CraftConfig(n_concepts=self.n_concepts, seed=self.seed)

    def describe(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        craft = self.craft_config()
        data["craft"] = craft.describe() if craft is not None else None
        return data
