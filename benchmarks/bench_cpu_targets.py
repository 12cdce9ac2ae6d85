"""Issue 17's CPU targets, before and after in one run: Face2Bone's inference speed as a ratio to ResNet34's, and
region Shapley's speed, each after this change and before it (9d930ef) in the same process: "before" runs
facenet-pytorch's own forward (models.facenet_inference.plain_facenet()) and Hi-Fi's windows through the fused SDPA
kernel (HiLoAttention.cpu_window_matmuls off) and the FFN's depthwise conv and GELU as two passes (oneDNN's
fused op off); "after" runs FaceNet's fused inference copy (models/facenet_inference.py), Hi-Fi's small-window
matmuls and the fused depthwise conv + GELU (models/onednn.py).

    .venv/bin/python benchmarks/bench_cpu_targets.py                  # 2 threads, batch 8, 224 px
    .venv/bin/python benchmarks/bench_cpu_targets.py --batch 4 --shapley-images 16

Throughput rows are measured interleaved: every round runs each row once, in turn, so a noisy neighbour or a
clock change hits all rows alike; the table gives the fastest and the median step per row (ms per image) and the
ratio of ResNet34's fastest step to the row's. "resnet34, BN folded" is the comparator given the same kind of
inference-only rewrite (torch.fx.experimental.optimization.fuse folds its BatchNorms), for a fair reading.
The Shapley part explains the same synthetic faces with the demo's model (bench_explain.py's setup), alternating
before/after runs, and checks that both give the same values.
Targets (issue 17; 2 threads): face2bone >= 1.2x ResNet34's img/s; region Shapley >= 2x faster than before.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_explain import DEMO, synthetic

from f2b_study.explain.shapley import region_shapley
from f2b_study.models import onednn
from f2b_study.models.facenet_inference import plain_facenet
from f2b_study.models.hilo import HiLoAttention
from f2b_study.models.registry import build_architecture, create_model, get_spec, preprocessing


@contextlib.contextmanager
def before_this_change() -> Iterator[None]:
    """The code paths of 9d930ef: facenet-pytorch's own forward, Hi-Fi windows through the fused SDPA kernel, the
    FFN's depthwise conv and GELU as two passes."""
    previous = HiLoAttention.cpu_window_matmuls, onednn.AVAILABLE
    HiLoAttention.cpu_window_matmuls, onednn.AVAILABLE = False, False
    try:
        with plain_facenet():
            yield
    finally:
        HiLoAttention.cpu_window_matmuls, onednn.AVAILABLE = previous


def interleaved(rows: dict[str, Callable[[], object]], *, rounds: int, seconds: float) -> dict[str, list[float]]:
    """Seconds per call of each row, the rows taking turns; at least `rounds` rounds and `seconds` in all."""
    times: dict[str, list[float]] = {name: [] for name in rows}
    for fn in rows.values():  # warm-up: allocator, oneDNN primitives, packed weights
        fn()
        fn()
    start = time.perf_counter()
    while min(len(v) for v in times.values()) < rounds or time.perf_counter() - start < seconds:
        for name, fn in rows.items():
            tick = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - tick)
    return times


def throughput_rows(batch: int, size: int) -> dict[str, Callable[[], object]]:
    from torch.fx.experimental.optimization import fuse

    def registry(name: str) -> torch.nn.Module:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build_architecture(name, get_spec(name).config(input_size=size)).eval()

    face2bone, resnet34 = registry("face2bone"), registry("resnet34")
    folded = fuse(registry("resnet34"))
    x = torch.randn(batch, 3, size, size)
    embedding = torch.nn.functional.normalize(torch.randn(batch, 512), dim=1)

    def before(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with before_this_change():
                return fn()
        return run

    whole = lambda: face2bone(x)  # noqa: E731
    facenet = lambda: face2bone.facenet(x)  # noqa: E731
    image = lambda: face2bone(x, face_embedding=embedding)  # noqa: E731
    return {"resnet34": lambda: resnet34(x), "resnet34, BN folded": lambda: folded(x),
            "face2bone (after)": whole, "face2bone (before)": before(whole),
            "  FaceNet branch (after)": facenet, "  FaceNet branch (before)": before(facenet),
            "  image branch + SSAM + KAN (after)": image, "  image branch + SSAM + KAN (before)": before(image)}


def shapley_rows(n_images: int, repeats: int) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("face2bone", **DEMO).eval()
    pre = preprocessing(model)
    faces, masks, baseline = synthetic(n_images, pre["input_size"])

    def run() -> tuple[float, np.ndarray, int]:
        result = region_shapley(model, faces, masks, baseline, mean=pre["mean"], std=pre["std"], batch_size=64)
        return result.seconds, result.values, result.model_evaluations

    run()  # warm-up
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    values: dict[str, np.ndarray] = {}
    passes = 0
    for _ in range(repeats):
        with before_this_change():
            took, values["before"], passes = run()
        seconds["before"].append(took)
        took, values["after"], _ = run()
        seconds["after"].append(took)
    gap = float(np.abs(values["after"] - values["before"]).max())
    best = {k: min(v) for k, v in seconds.items()}
    lines = [f"\nregion Shapley, demo model ({pre['input_size']} px, FaceNet on every composite), {n_images} "
             f"synthetic faces x 32 coalitions ({passes} model passes), best of {repeats} alternating runs",
             "", "| code | seconds | s per 1,000 images | speed-up |", "|---|---:|---:|---:|"]
    for key, label in (("before", "before (9d930ef)"), ("after", "after")):
        lines.append(f"| {label} | {best[key]:.2f} | {best[key] * 1000 / n_images:,.0f} | "
                     f"{best['before'] / best[key]:.2f}x |")
    lines.append(f"\nlargest difference between the two runs' Shapley values: {gap:.2g} (target speed-up 2x)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds at least (default 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="and at least this long (default 30)")
    parser.add_argument("--parts", nargs="+", choices=("throughput", "shapley"), default=["throughput", "shapley"])
    parser.add_argument("--shapley-images", type=int, default=8, help="faces to explain (default 8)")
    parser.add_argument("--shapley-repeats", type=int, default=3, help="alternating before/after runs (default 3)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; fp32 inference; batch {args.batch}; "
          f"{args.input_size} px; rows interleaved")
    if "throughput" in args.parts:
        rows = throughput_rows(args.batch, args.input_size)  # built outside inference mode, as the commands do
        with torch.inference_mode():
            times = interleaved(rows, rounds=args.rounds, seconds=args.seconds)
        reference = min(times["resnet34"])
        print("\n| row | ms/img (fastest) | ms/img (median) | img/s | / resnet34 |\n|---|---:|---:|---:|---:|")
        for name, steps in times.items():
            fastest, median = min(steps) / args.batch, statistics.median(steps) / args.batch
            print(f"| {name} | {fastest * 1e3:.1f} | {median * 1e3:.1f} | {1 / fastest:.1f} | "
                  f"{reference / min(steps):.3f} |")
        print(f"\n{len(times['resnet34'])} rounds; target: face2bone >= 1.2x resnet34")
    if "shapley" in args.parts:
        print("\n".join(shapley_rows(args.shapley_images, args.shapley_repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
