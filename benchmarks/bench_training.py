"""Seconds per training epoch at the paper's size (832 images, 224 px, batch 32) for registry models.

    .venv/bin/python benchmarks/bench_training.py [--archs face2bone,resnet34] [--images 832] [--size 224]
        [--device cpu|cuda] [--threads 2] [--epochs 1] [--workers N] [--compile]

Faces are synthetic (random uint8): an epoch's cost does not depend on what the pixels show. The run uses the
real Trainer (augmentation in the DataLoader, OneCycleLR, validation on 20%), so the numbers include everything
a real epoch does. Prints one table, ratios against the first arch in the same run, and the projection to the
paper's 150 epochs. Target (issue 5): 150 paper-sized epochs in ≤ 5 minutes on an H100.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def run(arch: str, args: argparse.Namespace, faces: np.ndarray, labels: np.ndarray,
        config: dict | None = None) -> dict[str, float]:
    """The real Trainer for args.epochs epochs on ``faces``; the last epoch's seconds and training img/s."""
    from f2b_study.models.registry import create_model
    from f2b_study.models.runtime import InputTransform
    from f2b_study.training.loop import Trainer
    from f2b_study.training.settings import TrainSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(arch, **{"input_size": args.size, **(config or {})})
    n = len(faces)
    val = np.arange(n) % 5 == 0
    settings = TrainSettings(arch=arch, epochs=args.epochs, batch_size=args.batch, workers=args.workers,
                             compile=args.compile, patience=10_000)  # augment None: the paper's four
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, faces=faces, labels=labels, patients=[f"p{i}" for i in range(n)],
                          train_index=np.flatnonzero(~val), val_index=np.flatnonzero(val),
                          transform=InputTransform.of(model), settings=settings, out=Path(out),
                          save_best=lambda *_: None, device=args.device, progress=False)
        started = time.perf_counter()
        history = trainer.fit()
        total = time.perf_counter() - started
    last = history[-1]
    return {"epoch_s": last.seconds, "train_img_s": last.images_per_second, "total_s": total,
            "embedding_cache": float(trainer.embeddings is not None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="face2bone,resnet34")
    parser.add_argument("--images", type=int, default=832)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs (the last one is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, args.images)
    rows = [(arch, run(arch, args, faces, labels)) for arch in args.archs.split(",")]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"\n{args.images} images at {args.size} px, batch {args.batch}, {device}; last of {args.epochs} epoch(s)")
    print(f"{'arch':<20}{'s/epoch':>10}{'train img/s':>13}{'ratio':>8}{'150 epochs':>13}{'emb. cache':>12}")
    base = rows[0][1]["epoch_s"]
    for arch, r in rows:
        print(f"{arch:<20}{r['epoch_s']:>10.1f}{r['train_img_s']:>13.1f}{r['epoch_s'] / base:>8.2f}"
              f"{150 * r['epoch_s'] / 60:>11.1f} m{'yes' if r['embedding_cache'] else 'no':>12}")


if __name__ == "__main__":
    main()
