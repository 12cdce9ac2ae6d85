"""Checkpoints: safetensors weights + a JSON sidecar, nothing else (docs/methods.md, Model). Never unpickled.

    save_checkpoint(model, target, *, preprocessing_version=None, seed=None, training_cohort_hash=None,
                    classes=CLASSES, metadata=None) -> Path (the sidecar)
    load_checkpoint(path, map_location="cpu") -> (model in eval mode, sidecar dict)
    read_sidecar(path) -> sidecar dict (validated, weights not read)
    validate_checkpoint(path) -> sidecar dict (every check of loading, without building the model)

`target` / `path`: a directory (holding model.safetensors + model.json), or the .safetensors or .json file of a
pair (the other one sits beside it with the same stem). Both files are written atomically, weights first; the
sidecar records the weights' sha256, so a pair from two different saves is refused on loading.

Sidecar fields: format, arch, config (full builder kwargs: loading rebuilds the same network from it), classes,
preprocessing (input_size, mean, std, interpolation), preprocessing_version (as given by the caller: the faces
stage defines it), seed, training_cohort_hash (or null), facenet_weights and imagenet_weights (provenance
records: where the pretrained weights the training started from came from; "random-init" says so), package_version,
torch_version, created (UTC ISO 8601), weights_file, weights_sha256, n_parameters, metadata (the caller's dict),
sidecar_sha256: the sha256 of every other field (canonical JSON), so the config and preprocessing are bound to the
weights (through weights_sha256): editing `config.input_size` in model.json is refused, not silently obeyed. This is
an integrity check against edits and mix-ups, not a signature: whoever can write both files can forge both.

Loading refuses (InputError) a missing or garbled sidecar, an unknown format or arch, a sidecar changed after saving,
settings out of the registry's bounds (checked before anything is allocated: huge `dims` is an error, not an
out-of-memory crash), a weights file that is not safetensors or does not match the sidecar's sha256, tensor names or
shapes that do not match the architecture (compared on the meta device, without allocating), and non-finite weights.
Sidecars of format f2b-study-checkpoint/1 (no sidecar hash) are refused: retrain, or `upgrade_checkpoint` one whose
origin you trust. `validate_checkpoint` runs every check without building the model, for commands to call before
they start long work. A checkpoint saved from a GPU model loads on the CPU and the reverse (tensors are saved from the
CPU and loaded onto map_location).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from f2b_study import CLASSES, __version__
from f2b_study.atomic import atomic_path, write_text
from f2b_study.errors import InputError
from f2b_study.models.weights import load_matching, sha256_file

FORMAT = "f2b-study-checkpoint/2"
LEGACY_FORMATS = ("f2b-study-checkpoint/1",)  # no sidecar hash: config edits cannot be told from the original
WEIGHTS_NAME = "model.safetensors"
SIDECAR_NAME = "model.json"
_REQUIRED = ("format", "arch", "config", "classes", "weights_file", "weights_sha256", "sidecar_sha256")
MAX_SIDECAR_BYTES = 1 << 20  # a sidecar is a few kB; a larger one is not read
MAX_ELEMENTS = 2_000_000_000  # numbers in one checkpoint (8 GB of float32): beyond it a config is refused unbuilt


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
    write_text(sidecar_path, json.dumps(seal(sidecar), indent=2, allow_nan=False) + "\n")
    return sidecar_path


def sidecar_digest(sidecar: Mapping[str, Any]) -> str:
    """sha256 of every field but `sidecar_sha256` itself, as canonical JSON (sorted keys, no spaces)."""
    body = {key: value for key, value in sidecar.items() if key != "sidecar_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def seal(sidecar: dict[str, Any]) -> dict[str, Any]:
    """The sidecar with its `sidecar_sha256` (re)computed."""
    return {**sidecar, "sidecar_sha256": sidecar_digest(sidecar)}


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The validated sidecar of a checkpoint (the weights file is checked to exist, not read)."""
    weights_path, sidecar_path = checkpoint_paths(path)
    if not sidecar_path.is_file():
        raise InputError.at(sidecar_path, expected=f"a checkpoint sidecar ({SIDECAR_NAME}) written by f2b-study",
                            show_value=False)
    if sidecar_path.stat().st_size > MAX_SIDECAR_BYTES:
        raise InputError.at(sidecar_path, show_value=False,
                            expected=f"a checkpoint sidecar of a few kB (this one is over {MAX_SIDECAR_BYTES:,} bytes)")
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise InputError.at(sidecar_path, expected=f"a JSON checkpoint sidecar ({str(error)[:120]})",
                            show_value=False) from None
    if not isinstance(sidecar, dict) or any(key not in sidecar for key in _REQUIRED[:-1]):
        raise InputError.at(sidecar_path, expected=f"a checkpoint sidecar with the fields {', '.join(_REQUIRED)}",
                            show_value=False)
    if sidecar["format"] in LEGACY_FORMATS:
        raise InputError.at(sidecar_path, column="format", value=sidecar["format"],
                            expected=f"{FORMAT}: this older checkpoint has no hash over its config and preprocessing, "
                            "so an edit to them cannot be detected; retrain the model (or, if you trust where it "
                            "came from, re-save it with f2b_study.models.checkpoint.upgrade_checkpoint)")
    if sidecar["format"] != FORMAT:
        raise InputError.at(sidecar_path, column="format", value=sidecar["format"], expected=FORMAT)
    if sidecar.get("sidecar_sha256") != sidecar_digest(sidecar):
        raise InputError.at(sidecar_path, column="sidecar_sha256", show_value=False,
                            expected="the sidecar as it was saved (its content no longer matches its sidecar_sha256: "
                            "the config, preprocessing or another field was edited); retrain or re-save the model")
    return _check_fields(sidecar, sidecar_path, weights_path)


