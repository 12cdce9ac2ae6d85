"""The FaceNet branch: facenet-pytorch's InceptionResnetV1 at 160 px, 512-d L2-normalised embedding.

Input: the model's own input tensor (normalised with the model's mean/std, any size). The branch resizes it to
160×160 (bilinear, antialiased) and re-normalises to FaceNet's convention (x·255 − 127.5)/128, so callers feed one
tensor. Both steps are affine per channel and the resize weights sum to 1, so they are folded into one affine
applied after the resize.

Trainable modes: "frozen" (no parameter trains; the whole net stays in eval mode, so BatchNorm statistics and
dropout never change: its embeddings can be cached per image), "last" (only the last block — block8, dropout,
last_linear, last_bn — trains; the frozen part stays in eval mode), "full".

Weights (VGGFace2, the facenet-pytorch release file 20180402-114759-vggface2.pt, a state dict), `source` argument:
- a path: loaded with torch.load(weights_only=True) (or safetensors), the 8631-class `logits.*` dropped, every
  other tensor must match; sha256 recorded;
- "vggface2": facenet-pytorch's own cache file ($TORCH_HOME/checkpoints/20180402-114759-vggface2.pt), downloaded
  into it first when it is not there and the machine is online; offline, one line says which file to put where;
- "cache": that cache file only (never a download); "download": always through facenet-pytorch's download;
- None: random initialisation, with a loud warning (warnings.warn and logging.warning), recorded as
  {"source": "random-init", ...} — checkpoints and reports carry it.
`provenance(model)` returns the record for any model from the registry.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from f2b_study.errors import InputError
from f2b_study.models import onednn
from f2b_study.models.facenet_inference import build_inference_net, fusion_enabled, weights_key
from f2b_study.models.weights import load_matching, read_state_dict, sha256_file

log = logging.getLogger(__name__)

FACENET_SIZE = 160
EMBEDDING_DIM = 512
RELEASE_FILE = "20180402-114759-vggface2.pt"
RELEASE_URL = f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{RELEASE_FILE}"
TRAINABLE_MODES = ("frozen", "last", "full")
# The modules of InceptionResnetV1 after the last repeat: "last block" mode trains these.
_LAST_BLOCK = ("block8", "avgpool_1a", "dropout", "last_linear", "last_bn")
# FaceNetBranch attributes derived from the network, never copied or pickled.
_DERIVED = ("_inference_cache", "_inference_modules")

RANDOM_INIT_WARNING = (
    "FaceNet branch is RANDOMLY INITIALISED: no VGGFace2 weights were given (--facenet-weights FILE). "
    "The face embedding is meaningless and results are not comparable with the paper's."
)


def facenet_cache_file() -> Path:
    """Where facenet-pytorch caches the VGGFace2 release file."""
    from facenet_pytorch.models.inception_resnet_v1 import get_torch_home

    return Path(get_torch_home()) / "checkpoints" / RELEASE_FILE


def default_facenet_weights() -> str | None:
    """"cache" when facenet-pytorch's cache holds the release file, else None (commands use this as default)."""
    return "cache" if facenet_cache_file().is_file() else None


