"""Reading pretrained weight files safely and loading them only when every tensor matches."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from f2b_study.errors import InputError


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch file loaded with weights_only=True; else InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError.at(path, expected=f"an existing {what} weights file", show_value=False)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many kinds; all mean "not a usable weights file"
        raise InputError.at(path, expected=f"a {what} state dict (torch.load weights_only=True or safetensors); "
                            f"reading failed: {type(error).__name__}: {str(error)[:120]}", show_value=False) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError.at(path, expected=f"a {what} state dict (a mapping of names to tensors)", show_value=False)
    return state


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, what: str,
                  ignore_prefixes: Sequence[str] = (), allow_missing_step_counters: bool = False) -> None:
    """Load `state` into `module`: every tensor name and shape must match, except names under ignore_prefixes
    (and BatchNorm's num_batches_tracked counters, when allow_missing_step_counters)."""
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(tuple(ignore_prefixes))}
    missing = sorted(set(own) - set(state))
    if allow_missing_step_counters:
        # Older release files (converted from TensorFlow or saved by old torch) may lack BatchNorm's step counter;
        # it does not affect the weights, so the module keeps its own.
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                           for label, names in (("missing", missing), ("unexpected", unexpected),
                                                ("wrong shape", wrong)) if names)
        raise InputError.at(path, expected=f"{what} weights matching the network ({detail})", show_value=False)
    module.load_state_dict(state, strict=False)