def _check_fields(sidecar: dict[str, Any], sidecar_path: Path, weights_path: Path) -> dict[str, Any]:
    from f2b_study.models.registry import list_models, preprocessing, validate_config

    if sidecar["arch"] not in list_models():
        raise InputError.at(sidecar_path, column="arch", value=sidecar["arch"],
                            expected=f"one of {', '.join(list_models())}")
    if not isinstance(sidecar["config"], dict) or not isinstance(sidecar["classes"], list):
        raise InputError.at(sidecar_path, column="config", expected="a config object and a list of classes",
                            show_value=False)
    validate_config(sidecar["arch"], sidecar["config"], sidecar_path)
    absent = [key for key in ("input_size", "mean", "std", "num_classes") if key not in sidecar["config"]]
    if absent:
        raise InputError.at(sidecar_path, column=f"config.{absent[0]}", show_value=False,
                            expected="the full builder settings, input_size, mean, std and num_classes included")
    classes = sidecar["classes"]
    if not all(isinstance(c, str) for c in classes) or len(classes) != sidecar["config"]["num_classes"]:
        raise InputError.at(sidecar_path, column="classes", value=classes,
                            expected="one class name per output of the model (config.num_classes)")
    if "preprocessing" in sidecar and sidecar["preprocessing"] != preprocessing(sidecar["config"]):
        raise InputError.at(sidecar_path, column="preprocessing", value=sidecar["preprocessing"],
                            expected="the preprocessing its config implies (input_size, mean, std)")
    if sidecar["weights_file"] != weights_path.name:
        raise InputError.at(sidecar_path, column="weights_file", value=sidecar["weights_file"],
                            expected=weights_path.name)
    if not weights_path.is_file():
        raise InputError.at(weights_path, expected="the checkpoint's safetensors weights beside its sidecar",
                            show_value=False)
    return sidecar


def _check_weights(sidecar: dict[str, Any], weights_path: Path, label: str) -> None:
    """The weights file matches the sidecar's sha256, and its tensor names and shapes (read from the safetensors
    header) are those of the architecture built on the meta device: nothing the size of the model is allocated."""
    from safetensors import SafetensorError, safe_open

    from f2b_study.models.registry import build_architecture

    if sha256_file(weights_path) != sidecar["weights_sha256"]:
        raise InputError.at(weights_path, expected="weights whose sha256 matches the sidecar's weights_sha256 "
                            "(the two files come from different saves, or the weights were changed)",
                            show_value=False)
    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as handle:
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError.at(weights_path, expected=f"a safetensors weights file ({error})", show_value=False) from None
    try:
        with torch.device("meta"):
            skeleton = build_architecture(sidecar["arch"], sidecar["config"])
    except (TypeError, ValueError) as error:
        raise InputError.at(weights_path.with_name(SIDECAR_NAME), column="config", show_value=False,
                            expected=f"a config the {sidecar['arch']} builder accepts ({error})") from None
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    elements = sum(math.prod(shape) for shape in expected.values())
    if elements > MAX_ELEMENTS:
        raise InputError.at(weights_path.with_name(SIDECAR_NAME), column="config", show_value=False,
                            expected=f"a model of at most {MAX_ELEMENTS:,} numbers (this config asks for {elements:,})")
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(name for name in set(expected) & set(shapes) if expected[name] != shapes[name])
    if missing or unexpected or wrong:
        detail = "; ".join(f"{kind}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                           for kind, names in (("missing", missing), ("unexpected", unexpected),
                                               ("wrong shape", wrong)) if names)
        raise InputError.at(weights_path, expected=f"{label} weights matching the network ({detail})",
                            show_value=False)