class FaceNetBranch(nn.Module):
    """Model input (normalised with mean/std) -> 512-d L2-normalised FaceNet embedding."""

    def __init__(self, *, mean: Sequence[float], std: Sequence[float], trainable: str = "frozen",
                 size: int = FACENET_SIZE) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        if trainable not in TRAINABLE_MODES:
            raise InputError(f"FaceNet trainable mode {trainable!r}: expected one of {', '.join(TRAINABLE_MODES)}")
        self.trainable = trainable
        self.size = size
        self.net = InceptionResnetV1(pretrained=None, classify=False)
        mean_t = torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)
        # x_facenet = (x·std + mean)·255/128 − 127.5/128
        self.register_buffer("scale", std_t * 255.0 / 128.0, persistent=False)
        self.register_buffer("shift", (mean_t * 255.0 - 127.5) / 128.0, persistent=False)
        for name, param in self.net.named_parameters():
            param.requires_grad = trainable == "full" or (trainable == "last" and name.startswith(_LAST_BLOCK))
        self.train()

    def train(self, mode: bool = True) -> FaceNetBranch:
        super().train(mode)
        if self.trainable == "frozen":
            self.net.eval()
        elif self.trainable == "last":
            for name, child in self.net.named_children():
                child.train(mode and name in _LAST_BLOCK)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        # Channels-last: InceptionResnetV1's late blocks are 1×1 convs over 3×3 and 8×8 maps with up to 1792
        # channels, which oneDNN runs as plain matrix products in this layout (~1.4× faster on the CPU).
        x = x.contiguous(memory_format=torch.channels_last)
        fused = self._inference_net(x)
        return fused(x) if fused is not None else self.net(x)

    def _inference_net(self, x: torch.Tensor) -> nn.Module | None:
        """The fused inference copy of the network (facenet_inference.py) when this forward needs no gradient and
        runs in float32 on the CPU with the network in eval mode; else None (facenet-pytorch's own forward). Kept
        outside the module tree (not in state_dict, not moved by .to()) and rebuilt when the weights change."""
        if self.net.training or not fusion_enabled() or not onednn.cpu_inference(x):
            return None
        listed = self.__dict__.get("_inference_modules")
        if listed is None or listed[0] is not self.net:  # facenet-pytorch's module tree is fixed once built
            listed = self.__dict__["_inference_modules"] = (self.net, list(self.net.modules()))
        key = weights_key(listed[1])
        if key is None:
            return None
        cached = self.__dict__.get("_inference_cache")
        if cached is None or cached[0] != key:
            if any(t.dtype != torch.float32 for t in self.net.parameters()):
                return None
            cached = (key, build_inference_net(self.net))
            self.__dict__["_inference_cache"] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        # The inference copy is derived (and holds oneDNN tensors, which do not pickle): copies rebuild their own.
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    def load_weights(self, source: str | Path | None) -> dict[str, Any]:
        """Load VGGFace2 weights from `source` (see module docstring) and return their provenance record."""
        if source is None:
            warnings.warn(RANDOM_INIT_WARNING, UserWarning, stacklevel=4)  # the CLI shows it once, as one line
            return {"source": "random-init", "warning": RANDOM_INIT_WARNING}
        record: dict[str, Any]
        if source == "vggface2":
            path = facenet_cache_file()
            record = {"source": "vggface2"}
            if not path.is_file():
                _download(path, offline_hint=True)
                record["downloaded"] = RELEASE_URL
        elif source == "download":
            path = facenet_cache_file()
            if not path.is_file():
                _download(path, offline_hint=False)
            record = {"source": "download", "url": RELEASE_URL}
        elif source == "cache":
            path = facenet_cache_file()
            if not path.is_file():
                raise InputError.at(path, expected="facenet-pytorch's cached VGGFace2 file (--facenet-weights FILE "
                                    "or download)", show_value=False)
            record = {"source": "facenet-pytorch-cache"}
        else:
            path = Path(source)
            record = {"source": "file"}
        state = read_state_dict(path, "FaceNet (InceptionResnetV1)")
        load_matching(self.net, state, path, "FaceNet InceptionResnetV1", ignore_prefixes=("logits.",),
                      allow_missing_step_counters=True)
        record.update(path=str(Path(path).resolve()), file=Path(path).name, sha256=sha256_file(path),
                      dataset="VGGFace2" if "vggface2" in Path(path).name.lower() else "unknown")
        log.info("FaceNet weights: %s (sha256 %s)", record["path"], record["sha256"])
        return record


def _download(path: Path, *, offline_hint: bool) -> None:
    """facenet-pytorch's download of the release file into its cache (written to a temporary name first)."""
    from facenet_pytorch.models.utils.download import download_url_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        download_url_to_file(RELEASE_URL, str(partial))
        partial.replace(path)
    except Exception as error:  # urllib raises several kinds; all mean "no network / no file"
        partial.unlink(missing_ok=True)
        if offline_hint:
            raise InputError(f"--facenet-weights vggface2: {RELEASE_URL} cannot be downloaded here "
                             f"({type(error).__name__}); put the release file {RELEASE_FILE} at {path} (or pass "
                             "--facenet-weights /path/to/it)") from None
        raise InputError(f"--facenet-weights download: could not download {RELEASE_URL} "
                         f"({type(error).__name__}: {error}); pass the file instead") from None


def provenance(model: nn.Module) -> dict[str, Any]:
    """The weight provenance of a registry model: {"facenet": record | None, "imagenet": record | None}."""
    return dict(getattr(model, "f2b_weights", {"facenet": None, "imagenet": None}))


def facenet_provenance(model: nn.Module) -> dict[str, Any] | None:
    """The FaceNet weight record (None for models without a FaceNet branch)."""
    return provenance(model).get("facenet")

