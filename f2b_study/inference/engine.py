"""Batched inference over cached faces: a streaming DataLoader (workers decode faces, pinned memory on CUDA),
bf16 autocast + channels_last on CUDA, `inference_mode` throughout. Memory stays flat whatever the cohort size:
only one chunk of faces is in flight at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from f2b_study.training.data import normalise


class CachedFaces(Dataset):
    """uint8 CHW faces at ``size`` read from the face cache, one per path."""

    def __init__(self, face_paths: Sequence[str], size: int) -> None:
        self.face_paths = list(face_paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.face_paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from f2b_study.faces.cache import load_face

        face, _ = load_face(self.face_paths[index], self.size)
        return torch.from_numpy(np.ascontiguousarray(face.transpose(2, 0, 1)))


def default_batch_size(device: torch.device) -> int:
    return 256 if device.type == "cuda" else 32


def default_workers(device: torch.device) -> int:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # on the CPU the model itself uses the cores; one decoding worker keeps it fed without competing
    return min(8, max(1, cores - 1)) if device.type == "cuda" else (1 if cores > 2 else 0)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    model.eval().to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


@torch.inference_mode()
def predict_paths(model: nn.Module, face_paths: Sequence[str], *, size: int, mean: Sequence[float],
                  std: Sequence[float], device: torch.device, batch_size: int | None = None,
                  workers: int | None = None, bf16: bool = True) -> Iterator[np.ndarray]:
    """Softmax probabilities, one (batch, classes) array per batch, in the order of ``face_paths``."""
    batch_size = batch_size or default_batch_size(device)
    workers = default_workers(device) if workers is None else workers
    loader = DataLoader(CachedFaces(face_paths, size), batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    autocast = device.type == "cuda" and bf16
    for batch in loader:
        x = normalise(batch.to(device, non_blocking=True), mean, std)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        yield torch.softmax(logits.float(), dim=1).cpu().numpy()
