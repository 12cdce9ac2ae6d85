"""Screening speed and memory (issue 8).

    .venv/bin/python benchmarks/bench_screen.py throughput [--device cpu|cuda] [--images 256] [--size 224]
        [--batch 32] [--workers 1] [--threads 2] [--archs face2bone,resnet34]
    .venv/bin/python benchmarks/bench_screen.py memory [--sizes 10000,100000]

throughput: images/s of the model alone on batches already in memory vs end to end from the face cache (the
DataLoader decoding cached faces, normalising, the model, softmax), for the same model in one run; target ratio
≥ 0.8. On a GPU host, `--device cuda --batch 256 --workers 15` (bf16, channels_last) and the DESIGN §13 anchors
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
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "cohorts" / "demo"
TINY = {"input_size": 64, "dims": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "heads": [1, 2, 2, 4],
        "ssam_heads": 2, "kan_hidden": [8], "facenet_size": 80}


def cached_faces(n: int, cache: Path) -> list[str]:
    """Face-cache paths of real demo photos (standardised once), repeated to n."""
    import polars as pl

    from f2b_study.faces.preprocess import preprocess_photos

    photos = sorted(DEMO.glob("photos/*.jpg"))[:64]
    frame = pl.DataFrame({"patient_id": [p.stem for p in photos], "photo": [p.name for p in photos],
                          "path": [str(p) for p in photos]})
    with tempfile.TemporaryDirectory() as out:
        result = preprocess_photos(frame, out, cache_dir=cache, progress=False)
    paths = result.frame.filter(pl.col("status") == "ok")["face_path"].to_list()
    return [paths[i % len(paths)] for i in range(n)]


def throughput(args: argparse.Namespace) -> None:
    from f2b_study.inference.engine import predict_paths, prepare_model
    from f2b_study.models.registry import create_model, preprocessing
    from f2b_study.training.data import load_faces, normalise

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as cache:
        paths = cached_faces(args.images, Path(cache))
        rows = []
        for arch in args.archs.split(","):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = prepare_model(create_model(arch, input_size=args.size), device)
            pre = preprocessing(model)
            faces = torch.from_numpy(load_faces(paths[: args.batch], args.size).transpose(0, 3, 1, 2).copy())
            x = normalise(faces.to(device), pre["mean"], pre["std"])
            autocast = device.type == "cuda"
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                model(x)  # warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                for _ in range(max(1, args.images // args.batch)):
                    torch.softmax(model(x).float(), 1).cpu()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                model_only = max(1, args.images // args.batch) * args.batch / (time.perf_counter() - started)
            list(predict_paths(model, paths[: args.batch], size=args.size, mean=pre["mean"], std=pre["std"],
                               device=device, batch_size=args.batch, workers=args.workers))  # warm-up
            started = time.perf_counter()
            n = sum(len(b) for b in predict_paths(model, paths, size=args.size, mean=pre["mean"], std=pre["std"],
                                                  device=device, batch_size=args.batch, workers=args.workers))
            end_to_end = n / (time.perf_counter() - started)
            rows.append((arch, model_only, end_to_end))
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"\n{args.images} cached faces at {args.size} px, batch {args.batch}, {args.workers} loader worker(s), "
          f"{name}")
    print(f"{'arch':<14}{'model-only img/s':>18}{'from cache img/s':>18}{'ratio':>8}{'target':>8}")
    for arch, model_only, end_to_end in rows:
        print(f"{arch:<14}{model_only:>18.1f}{end_to_end:>18.1f}{end_to_end / model_only:>8.2f}{'≥ 0.8':>8}")


def memory_child(n: int, work: Path) -> None:
    """One `screen` over n synthetic photos; prints JSON with its peak RSS."""
    import polars as pl

    from f2b_study.inference.screen import screen
    from f2b_study.models.checkpoint import save_checkpoint
    from f2b_study.models.registry import create_model

    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", **TINY)
    from f2b_study.faces.version import PIPELINE_VERSION

    save_checkpoint(model, work / "model", preprocessing_version=PIPELINE_VERSION, seed=0)
    started = time.perf_counter()
    result = screen([work / f"cohort_{n}.toml"], model_path=work / "model", out=work / f"out_{n}",
                    cache_dir=work / "cache", progress=False, workers=1)
    seconds = time.perf_counter() - started
    assert result.images.height == n and pl.read_csv(work / f"out_{n}" / "predictions.csv").height == n
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
