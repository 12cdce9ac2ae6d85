"""Face tensors for training and screening.

Standardised faces are read from the face cache once, at the model's input size, and kept as uint8 in memory;
augmentation runs per sample in DataLoader workers, and normalisation to the
model's mean/std runs per batch on the device (uint8 batches cross to the GPU at a quarter of the bytes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from f2b_study.training.augment import AugmentConfig, augment


def load_faces(face_paths: Sequence[str], size: int, progress: bool = False) -> np.ndarray:
    """All cached faces at ``size`` as one (N, size, size, 3) uint8 array (the face cache's own resize)."""
    from tqdm import tqdm

    from f2b_study.faces.cache import load_face

    out = np.empty((len(face_paths), size, size, 3), np.uint8)
    for i, path in enumerate(tqdm(face_paths, desc="loading faces", unit="face", disable=not progress, leave=False)):
        out[i] = load_face(path, size)[0]
    return out


def normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float normalised, channels_last (cheap on the device it already lives on)."""
    mean_t = torch.tensor(mean, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    out = (batch.float().div_(255.0) - mean_t) / std_t
    return out.contiguous(memory_format=torch.channels_last)


class FaceDataset(Dataset):
    """Items are (uint8 CHW image, label, index); keys are (epoch, index) pairs from an EpochSampler."""

    def __init__(self, faces: np.ndarray, labels: Sequence[int], augment_config: AugmentConfig | None,
                 seed: int) -> None:
        self.faces = faces
        self.labels = torch.tensor(np.asarray(labels, dtype=np.int64))
        self.augment_config = augment_config
        self.seed = seed

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image = self.faces[index]
        if self.augment_config is not None:
            # the augmentation depends only on (seed, epoch, index): same result whatever the worker or resume
            image = augment(image, self.augment_config, np.random.default_rng([self.seed, epoch, index]))
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), self.labels[index], index


class EpochSampler(Sampler):
    """Yields (epoch, index) keys; shuffles with a generator seeded by (seed, epoch)."""

    def __init__(self, size: int, seed: int, shuffle: bool, epoch: int = 0,
                 indices: Sequence[int] | None = None) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = epoch
        self.indices = list(indices) if indices is not None else list(range(size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.indices
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = [self.indices[i] for i in torch.randperm(len(self.indices), generator=generator).tolist()]
        return iter([(self.epoch, i) for i in order])

    def __len__(self) -> int:
        return len(self.indices)
