"""Parameters, GMACs and throughput of every registry model, with the documented anchors measured in the same run.

CPU (default; small batch):
    .venv/bin/python benchmarks/bench_models.py
    .venv/bin/python benchmarks/bench_models.py --models face2bone resnet34 --mode train --input-size 112
GPU host (the §13 setting):
    .venv/bin/python benchmarks/bench_models.py --device cuda --dtype bf16 --batch 256 --channels-last --compile

Rows: every registry entry, plus "facenet@160" (InceptionResnetV1 alone at 160 px, a §13 anchor) and Face2Bone's
parts: "face2bone:image+ssam+kan" (forward with a precomputed face embedding: the FSA branch, SSAM and KAN) and
"face2bone:facenet" (the FaceNet branch with its resize). --tksa adds a benchmark of the top-k attention at the
stage shapes: the one-pass implementation against DRSformer's four-topk reference. --breakdown times every FSA
sub-layer alone at each stage's shape, to show what limits the branch.
Throughput = batch / fastest step time (as timeit advises: the step least disturbed by other work on a shared
machine).
On CUDA the table also shows the §13 anchor throughputs (H100, bf16, batch 256) and measured/anchor ratios, so
runs on other cards can be read against them; compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fastest_step, synchronize

from f2b_study.models.flops import count_flops, count_parameters
from f2b_study.models.registry import build_architecture, get_spec, list_models

# docs/methods.md, Performance: H100, bf16, batch 256, img/s.
ANCHORS = {"resnet34": 24_500, "facenet@160": 21_400, "vgg16": 7_800, "vit_b_16": 6_400}
TARGET = {"face2bone": 8_000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16 = autocast")
    parser.add_argument("--batch", type=int, help="images per step (default 4 on CPU, 256 on CUDA)")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model (mode max-autotune-no-"
                        "cudagraphs on CUDA)")
    parser.add_argument("--mode", choices=("infer", "train"), default="infer",
                        help="infer: forward under inference_mode; train: forward + backward + Adam step")
    parser.add_argument("--models", nargs="*", help="subset of rows (default: all)")
    parser.add_argument("--seconds", type=float, help="time per row after warm-up (default 3 CPU, 5 CUDA)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--tksa", action="store_true", help="also time top-k attention: fast vs reference")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each FSA sub-layer at each stage's shape (what limits the branch)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    return parser.parse_args(argv)


class FaceNetAnchor(nn.Module):
    """facenet-pytorch's InceptionResnetV1 alone (its input is already 160 px)."""

    def __init__(self) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        self.net = InceptionResnetV1(classify=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ImagePart(nn.Module):
    """Face2Bone with the face embedding given: what runs besides FaceNet."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("embedding", torch.nn.functional.normalize(torch.randn(1, 512), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, face_embedding=self.embedding.expand(x.shape[0], -1))


class FaceNetPart(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.facenet = model.facenet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.facenet(x)


def rows_to_build(args: argparse.Namespace) -> list[tuple[str, Callable[[], nn.Module], int]]:
    """(row name, model factory, input size) in table order."""
    size = args.input_size

    def registry(name: str) -> Callable[[], nn.Module]:
        return lambda: build_architecture(name, get_spec(name).config(input_size=size))

    rows: list[tuple[str, Callable[[], nn.Module], int]] = [(n, registry(n), size) for n in list_models()]
    face2bone = registry("face2bone")
    rows += [("face2bone:image+ssam+kan", lambda: ImagePart(face2bone()), size),
             ("face2bone:facenet", lambda: FaceNetPart(face2bone()), size),
             ("facenet@160", FaceNetAnchor, 160)]
    if args.models:
        unknown = set(args.models) - {r[0] for r in rows}
        if unknown:
            raise SystemExit(f"unknown rows {sorted(unknown)}; choose from {[r[0] for r in rows]}")
        rows = [r for r in rows if r[0] in args.models]
    return rows


def measure(model: nn.Module, size: int, args: argparse.Namespace, device: torch.device) -> float:
    """Images per second."""
    batch, fmt = args.batch, torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    labels = torch.arange(batch, device=device) % 3
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    step_model: Callable[..., torch.Tensor] = model
    if args.compile:
        mode = getattr(args, "compile_mode", None) or ("max-autotune-no-cudagraphs" if device.type == "cuda" else None)
        step_model = torch.compile(model, mode=None if mode == "default" else mode)
    if args.mode == "train":
        model.train()
        optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            with autocast:
                out = step_model(x)
            loss = torch.nn.functional.cross_entropy(out.float(), labels) if out.shape[-1] == 3 else out.float().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode(), autocast:
                step_model(x)

    warmup = getattr(args, "warmup", None) or (3 if args.compile else 2)
    return batch / fastest_step(step, device, seconds=args.seconds, warmup=warmup,
                                min_steps=getattr(args, "min_steps", None) or 3)


def tksa_reference(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DRSformer's forward: four topk calls, scattered masks, masked softmaxes and matmuls with V."""
    b, c, h, w = x.shape
    q, k, v = module.qkv_heads(x)
    scores = module.scores(q, k)
    out = 0
    for k_i, weight in zip(module.ks, module.mix, strict=True):
        mask = torch.zeros_like(scores).scatter_(-1, torch.topk(scores, k_i, dim=-1)[1], 1.0)
        masked = torch.where(mask > 0, scores, torch.full_like(scores, float("-inf")))
        out = out + (masked.softmax(-1) @ v) * weight
    return module.project_out(out.reshape(b, c, h, w))


def bench_tksa(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Top-k attention forward at each stage's map: the one-pass implementation vs DRSformer's reference."""
    from f2b_study.models.face2bone import DEFAULTS
    from f2b_study.models.topk_attention import TopKChannelAttention

    lines = ["", f"top-k attention forward (qkv convs + attention + projection), batch {args.batch}, {args.dtype}, "
             "ms per call", f"{'stage':>5} {'C':>4} {'map':>7} {'one-pass':>9} {'4x topk':>8} {'speed-up':>8}"]
    size = args.input_size // 4
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    for stage, (dim, heads) in enumerate(zip(DEFAULTS["dims"], DEFAULTS["heads"], strict=True), 1):
        module = TopKChannelAttention(dim, heads).to(device).eval()
        x = torch.randn(args.batch, dim, size, size, device=device)
        timings = []
        for fn in (module, lambda t, m=module: tksa_reference(m, t)):
            steps = []
            with torch.inference_mode(), autocast:
                fn(x)
                while len(steps) < 5 or sum(steps) < 1.0:
                    synchronize(device)
                    start = time.perf_counter()
                    fn(x)
                    synchronize(device)
                    steps.append(time.perf_counter() - start)
            timings.append(min(steps) * 1e3)
        lines.append(f"{stage:>5} {dim:>4} {size:>3}x{size:<3} {timings[0]:>9.3f} {timings[1]:>8.3f} "
                     f"{timings[1] / timings[0]:>7.2f}x")
        size = math.ceil(size / 2)
    return lines


def time_call(fn: Callable[[], object], device: torch.device, seconds: float = 0.5) -> float:
    """Fastest milliseconds of fn() after one warm-up call."""
    fn()
    steps: list[float] = []
    while len(steps) < 5 or sum(steps) < seconds:
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        steps.append(time.perf_counter() - start)
    return min(steps) * 1e3


def bench_breakdown(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Where Face2Bone's forward time goes: each FSA sub-layer timed alone at its stage's shape, times depth."""
    from f2b_study.models.face2bone import DEFAULTS
    from f2b_study.models.fsa import FSABlock

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    rows: list[tuple[str, float]] = []
    size = args.input_size // 4
    for stage, (dim, depth, heads) in enumerate(zip(DEFAULTS["dims"], DEFAULTS["depths"], DEFAULTS["heads"],
                                                    strict=True), 1):
        block = FSABlock(dim, heads, window=DEFAULTS["window"], alpha=DEFAULTS["alpha"],
                         ffn_ratio=DEFAULTS["ffn_ratio"]).to(device).eval()
        x = torch.randn(args.batch, dim, size, size, device=device).contiguous(memory_format=fmt)
        y = x.permute(0, 2, 3, 1)
        hilo = block.hilo
        parts = {
            "tksa (one-pass)": lambda b=block, t=x: b.sparse(b.norm1(t)),
            "tksa (DRSformer 4x topk)": lambda b=block, t=x: tksa_reference(b.sparse, b.norm1(t)),
            "hilo hi-fi (sdpa kernel)": lambda h=hilo, t=y: h.hifi(t, sdpa=True),
            "hilo hi-fi (matmuls)": lambda h=hilo, t=y: h.hifi(t, sdpa=False),
            "hilo lo-fi (sdpa)": lambda h=hilo, t=y: h.lofi(t),
            "ffn": lambda b=block, t=x: b.ffn(b.norm3(t)),
            "whole block": lambda b=block, t=x: b(t),
        }
        with torch.inference_mode(), autocast:
            for label, fn in parts.items():
                rows.append((f"stage {stage} ({dim}ch {size}x{size}) x{depth}: {label}", time_call(fn, device) * depth))
        size = math.ceil(size / 2)
    total = sum(ms for label, ms in rows if label.endswith("whole block"))
    lines = ["", f"FSA branch breakdown: ms per batch of {args.batch} (sub-layers timed alone, times depth; "
             f"{args.dtype}); the 'whole block' rows sum to {total:.2f} ms"]
    lines += [f"  {label:<58} {ms:>9.3f}" for label, ms in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batch = args.batch or (256 if cuda else 4)
    args.seconds = args.seconds or (5.0 if cuda else 3.0)
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {where}; torch {torch.__version__}; {args.mode}; {args.dtype}; batch {args.batch}; "
          f"channels_last={args.channels_last}; compile={args.compile}; input {args.input_size} px", flush=True)
    results = []
    for name, factory, size in rows_to_build(args):
        torch.manual_seed(0)
        model = factory()
        total, _ = count_parameters(model)
        with torch.device("meta"):
            gmacs = count_flops(factory(), size) / 2e9
        trainable = any(p.requires_grad for p in model.parameters())
        try:
            rate = measure(model, size, args, device) if trainable or args.mode == "infer" else float("nan")
        except torch.OutOfMemoryError:
            rate = float("nan")
        results.append({"name": name, "params": total, "gmacs": gmacs, "input_size": size, "img_per_s": rate})
        print(f"  {name}: {rate:,.1f} img/s", file=sys.stderr, flush=True)
        del model
        if cuda:
            torch.cuda.empty_cache()
    print(format_table(results, cuda))
    if args.tksa:
        print("\n".join(bench_tksa(args, device)))
    if args.breakdown:
        print("\n".join(bench_breakdown(args, device)))
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()},
                                         "device": where, "rows": results}, indent=2))
    return 0


