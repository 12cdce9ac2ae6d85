"""Face tensors for training and screening.

Standardised faces are read from the face cache once, at the model's input size, and kept as uint8 in memory
(`models.runtime.InputTransform.load`); augmentation runs per sample in DataLoader workers, and normalisation to
the model's mean/std runs per batch on the device (`InputTransform.normalise`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from f2b_study.training.augment import AugmentConfig, augment


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
