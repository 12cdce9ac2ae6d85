"""Region Shapley throughput (docs/methods.md): seconds for N images × 32 coalitions, both FaceNet modes, one run.

CPU (the demo's model: face2bone at 112 px, dims 24/48/96/192, depths 1/1/2/1, frozen FaceNet at 160 px):
    .venv/bin/python benchmarks/bench_explain.py --images 16
GPU host (the paper-sized model at 224 px, 1,000 images, bf16):
    .venv/bin/python benchmarks/bench_explain.py --device cuda --images 1000 --paper --batch 256

Faces are random pixels with five synthetic bands as regions (the cost does not depend on the pixels); the model
is randomly initialised (the cost does not depend on the weights). Rows: "masked" (FaceNet sees every composite:
the exact game for the whole model) and "original" (FaceNet sees the unmasked face once per image), plus the
model alone on the N images (one pass, "model x1") so the ratio to 32 passes reads directly. The table gives the
measured seconds, images/s, the extrapolation to 1,000 images and the model passes region_shapley made (N × 32
less the identical composites it reused). Timings on a shared machine are noisy: compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from f2b_study.explain.shapley import region_shapley
from f2b_study.models.registry import create_model, preprocessing

DEMO = {"dims": (24, 48, 96, 192), "depths": (1, 1, 2, 1), "input_size": 112}


def synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ellipse = ((yy - size / 2) / (0.45 * size)) ** 2 + ((xx - size / 2) / (0.38 * size)) ** 2 <= 1
    band = np.minimum((yy * 5) // size, 4)
    masks = np.stack([(band == k) & ellipse for k in range(5)])
    faces = (rng.integers(0, 256, (n, size, size, 3)) * ellipse[None, :, :, None]).astype(np.uint8)
    baseline = faces.astype(np.float32).mean(axis=0)
    return faces, np.repeat(masks[None], n, axis=0), baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=1000, help="images to explain (default 1000)")
    parser.add_argument("--paper", action="store_true", help="face2bone's default config at 224 px instead of the "
                        "demo's small model at 112 px")
    parser.add_argument("--arch", default="face2bone", help="registry model (default face2bone)")
    parser.add_argument("--batch", type=int, help="composites per forward pass (default 64 CPU, 256 CUDA)")
    parser.add_argument("--threads", type=int, help="CPU threads (default torch's)")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--modes", nargs="*", default=["masked", "original"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = {} if args.paper or not args.arch.startswith("face2bone") else DEMO
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(args.arch, **config).to(device).eval()
    pre = preprocessing(model)
    size = pre["input_size"]
    faces, masks, baseline = synthetic(args.images, size)
    batch = args.batch or (256 if device.type == "cuda" else 64)
    bf16 = not args.no_bf16
    # warm-up: kernels, allocator, autotuning
    region_shapley(model, faces[:2], masks[:2], baseline, mean=pre["mean"], std=pre["std"], device=device,
                   batch_size=batch, bf16=bf16)
    rows = []
    with torch.inference_mode():
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(255)
        start = time.perf_counter()
        for first in range(0, len(x), batch):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and bf16):
                model(x[first:first + batch].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        rows.append(("model x1 (no Shapley)", time.perf_counter() - start, args.images, args.images))
    for mode in args.modes:
        result = region_shapley(model, faces, masks, baseline, mean=pre["mean"], std=pre["std"], device=device,
                                batch_size=batch, facenet_input=mode, bf16=bf16)
        rows.append((f"region Shapley, FaceNet {result.facenet_input}", result.seconds, args.images,
                     result.model_evaluations))
        assert result.efficiency_gap < 1e-5, result.efficiency_gap
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.arch} at {size} px ({'paper config' if not config else 'demo config'}), {name}, batch {batch}, "
          f"{'bf16' if device.type == 'cuda' and bf16 else 'fp32'}, {args.images} images × 32 coalitions")
    print(f"{'row':<40} {'seconds':>9} {'img/s':>9} {'s per 1000 img':>15} {'x model':>8} {'model passes':>13}")
    reference = rows[0][1]
    for label, seconds, n, passes in rows:
        per_thousand = seconds * 1000 / n
        print(f"{label:<40} {seconds:>9.2f} {n / seconds:>9.1f} {per_thousand:>15.1f} "
              f"{seconds / reference if reference > 0 else math.nan:>8.1f} {passes:>13,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