def format_table(results: list[dict], cuda: bool) -> str:
    by_name = {r["name"]: r for r in results}
    ref = by_name.get("resnet34", {}).get("img_per_s")
    header = f"{'model':<26} {'params(M)':>9} {'GMACs':>6} {'px':>4} {'img/s':>10} {'ms/img':>8} {'/resnet34':>9}"
    if cuda:
        header += f" {'§13 anchor':>10} {'/anchor':>7}"
    lines = [header]
    for r in results:
        rate = r["img_per_s"]
        gmacs = f"{r['gmacs']:.2f}"
        line = (f"{r['name']:<26} {r['params'] / 1e6:>9.2f} {gmacs:>6} {r['input_size']:>4} {rate:>10,.1f} "
                f"{1e3 / rate:>8.2f} {rate / ref if ref else float('nan'):>9.3f}")
        if cuda:
            anchor = ANCHORS.get(r["name"]) or TARGET.get(r["name"])
            line += f" {anchor or '':>10} {rate / anchor if anchor else float('nan'):>7.2f}"
        lines.append(line)
    if cuda:
        measured = [by_name[n]["img_per_s"] / a for n, a in ANCHORS.items() if n in by_name]
        if measured and "face2bone" in by_name:
            scale = math.exp(sum(math.log(m) for m in measured) / len(measured))
            lines.append(f"this card runs the §13 anchors at {scale:.2f}x the reference H100 (geometric mean); "
                         f"face2bone scaled to the reference: {by_name['face2bone']['img_per_s'] / scale:,.0f} "
                         f"img/s (target {TARGET['face2bone']:,})")
    lines.append("anchors (docs/methods.md, Performance, H100 bf16 batch 256): " +
                 ", ".join(f"{k} {v:,}" for k, v in ANCHORS.items()) + f"; target face2bone >= {TARGET['face2bone']:,}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
