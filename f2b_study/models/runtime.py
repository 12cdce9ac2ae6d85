"""Running a model: the one device picker, the input transform a checkpoint carries, the one batched predict
loop (training's evaluation, screening and explanation all use it), the one checkpoint resolver and the one
per-patient aggregation.

    device = pick_device("auto")
    ref = resolve_checkpoint("runs/demo")          # runs/NAME, runs/NAME/best, model.json or .safetensors
    model = ref.load(device)
    transform = ref.transform                      # like torchvision's weights.transforms(): size, mean, std
    probabilities = predict_faces(model, transform.load(face_paths), transform=transform, device=device)
    ids, means = patient_means(probabilities, patient_ids)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from f2b_study.errors import InputError

CUDA_BATCH = 256  # images per forward pass on a GPU (bf16): H100-class memory holds it for every registry model
CPU_BATCH = 32


def pick_device(name: str | None = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else the CPU; asking for CUDA on a machine without it is an input error."""
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError.at("--device", value=name, expected="auto or cpu (no CUDA device here)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError.at("--device", value=name, expected="auto, cpu or cuda[:N]") from None


def default_batch_size(device: torch.device) -> int:
    return CUDA_BATCH if device.type == "cuda" else CPU_BATCH


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when asked; a no-op elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and bf16)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode on ``device``, channels-last on CUDA (the convolutions' fast layout there)."""
    model.eval().to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


@dataclasses.dataclass(frozen=True)
class InputTransform:
    """What a model expects of its input, carried by its checkpoint: square ``input_size`` RGB, scaled to [0, 1],
    normalised with ``mean`` / ``std``. Faces come from the face cache resized by the cache's own resize."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> InputTransform:
        """From a checkpoint sidecar's ``preprocessing`` (or a registry config)."""
        return cls(int(config["input_size"]), tuple(float(v) for v in config["mean"]),  # type: ignore[arg-type]
                   tuple(float(v) for v in config["std"]), str(config.get("interpolation", "bilinear")))

    @classmethod
    def of(cls, model: nn.Module) -> InputTransform:
        from f2b_study.models.registry import preprocessing

        return cls.from_config(preprocessing(model))

    def load(self, face_paths: Sequence[str], progress: bool = False) -> np.ndarray:
        """Cached faces at ``input_size`` as one (N, S, S, 3) uint8 array."""
        from f2b_study.faces.cache import load_faces

        return load_faces(face_paths, self.input_size, progress)

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float, normalised, channels-last (cheap on the device it already lives on)."""
        return normalise(batch, self.mean, self.std)


def normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float normalised, channels_last (uint8 crosses to the GPU at a quarter of the bytes)."""
    mean_t = torch.tensor(mean, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    out = (batch.float().div_(255.0) - mean_t) / std_t
    return out.contiguous(memory_format=torch.channels_last)


def to_chw(faces: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 array -> (B, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(faces.transpose(0, 3, 1, 2)))


@dataclasses.dataclass(frozen=True)
class CheckpointRef:
    """A resolved checkpoint: where it is, the run folder it came from (when there is one) and its sidecar."""

    path: Path  # the checkpoint folder (model.safetensors + model.json) or its sidecar
    run_dir: Path | None  # runs/NAME, holding split.csv and run.json, when the checkpoint sits in one
    sidecar: dict[str, Any]

    @property
    def transform(self) -> InputTransform:
        return InputTransform.from_config(self.sidecar["preprocessing"])

    @property
    def classes(self) -> list[str]:
        return list(self.sidecar["classes"])

    def load(self, device: torch.device | str = "cpu") -> nn.Module:
        """The network with its weights, on ``device``, in eval mode (the sidecar's random-init FaceNet warning was
        given when the model was trained and is carried in the sidecar and every report)."""
        import warnings

        from f2b_study.models.checkpoint import load_checkpoint

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model, _ = load_checkpoint(self.path, map_location=device)
        return model


def resolve_checkpoint(path: str | Path) -> CheckpointRef:
    """runs/NAME (its best/ checkpoint), runs/NAME/best, a checkpoint folder, or its model.json / .safetensors.
    The checkpoint is validated in full (sidecar hash, weights' sha256, tensor shapes, finite values) here, so a
    refused model stops a command before any photo is processed."""
    from f2b_study.models.checkpoint import validate_checkpoint

    path = Path(path)
    if (path / "best" / "model.json").is_file():
        checkpoint, run_dir = path / "best", path
    elif path.is_dir() and (path / "model.json").is_file():
        checkpoint = path
        run_dir = path.parent if (path.parent / "split.csv").is_file() else None
    elif path.suffix in (".json", ".safetensors") and path.is_file():
        checkpoint, parent = path, path.parent.parent
        run_dir = parent if (parent / "split.csv").is_file() else None
    else:
        raise InputError.at(path, show_value=False, expected="a run folder (runs/NAME with best/model.json), its "
                            "best/ folder, or a checkpoint's model.json")
    return CheckpointRef(path=checkpoint, run_dir=run_dir, sidecar=validate_checkpoint(checkpoint))


def newest_run(runs_root: Path = Path("runs")) -> Path | None:
    """The most recently finished run under ``runs_root`` that has a best checkpoint (any depth ≤ 2)."""
    sidecars = list(runs_root.glob("*/best/model.json")) + list(runs_root.glob("*/*/best/model.json"))
    return max(sidecars, key=lambda p: p.stat().st_mtime).parent.parent if sidecars else None


# -- the predict loop ----------------------------------------------------------------------------------------------

@torch.inference_mode()
def iter_probabilities(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], *,
                       transform: InputTransform, device: torch.device, bf16: bool = True) -> Iterator[np.ndarray]:
    """Softmax probabilities per batch of (uint8 (B, 3, H, W) images, FaceNet embeddings or None), eval mode."""
    model.eval()
    for images, embeddings in batches:
        x = transform.normalise(images.to(device, non_blocking=True))
        kwargs = {} if embeddings is None else {"face_embedding": embeddings.to(device, non_blocking=True)}
        with autocast(device, bf16):
            logits = model(x, **kwargs)
        yield torch.softmax(logits.float(), dim=1).cpu().numpy()


def predict_faces(model: nn.Module, faces: np.ndarray, *, transform: InputTransform, device: torch.device,
                  batch_size: int | None = None, embeddings: torch.Tensor | np.ndarray | None = None,
                  bf16: bool = True) -> np.ndarray:
    """Probabilities (N, classes) for faces already in memory ((N, S, S, 3) uint8), with their FaceNet embeddings
    when the caller computed them once (a frozen FaceNet)."""
    size = batch_size or default_batch_size(device)
    if embeddings is not None and not isinstance(embeddings, torch.Tensor):
        embeddings = torch.from_numpy(np.asarray(embeddings))

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        for start in range(0, len(faces), size):
            yield (to_chw(faces[start:start + size]),
                   None if embeddings is None else embeddings[start:start + size])

    chunks = list(iter_probabilities(model, batches(), transform=transform, device=device, bf16=bf16))
    return np.concatenate(chunks) if chunks else np.empty((0, 0), np.float32)


class _CachedFaces(torch.utils.data.Dataset):
    """uint8 CHW faces at ``size`` read from the face cache, one per path (decoded in DataLoader workers)."""

    def __init__(self, face_paths: Sequence[str], size: int) -> None:
        self.face_paths = list(face_paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.face_paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from f2b_study.faces.cache import load_face

        face, _ = load_face(self.face_paths[index], self.size)
        return torch.from_numpy(np.ascontiguousarray(face.transpose(2, 0, 1)))


def default_workers(device: torch.device) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # on the CPU the model itself uses the cores; one decoding worker keeps it fed without competing
    return min(8, max(1, cores - 1)) if device.type == "cuda" else (1 if cores > 2 else 0)


def predict_paths(model: nn.Module, face_paths: Sequence[str], *, transform: InputTransform, device: torch.device,
                  batch_size: int | None = None, workers: int | None = None, bf16: bool = True
                  ) -> Iterator[np.ndarray]:
    """Probabilities per batch for cached faces streamed from disk (memory stays flat whatever the cohort)."""
    workers = default_workers(device) if workers is None else workers
    loader = torch.utils.data.DataLoader(
        _CachedFaces(face_paths, transform.input_size), batch_size=batch_size or default_batch_size(device),
        shuffle=False, num_workers=workers, pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    return iter_probabilities(model, ((batch, None) for batch in loader), transform=transform, device=device,
                              bf16=bf16)


@torch.inference_mode()
def face_embeddings(model: nn.Module, faces: np.ndarray, *, transform: InputTransform, device: torch.device,
                    batch_size: int | None = None) -> torch.Tensor:
    """FaceNet embeddings (N, 512) of a Face2Bone model's branch, on the CPU."""
    model.eval()
    size = batch_size or default_batch_size(device)
    chunks = [model.face_embedding(transform.normalise(to_chw(faces[start:start + size]).to(device))).float().cpu()
              for start in range(0, len(faces), size)]
    return torch.cat(chunks) if chunks else torch.empty(0, 512)


# -- per patient -----------------------------------------------------------------------------------------------

def patient_means(probabilities: np.ndarray, patients: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(patient IDs in first-seen order, mean probabilities per patient, photos per patient): a patient's
    prediction is the mean of its images' probabilities."""
    ids, first, inverse, counts = np.unique(np.asarray(patients, dtype=object), return_index=True,
                                            return_inverse=True, return_counts=True)
    sums = np.zeros((len(ids), probabilities.shape[1]), np.float64)
    np.add.at(sums, inverse, probabilities)
    order = np.argsort(first, kind="stable")
    return [str(ids[i]) for i in order], (sums / counts[:, None])[order], counts[order]
