"""Checkpoints: safetensors weights + a JSON sidecar, nothing else (DESIGN §7). Never unpickled.

    save_checkpoint(model, target, *, preprocessing_version=None, seed=None, training_cohort_hash=None,
                    classes=CLASSES, metadata=None) -> Path (the sidecar)
    load_checkpoint(path, map_location="cpu") -> (model in eval mode, sidecar dict)
    read_sidecar(path) -> sidecar dict (validated, weights not read)

`target` / `path`: a directory (holding model.safetensors + model.json), or the .safetensors or .json file of a
pair (the other one sits beside it with the same stem). Both files are written atomically, weights first; the
sidecar records the weights' sha256, so a pair from two different saves is refused on loading.

Sidecar fields: format, arch, config (full builder kwargs: loading rebuilds the same network from it), classes,
preprocessing (input_size, mean, std, interpolation), preprocessing_version (as given by the caller: the faces
stage defines it), seed, training_cohort_hash (or null), facenet_weights and imagenet_weights (provenance
records: where the pretrained weights the training started from came from; "random-init" says so), package_version,
torch_version, created (UTC ISO 8601), weights_file, weights_sha256, n_parameters, metadata (the caller's dict).

Loading refuses (InputError) a missing or garbled sidecar, an unknown format or arch, a weights file that is not
safetensors or does not match the sidecar's sha256, and tensor names or shapes that do not match the architecture.
A checkpoint saved from a GPU model loads on the CPU and the reverse (tensors are saved from the CPU and loaded
onto map_location).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from f2b_study import CLASSES, __version__
from f2b_study.atomic import atomic_path, write_text
from f2b_study.errors import InputError
from f2b_study.models.weights import load_matching, sha256_file

FORMAT = "f2b-study-checkpoint/1"
WEIGHTS_NAME = "model.safetensors"
SIDECAR_NAME = "model.json"
_REQUIRED = ("format", "arch", "config", "classes", "weights_file", "weights_sha256")


def checkpoint_paths(target: str | Path) -> tuple[Path, Path]:
    """(weights, sidecar) for a directory, a .safetensors file or a .json file."""
    target = Path(target)
    if target.suffix == ".safetensors":
        return target, target.with_suffix(".json")
    if target.suffix == ".json":
        return target.with_suffix(".safetensors"), target
    if target.suffix:
        raise InputError.at(target, expected="a checkpoint directory, or its .safetensors / .json file "
                            "(f2b-study never loads pickled .pt/.pth checkpoints)", show_value=False)
    return target / WEIGHTS_NAME, target / SIDECAR_NAME


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}


def save_checkpoint(model: nn.Module, target: str | Path, *, preprocessing_version: str | None = None,
                    seed: int | None = None, training_cohort_hash: str | None = None,
                    classes: tuple[str, ...] | list[str] = CLASSES,
                    metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the model's weights and sidecar; returns the sidecar path. The model must come from the registry."""
    from safetensors.torch import save_file

    from f2b_study.models.registry import preprocessing

    arch = getattr(model, "f2b_arch", None)
    config = getattr(model, "f2b_config", None)
    if arch is None or config is None:
        raise ValueError("save_checkpoint needs a model built by f2b_study.models.create_model")
    if len(classes) != config["num_classes"]:
        raise ValueError(f"{len(classes)} class names for a {config['num_classes']}-class model")
    weights_path, sidecar_path = checkpoint_paths(target)
    state = _cpu_state(model)
    with atomic_path(weights_path) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "arch": arch})
    weights = getattr(model, "f2b_weights", {})
    sidecar = {
        "format": FORMAT,
        "arch": arch,
        "config": config,
        "classes": list(classes),
        "preprocessing": preprocessing(config),
        "preprocessing_version": preprocessing_version,
        "seed": seed,
        "training_cohort_hash": training_cohort_hash,
        "facenet_weights": weights.get("facenet"),
        "imagenet_weights": weights.get("imagenet"),
        "package_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "weights_file": weights_path.name,
        "weights_sha256": sha256_file(weights_path),
        "n_parameters": sum(t.numel() for t in model.parameters()),
        "metadata": dict(metadata or {}),
    }
    write_text(sidecar_path, json.dumps(sidecar, indent=2, allow_nan=False) + "\n")
    return sidecar_path


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The validated sidecar of a checkpoint (the weights file is checked to exist, not read)."""
    from f2b_study.models.registry import list_models

    weights_path, sidecar_path = checkpoint_paths(path)
    if not sidecar_path.is_file():
        raise InputError.at(sidecar_path, expected=f"a checkpoint sidecar ({SIDECAR_NAME}) written by f2b-study",
                            show_value=False)
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError.at(sidecar_path, expected=f"a JSON checkpoint sidecar ({error})", show_value=False) from None
    if not isinstance(sidecar, dict) or any(key not in sidecar for key in _REQUIRED):
        raise InputError.at(sidecar_path, expected=f"a checkpoint sidecar with the fields {', '.join(_REQUIRED)}",
                            show_value=False)
    if sidecar["format"] != FORMAT:
        raise InputError.at(sidecar_path, column="format", value=sidecar["format"], expected=FORMAT)
    if sidecar["arch"] not in list_models():
        raise InputError.at(sidecar_path, column="arch", value=sidecar["arch"],
                            expected=f"one of {', '.join(list_models())}")
    if not isinstance(sidecar["config"], dict) or not isinstance(sidecar["classes"], list):
        raise InputError.at(sidecar_path, column="config", expected="a config object and a list of classes",
                            show_value=False)
    if sidecar["weights_file"] != weights_path.name:
        raise InputError.at(sidecar_path, column="weights_file", value=sidecar["weights_file"],
                            expected=weights_path.name)
    if not weights_path.is_file():
        raise InputError.at(weights_path, expected="the checkpoint's safetensors weights beside its sidecar",
                            show_value=False)
    return sidecar


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from the sidecar's arch + config, load the safetensors weights; eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from f2b_study.models.registry import build_architecture

    sidecar = read_sidecar(path)
    weights_path, _ = checkpoint_paths(path)
    if sha256_file(weights_path) != sidecar["weights_sha256"]:
        raise InputError.at(weights_path, expected="weights whose sha256 matches the sidecar's weights_sha256 "
                            "(the two files come from different saves, or the weights were changed)",
                            show_value=False)
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError.at(weights_path, expected=f"a safetensors weights file ({error})", show_value=False) from None
    try:
        model = build_architecture(sidecar["arch"], sidecar["config"])
    except (TypeError, ValueError) as error:
        raise InputError.at(path, column="config", expected=f"a config the {sidecar['arch']} builder accepts "
                            f"({error})", show_value=False) from None
    load_matching(model, state, weights_path, f"arch {sidecar['arch']}")
    model.f2b_weights = {"facenet": sidecar.get("facenet_weights"), "imagenet": sidecar.get("imagenet_weights")}
    model.to(map_location)
    model.eval()
    return model, sidecar