def _check_finite(name: str, tensor: torch.Tensor, weights_path: Path) -> None:
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise InputError.at(weights_path, column=name, show_value=False,
                            expected="finite weights (this tensor holds NaN or infinity: training diverged, or the "
                            "file was damaged); retrain the model")


def validate_checkpoint(path: str | Path) -> dict[str, Any]:
    """Every check `load_checkpoint` makes, without building the model: the sidecar (format, hash, fields, bounds),
    the weights' sha256, tensor names and shapes, finite values (read one tensor at a time). Costs one read of the
    weights; call it before long work (preprocessing) so that a refused model stops a command at once."""
    sidecar = read_sidecar(path)
    _check_all_weights(sidecar, checkpoint_paths(path)[0])
    return sidecar


def _check_all_weights(sidecar: dict[str, Any], weights_path: Path) -> None:
    from safetensors import safe_open

    _check_weights(sidecar, weights_path, f"arch {sidecar['arch']}")
    with safe_open(str(weights_path), framework="pt", device="cpu") as handle:
        for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            _check_finite(name, handle.get_tensor(name), weights_path)


def upgrade_checkpoint(path: str | Path) -> Path:
    """Re-save a format-1 sidecar (no sidecar hash) in the current format once every other check passes; returns
    the sidecar path. Only for checkpoints whose origin you trust: an edit made to the old sidecar is sealed in."""
    weights_path, sidecar_path = checkpoint_paths(path)
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError.at(sidecar_path, expected=f"a readable checkpoint sidecar ({str(error)[:120]})",
                            show_value=False) from None
    found = sidecar.get("format") if isinstance(sidecar, dict) else None
    if found not in LEGACY_FORMATS:
        raise InputError.at(sidecar_path, column="format", value=found,
                            expected=f"one of {', '.join(LEGACY_FORMATS)} (nothing to upgrade)")
    if any(key not in sidecar for key in _REQUIRED[:-1]):
        raise InputError.at(sidecar_path, expected=f"a checkpoint sidecar with the fields {', '.join(_REQUIRED)}",
                            show_value=False)
    sidecar = seal({**sidecar, "format": FORMAT})
    _check_fields(sidecar, sidecar_path, weights_path)
    _check_all_weights(sidecar, weights_path)
    write_text(sidecar_path, json.dumps(sidecar, indent=2, allow_nan=False) + "\n")
    return sidecar_path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from the sidecar's arch + config, load the safetensors weights; eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from f2b_study.models.registry import build_architecture

    sidecar = read_sidecar(path)
    weights_path, _ = checkpoint_paths(path)
    label = f"arch {sidecar['arch']}"
    _check_weights(sidecar, weights_path, label)  # before the real network and its weights are allocated
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError.at(weights_path, expected=f"a safetensors weights file ({error})", show_value=False) from None
    for name, tensor in state.items():
        _check_finite(name, tensor, weights_path)
    try:
        model = build_architecture(sidecar["arch"], sidecar["config"])
    except (TypeError, ValueError) as error:
        raise InputError.at(path, column="config", expected=f"a config the {sidecar['arch']} builder accepts "
                            f"({error})", show_value=False) from None
    load_matching(model, state, weights_path, label)
    model.f2b_weights = {"facenet": sidecar.get("facenet_weights"), "imagenet": sidecar.get("imagenet_weights")}
    model.to(map_location)
    model.eval()
    return model, sidecar
