"""Screening speed and memory (issue 8).

    .venv/bin/python benchmarks/bench_screen.py throughput [--device cpu|cuda] [--images 256] [--size 224]
        [--batch 32] [--workers 1] [--threads 2] [--archs face2bone,resnet34]
    .venv/bin/python benchmarks/bench_screen.py memory [--sizes 10000,100000]

throughput: images/s of the model alone on batches already in memory vs end to end from the face cache (the
DataLoader decoding cached faces, normalising, the model, softmax), for the same model in one run; target ratio
≥ 0.8. On a GPU host, `--device cuda --batch 256 --workers 15` (bf16, channels_last) and the documented anchors
(resnet34, vgg16, vit_b_16) in the same run.
memory: the whole `screen` (labels, photo join, preprocessing through a warm cache, chunked inference, tables,
report) over synthetic cohorts of N photos (hard links to real demo photos, so their faces come from the cache),
with a tiny model; peak RSS of each run in a fresh process. Flat RSS from 10k to 100k = streaming.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEMO,
    demo_photos,
    model_only_rate,
    quiet,
    save_model,
    screen_cohort,
    warm_face_cache,
)

TINY = {"input_size": 64, "dims": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "heads": [1, 2, 2, 4],
        "ssam_heads": 2, "kan_hidden": [8], "facenet_size": 80}


def cached_faces(n: int, cache: Path, sources: int = 64, workers: int = 1) -> list[str]:
    """Face-cache paths of real demo photos (standardised once), repeated to n."""
    paths = warm_face_cache(demo_photos(sources), cache, workers=workers)
    return [paths[i % len(paths)] for i in range(n)]


def scoring_rates(arch: str, paths: list[str], *, size: int, device: torch.device, batch: int, workers: int,
                  seconds: float, config: dict | None = None) -> tuple[float, float]:
    """(model-only img/s on one batch in memory, img/s of the screening loop streaming the cached faces from disk:
    decoding in DataLoader workers, normalising, the model, softmax) for one registry model."""
    from f2b_study.models.registry import create_model
    from f2b_study.models.runtime import InputTransform, predict_paths, prepare_model

    with quiet():
        model = prepare_model(create_model(arch, **{"input_size": size, **(config or {})}), device)
    transform = InputTransform.of(model)
    model_only = model_only_rate(model, transform.load(paths[:batch]), transform, device, batch=batch,
                                 seconds=seconds)
    list(predict_paths(model, paths[:batch], transform=transform, device=device, batch_size=batch,
                       workers=workers))  # warm-up: workers, kernels
    started = time.perf_counter()
    n = sum(len(b) for b in predict_paths(model, paths, transform=transform, device=device, batch_size=batch,
                                          workers=workers))
    return model_only, n / (time.perf_counter() - started)


def throughput(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as cache:
        paths = cached_faces(args.images, Path(cache))
        rows = [(arch, *scoring_rates(arch, paths, size=args.size, device=device, batch=args.batch,
                                      workers=args.workers, seconds=2.0))
                for arch in args.archs.split(",")]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"\n{args.images} cached faces at {args.size} px, batch {args.batch}, {args.workers} loader worker(s), "
          f"{name}")
    print(f"{'arch':<14}{'model-only img/s':>18}{'from cache img/s':>18}{'ratio':>8}{'target':>8}")
    for arch, model_only, end_to_end in rows:
        print(f"{arch:<14}{model_only:>18.1f}{end_to_end:>18.1f}{end_to_end / model_only:>8.2f}{'≥ 0.8':>8}")


def memory_child(n: int, work: Path) -> None:
    """One `screen` over n synthetic photos; prints JSON with its peak RSS."""
    import polars as pl

    torch.set_num_threads(2)
    save_model(work / "model", **TINY)
    started = time.perf_counter()
    summary = screen_cohort(work / f"cohort_{n}.toml", model=work / "model", out=work / f"out_{n}",
                            cache=work / "cache", workers=1)
    seconds = time.perf_counter() - started
    assert summary["photos"] == n and pl.read_csv(work / f"out_{n}" / "predictions_images.csv").height == n
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}))


def memory(args: argparse.Namespace) -> None:
    import polars as pl

    sources = sorted(DEMO.glob("photos/*.jpg"))[:64]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in (int(s) for s in args.sizes.split(",")):
            photos = work / f"photos_{n}"
            photos.mkdir()
            ids = [f"S{i:07d}" for i in range(n)]
            for i, patient_id in enumerate(ids):
                os.link(sources[i % len(sources)], photos / f"{patient_id}.jpg")
            pl.DataFrame({"patient_id": ids, "sex": ["F"] * n, "age_years": [60] * n}).write_csv(
                work / f"cohort_{n}.csv")
            (work / f"cohort_{n}.toml").write_text(f'name = "s{n}"\ncsv = "cohort_{n}.csv"\nphotos = "photos_{n}"\n')
            child = subprocess.run([sys.executable, __file__, "memory-child", str(n), str(work)], capture_output=True,
                                   text=True, check=True)
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"\n{'photos':>10}{'seconds':>10}{'photos/s':>10}{'peak RSS MB':>13}")
    for row in rows:
        print(f"{row['n']:>10,}{row['seconds']:>10.1f}{row['n'] / row['seconds']:>10.0f}{row['peak_rss_mb']:>13.0f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "memory-child":
        memory_child(int(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--device", default="cpu")
    t.add_argument("--images", type=int, default=256)
    t.add_argument("--size", type=int, default=224)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--workers", type=int, default=1)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--archs", default="face2bone,resnet34")
    m = sub.add_parser("memory")
    m.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    (throughput if args.what == "throughput" else memory)(args)


if __name__ == "__main__":
    main()
