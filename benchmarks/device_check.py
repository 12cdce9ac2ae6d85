"""One command for a GPU day: every speed and correctness number the project needs from a CUDA machine, in one
markdown table, within 8 minutes on one H100/H200.

    python benchmarks/device_check.py                      # on the GPU host; writes device_check.md
    python benchmarks/device_check.py --out $OUT/device_check.md --budget 450
    python benchmarks/device_check.py --only throughput-eager,screen
    python benchmarks/device_check.py --dry-run            # every part at tiny shapes on the CPU (tests run this)

Parts, in order (each in its own forked process with its own time budget, so one that fails or hangs prints
its error in its row and the others still run; rows are kept as they are measured):
  equality            CPU vs CUDA outputs (fp32 with TF32 off; bf16 autocast), the fast image branch against the
                      textbook reference on CUDA (values and gradients), checkpoint round trip
  throughput-eager    every registry model, bf16, batch 256, channels_last, with the documented anchors (ResNet18/34,
                      VGG16/19, ViT-B/16, FaceNet@160) and Face2Bone's two branches measured in the same run
  throughput-compile  the same under torch.compile (Face2Bone and the ResNet34 anchor first, then the others while
                      the budget lasts)
  training            Face2Bone train steps at 224 px, batch 32 and 256; the real Trainer's epoch on the paper's
                      832 images (batch 32) with the projection to 150 epochs
  screen              screening end to end (`_common.screen_cohort`, the one call into the screening API) vs the
                      model alone, on a synthetic cohort over a warm face cache
  shapley             region Shapley images/s (FaceNet on the composite, and on the original face)
  ddp                 torchrun with NCCL on every GPU present (world size 1 goes through torchrun too): all-reduce
                      check and DDP train-step img/s
  ray                 `screen --engine ray` with one GPU actor per GPU on a local Ray instance

Packages: a part whose package is missing (facenet-pytorch, polars, mediapipe, ray) says "skipped: ..." in its row.
MediaPipe is needed only to fill the face cache once: `--fill-face-cache DIR` standardises the 64 demo photos the
GPU run uses (here, on the CPU: seconds, ~5 MB), and `--face-cache DIR` on the GPU host then needs no MediaPipe.

A GPU day with a bare host (the workplace's H200: torch, numpy, scipy, opencv, pyarrow, safetensors are there;
facenet-pytorch, polars, mediapipe and ray are not):
  here:  python benchmarks/device_check.py --fill-face-cache .devcache      (.devcache and .whl git-ignored)
         pip download --no-deps --only-binary=:all: ... -d .whl facenet-pytorch polars polars-runtime-32
  there: pip install -q --no-index --no-deps --target .gpu-site .whl/*.whl && PYTHONPATH=.gpu-site \
         python benchmarks/device_check.py --face-cache .devcache --out $OUT/device_check.md
Ray's wheel (~70 MB) does not fit the 64 MiB a call carries: without it the ray row says so.
Processes the run starts (torchrun's ranks, Ray's workers) import this checkout's package (PYTHONPATH is set).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# Screening goes through this one function (the screening API is being reshaped, issue 12: adapt it there).
from _common import screen_cohort  # noqa: E402

DEFAULT_BUDGET = 450.0  # seconds for all parts; with start-up the run stays under 8 minutes


# -- what to run: the GPU plan and the tiny CPU plan ---------------------------------------------------------------

TINY_FACE2BONE = {"dims": [16, 16, 32, 32], "depths": [1, 1, 1, 1], "heads": [2, 2, 2, 2], "ssam_heads": 2,
                  "kan_hidden": [8], "input_size": 64, "facenet_size": 96}


@dataclasses.dataclass(frozen=True)
class Plan:
    dry: bool
    device: str
    batch: int  # throughput and screening batch
    seconds: float  # timing per throughput row
    size: int  # Face2Bone's input size
    face2bone: dict[str, Any]  # Face2Bone config overrides
    comparator_sizes: dict[str, int]  # comparators' input size in the dry run
    train_batches: tuple[int, ...]
    trainer_images: int
    trainer_epochs: int
    cache_sources: int  # distinct demo photos standardised into the face cache
    screen_photos: int
    shapley_images: int
    ddp_batch: int  # per rank
    ray_photos: int

    @property
    def precision(self) -> str:
        return "fp32 (CPU)" if self.dry else "bf16 autocast"


def gpu_plan(device: str) -> Plan:
    return Plan(dry=False, device=device, batch=256, seconds=1.0, size=224, face2bone={}, comparator_sizes={},
                train_batches=(32, 256), trainer_images=832, trainer_epochs=2, cache_sources=64, screen_photos=8192,
                shapley_images=256, ddp_batch=32, ray_photos=4096)


def dry_plan() -> Plan:
    return Plan(dry=True, device="cpu", batch=4, seconds=0.0, size=64, face2bone=dict(TINY_FACE2BONE),
                comparator_sizes={"vgg16": 32, "vgg19": 32, "vit_b_16": 32, "resnet18": 64, "resnet34": 64},
                train_batches=(4,), trainer_images=20, trainer_epochs=1, cache_sources=2, screen_photos=8,
                shapley_images=2, ddp_batch=2, ray_photos=4)


# -- rows ---------------------------------------------------------------------------------------------------------

class Rows:
    """The rows of one part, appended to a JSON-lines file as they are measured (a part stopped at its time limit
    keeps what it had)."""

    def __init__(self, part: str, path: Path) -> None:
        self.part, self.path = part, path

    def add(self, item: str, value: float | None = None, unit: str = "", vs: str = "", note: str = "") -> None:
        row = {"part": self.part, "item": item, "value": value, "unit": unit, "vs": vs, "note": note}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        shown = "" if value is None else f"{value:,.4g} {unit}"
        print(f"  [{self.part}] {item}: {shown} {vs} {note}".rstrip(), file=sys.stderr, flush=True)

    def skip(self, item: str, why: str) -> None:
        self.add(item, note=f"skipped: {why}")

    def error(self, item: str, error: BaseException) -> None:
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [""]
        # the first line says what failed; a wrapped error (Ray's, a subprocess's) says why on its last line
        text = lines[0][:160] + (f" … {lines[-1][:160]}" if len(lines) > 1 else "")
        self.add(item, note=f"error: {type(error).__name__}: {text}")


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float) -> bool:
        """Whether ``seconds`` more still fit."""
        return self.left() >= seconds


def guarded(rows: Rows, item: str, fn: Callable[[], None]) -> None:
    """Run one measurement; its failure becomes its row and the part goes on."""
    try:
        fn()
    except Exception as error:  # every failure is reported in the table, whatever its kind
        traceback.print_exc(file=sys.stderr)
        rows.error(item, error)


def missing(*modules: str) -> str | None:
    """The first of ``modules`` that cannot be imported, as a skip reason."""
    import importlib.util

    for name in modules:
        if importlib.util.find_spec(name) is None:
            return f"{name} not installed"
    return None


def settings_note(plan: Plan) -> str:
    return f"{plan.precision}, batch {plan.batch}, channels_last" + (", dry run (CPU)" if plan.dry else "")


# -- models -------------------------------------------------------------------------------------------------------

def build(name: str, plan: Plan, **extra: Any) -> Any:
    """A randomly initialised registry model at the plan's size (no warnings)."""
    from _common import quiet

    from f2b_study.models.registry import create_model

    config = dict(plan.face2bone) if name.startswith("face2bone") else {}
    if name in plan.comparator_sizes:
        config["input_size"] = plan.comparator_sizes[name]
    if name.startswith("face2bone") and not plan.dry:
        config["input_size"] = plan.size
    with quiet():
        return create_model(name, **{**config, **extra})


def throughput_rows(plan: Plan) -> list[tuple[str, Callable[[], Any], int]]:
    """(row name, model factory, input size): the registry, Face2Bone's two branches, FaceNet@160 alone."""
    from bench_models import FaceNetAnchor, FaceNetPart, ImagePart

    from f2b_study.models.registry import list_models

    rows = []
    for name in list_models():
        size = plan.size if name.startswith("face2bone") else plan.comparator_sizes.get(name, 224)
        rows.append((name, lambda n=name: build(n, plan), size))
    rows += [("face2bone:image+ssam+kan", lambda: ImagePart(build("face2bone", plan)), plan.size),
             ("face2bone:facenet", lambda: FaceNetPart(build("face2bone", plan)), plan.size),
             ("facenet@160", FaceNetAnchor, 96 if plan.dry else 160)]
    # what matters most first, should the budget run out: the target, its anchor, Face2Bone's branches
    first = ["face2bone", "resnet34", "facenet@160", "face2bone:image+ssam+kan", "face2bone:facenet", "resnet18",
             "vgg16", "vgg19", "vit_b_16"]
    return sorted(rows, key=lambda r: first.index(r[0]) if r[0] in first else len(first))


def measure_args(plan: Plan, *, mode: str = "infer", batch: int | None = None, compile: bool = False) -> Any:
    """bench_models.measure's settings."""
    return argparse.Namespace(batch=batch or plan.batch, channels_last=True, dtype="fp32" if plan.dry else "bf16",
                              compile=compile, compile_mode="default", mode=mode, seconds=plan.seconds,
                              warmup=1 if plan.dry else None, min_steps=1 if plan.dry else None)


def cuda_setup(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


# -- parts --------------------------------------------------------------------------------------------------------

def part_equality(plan: Plan, rows: Rows, budget: Budget, work: Path) -> None:
    import torch

    from f2b_study.models.checkpoint import load_checkpoint, save_checkpoint

    device = torch.device(plan.device)
    other = "CUDA" if device.type == "cuda" else "CPU (dry run: the CPU against itself)"
    torch.manual_seed(0)
    model = build("face2bone", plan).eval()
    x = torch.randn(8, 3, plan.size, plan.size)
    with torch.inference_mode():
        reference = model(x)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    def fp32() -> None:
        moved = build("face2bone", plan)
        moved.load_state_dict(model.state_dict())
        moved = moved.to(device).eval().to(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = moved(x.to(device).contiguous(memory_format=torch.channels_last)).cpu()
        gap = float((out - reference).abs().max())
        rows.add("face2bone logits, fp32, CPU vs " + other, gap, "max abs diff", "tolerance 1e-3",
                 "pass" if gap <= 1e-3 else "FAIL")

    def bf16() -> None:
        moved = build("face2bone", plan)
        moved.load_state_dict(model.state_dict())
        moved = moved.to(device).eval().to(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = moved(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
        gap = float((out.softmax(1) - reference.softmax(1)).abs().max())
        rows.add(f"face2bone probabilities, {plan.precision} vs CPU fp32", gap, "max abs diff", "tolerance 0.02",
                 "pass" if gap <= 0.02 else "FAIL")

    def fast_vs_reference() -> None:
        from f2b_study.models.fsa import ImageBranch
        from tests.test_models_equality import RefImageBranch, paired

        config = {"dims": (24, 48, 48, 96), "depths": (1, 2, 1, 1), "heads": (1, 2, 4, 4)}
        fast, ref = paired(ImageBranch(**config), RefImageBranch(**config))
        fast, ref = fast.to(device).train(), ref.to(device).train()
        inputs = torch.randn(4, 3, 72, 72, device=device)
        gaps = []
        for module in (fast, ref):
            leaf = inputs.clone().requires_grad_(True)
            out = module(leaf)
            (out * torch.linspace(-1, 1, out.numel(), device=device).reshape(out.shape)).sum().backward()
            gaps.append((out.detach(), leaf.grad))
        value = float((gaps[0][0] - gaps[1][0]).abs().max())
        grad = float((gaps[0][1] - gaps[1][1]).abs().max() / gaps[1][1].abs().max())
        rows.add(f"fast image branch vs textbook reference on {plan.device}, fp32, train", value, "max abs diff",
                 f"grad rel {grad:.1e}", "pass" if value <= 1e-4 and grad <= 1e-3 else "FAIL")

    def round_trip() -> None:
        moved = model.to(device)
        with torch.inference_mode():
            before = moved(x.to(device)).cpu()
        save_checkpoint(moved, work / "roundtrip", preprocessing_version="device-check", seed=0)
        for where in dict.fromkeys((plan.device, "cpu")):
            loaded, _ = load_checkpoint(work / "roundtrip", map_location=where)
            with torch.inference_mode():
                after = loaded.eval()(x.to(where)).cpu()
            expected = before if where == plan.device else reference
            gap = float((after - expected).abs().max())
            rows.add(f"checkpoint saved on {plan.device}, loaded on {where}", gap, "max abs diff", "tolerance 1e-5",
                     "pass" if gap <= 1e-5 else "FAIL")

    for item, fn in (("fp32 CPU vs device", fp32), ("bf16 vs fp32", bf16),
                     ("fast vs reference", fast_vs_reference), ("checkpoint round trip", round_trip)):
        guarded(rows, item, fn)


def part_throughput(plan: Plan, rows: Rows, budget: Budget, work: Path, *, compiled: bool) -> None:
    import torch
    from bench_models import ANCHORS, measure

    device = torch.device(plan.device)
    cuda_setup(plan.device)
    if compiled and plan.dry:
        rows.skip("torch.compile, every model", "dry run on the CPU: compiling there takes minutes per model")
        return
    entries = throughput_rows(plan)
    for name, factory, size in entries:
        need = 45.0 if compiled else 4.0
        if not budget.allows(need):
            rows.skip(name, f"time budget ({budget.left():.0f} s left, ~{need:.0f} s needed)")
            continue

        def one(name: str = name, factory: Callable[[], Any] = factory, size: int = size) -> None:
            torch.manual_seed(0)
            started = time.monotonic()
            rate = measure(factory(), size, measure_args(plan, compile=compiled), device)
            anchor = ANCHORS.get(name)
            note = settings_note(plan) + f", {size} px"
            if anchor and not plan.dry:
                note += f"; §13 H100 anchor {anchor:,} ({rate / anchor:.2f}×)"
            if name == "face2bone" and not plan.dry:
                note += "; target ≥ 8,000 on an H100"
            if compiled:
                note += f"; compile + timing {time.monotonic() - started:.0f} s (mode default)"
            rows.add(name, rate, "img/s", "", note)
            if device.type == "cuda":
                torch.cuda.empty_cache()

        guarded(rows, name, one)


def part_training(plan: Plan, rows: Rows, budget: Budget, work: Path) -> None:
    import numpy as np
    import torch
    from bench_models import measure

    device = torch.device(plan.device)
    cuda_setup(plan.device)
    for batch in plan.train_batches:
        def steps(batch: int = batch) -> None:
            torch.manual_seed(0)
            rate = measure(build("face2bone", plan), plan.size, measure_args(plan, mode="train", batch=batch), device)
            rows.add(f"face2bone train step, batch {batch}, {plan.size} px", rate, "img/s", "",
                     f"forward + backward + Adam, {plan.precision}, channels_last, FaceNet frozen (runs forward)")

        if budget.allows(10):
            guarded(rows, f"train step batch {batch}", steps)
        else:
            rows.skip(f"face2bone train step, batch {batch}", "time budget")

    def trainer() -> None:
        from bench_training import run

        rng = np.random.default_rng(0)
        faces = rng.integers(0, 256, (plan.trainer_images, plan.size, plan.size, 3), dtype=np.uint8)
        labels = rng.integers(0, 3, plan.trainer_images)
        args = argparse.Namespace(size=plan.size, epochs=plan.trainer_epochs, batch=32 if not plan.dry else 4,
                                  workers=None, compile=False, device=plan.device)
        result = run("face2bone", args, faces, labels, config=plan.face2bone)
        rows.add(f"Trainer epoch, {plan.trainer_images} images, batch {args.batch}", result["train_img_s"], "img/s",
                 f"150 epochs ≈ {150 * result['epoch_s'] / 60:.1f} min",
                 f"epoch {result['epoch_s']:.1f} s incl. validation (last of {plan.trainer_epochs}); "
                 f"embedding cache {'on' if result['embedding_cache'] else 'off'}; target 150 epochs ≤ 5 min")

    if budget.allows(15):
        guarded(rows, "Trainer epoch", trainer)
    else:
        rows.skip("Trainer epoch", "time budget")


def face_cache(plan: Plan, cache: Path, rows: Rows) -> tuple[list[Path], list[str]] | None:
    """The demo photos the synthetic cohorts use and their faces' cache paths (standardised here on a miss)."""
    from _common import demo_photos, warm_face_cache

    photos = demo_photos(plan.cache_sources)
    try:
        faces = warm_face_cache(photos, cache, workers=min(8, max(1, (os.cpu_count() or 2) - 1)))
    except ImportError as error:
        rows.skip("face cache", f"cannot standardise the demo photos ({error}); pass --face-cache with their faces")
        return None
    return photos, faces


def part_screen(plan: Plan, rows: Rows, budget: Budget, work: Path, cache: Path) -> None:
    import torch
    from _common import save_model, synthetic_cohort
    from bench_screen import scoring_rates

    why = missing("polars", "cv2")
    if why:
        rows.skip("screening", why)
        return
    cached = face_cache(plan, cache, rows)
    if cached is None:
        return
    photos, faces = cached
    device = torch.device(plan.device)
    cuda_setup(plan.device)
    cohort = synthetic_cohort(work / "screen-cohort", plan.screen_photos, photos)
    model_dir = save_model(work / "screen-model", "face2bone", **{"input_size": plan.size, **plan.face2bone})
    rates: dict[str, float] = {}

    def scoring() -> None:
        paths = [faces[i % len(faces)] for i in range(plan.screen_photos)]
        model_only, streamed = scoring_rates("face2bone", paths, size=plan.size, device=device, batch=plan.batch,
                                             workers=None, seconds=plan.seconds, config=plan.face2bone)
        rates["model"] = model_only
        rows.add("model alone, faces in memory", model_only, "img/s", "", settings_note(plan))
        rows.add("scoring loop from the face cache", streamed, "img/s", f"{streamed / model_only:.2f}× model",
                 "DataLoader decoding cached faces + model (predict_paths)")

    def end_to_end() -> None:
        started = time.perf_counter()
        summary = screen_cohort(cohort, model=model_dir, out=work / "screen-out", cache=cache, device=plan.device,
                                batch_size=plan.batch)
        seconds = time.perf_counter() - started
        rate = summary["photos"] / seconds
        vs = f"{rate / rates['model']:.2f}× model (target ≥ 0.8)" if "model" in rates else ""
        rows.add(f"screen end to end, {summary['photos']} photos (warm cache)", rate, "img/s", vs,
                 f"{seconds:.1f} s: join, cache lookups, loading, scoring, output tables")

    guarded(rows, "scoring", scoring)
    if budget.allows(10):
        guarded(rows, "screen end to end", end_to_end)
    else:
        rows.skip("screen end to end", "time budget")


def part_shapley(plan: Plan, rows: Rows, budget: Budget, work: Path) -> None:
    import torch
    from bench_explain import synthetic

    from f2b_study.explain.shapley import region_shapley
    from f2b_study.models.registry import preprocessing
    from f2b_study.models.runtime import prepare_model

    device = torch.device(plan.device)
    cuda_setup(plan.device)
    torch.manual_seed(0)
    model = prepare_model(build("face2bone", plan), device)
    pre = preprocessing(model)
    faces, masks, baseline = synthetic(plan.shapley_images, pre["input_size"])
    batch = 256 if not plan.dry else 64
    region_shapley(model, faces[:2], masks[:2], baseline, mean=pre["mean"], std=pre["std"], device=device,
                   batch_size=batch)  # warm-up
    for mode in ("masked", "original"):
        if not budget.allows(8):
            rows.skip(f"region Shapley, FaceNet {mode}", "time budget")
            continue

        def one(mode: str = mode) -> None:
            result = region_shapley(model, faces, masks, baseline, mean=pre["mean"], std=pre["std"], device=device,
                                    batch_size=batch, facenet_input=mode)
            rate = len(faces) / result.seconds
            rows.add(f"region Shapley, FaceNet {mode}, {pre['input_size']} px", rate, "img/s",
                     f"{rate * 32:,.0f} composites/s",
                     f"{len(faces)} images × 32 coalitions, batch {batch}, {plan.precision}; "
                     f"{result.model_evaluations} model passes; efficiency gap {result.efficiency_gap:.1e}")

        guarded(rows, f"region Shapley {mode}", one)


def part_ddp(plan: Plan, rows: Rows, budget: Budget, work: Path) -> None:
    import torch

    gpus = torch.cuda.device_count() if not plan.dry else 0
    world = max(gpus, 1)
    backend = "nccl" if gpus else "gloo"
    out = work / "ddp.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
               str(Path(__file__).resolve()), "--ddp-worker", str(out)] + (["--dry-run"] if plan.dry else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1" if plan.dry else os.environ.get("OMP_NUM_THREADS", "4"),
           "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=max(budget.left() - 2, 5))
    except subprocess.TimeoutExpired:
        rows.add(f"torchrun, {world} process(es), {backend}", note="error: no result within the part's budget")
        return
    if done.returncode or not out.exists():
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        rows.add(f"torchrun, {world} process(es), {backend}",
                 note=f"error: exit {done.returncode}: {tail[0][:160]}")
        return
    result = json.loads(out.read_text())
    rows.add(f"all-reduce over {result['world']} rank(s), {result['backend']}", 1.0 if result["allreduce_ok"] else 0.0,
             "ok", "", "pass" if result["allreduce_ok"] else "FAIL: wrong sum")
    rows.add(f"DDP train step, {result['world']} × batch {result['batch']}", result["img_s"], "img/s",
             f"{result['step_s'] * 1e3:.1f} ms/step",
             f"face2bone {result['size']} px, {result['precision']}, all ranks together"
             + (" (dry run: gloo on the CPU)" if plan.dry else ""))


def ddp_worker(out: Path, dry: bool) -> None:
    """One rank under torchrun: all-reduce check, then DistributedDataParallel train steps; rank 0 writes out."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    plan = dry_plan() if dry else gpu_plan("cuda")
    if dry:
        torch.set_num_threads(1)
        device, backend = torch.device("cpu"), "gloo"
    else:
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
        cuda_setup("cuda")
    dist.init_process_group(backend)
    try:
        total = torch.tensor([float(rank + 1)], device=device)
        dist.all_reduce(total)
        ok = float(total) == world * (world + 1) / 2
        torch.manual_seed(0)
        model = build("face2bone", plan).to(device).to(memory_format=torch.channels_last).train()
        model.facenet_eval()
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if not dry else None)
        optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        x = torch.randn(plan.ddp_batch, 3, plan.size, plan.size, device=device).contiguous(
            memory_format=torch.channels_last)
        y = torch.arange(plan.ddp_batch, device=device) % 3

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=not dry):
                loss = torch.nn.functional.cross_entropy(ddp(x).float(), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        for _ in range(3):
            step()
        times = []
        for _ in range(3 if dry else 10):
            dist.barrier()
            if not dry:
                torch.cuda.synchronize()
            started = time.perf_counter()
            step()
            if not dry:
                torch.cuda.synchronize()
            dist.barrier()
            times.append(time.perf_counter() - started)
        if rank == 0:
            best = min(times)
            out.write_text(json.dumps({"world": world, "backend": backend, "allreduce_ok": ok, "batch": plan.ddp_batch,
                                       "size": plan.size, "precision": plan.precision, "step_s": best,
                                       "img_s": world * plan.ddp_batch / best}))
    finally:
        dist.destroy_process_group()


def part_ray(plan: Plan, rows: Rows, budget: Budget, work: Path, cache: Path) -> None:
    import torch
    from _common import save_model, synthetic_cohort

    why = missing("ray", "polars", "pyarrow")
    if why:
        rows.skip("screen --engine ray", why)
        return
    cached = face_cache(plan, cache, rows)
    if cached is None:
        return
    photos = cached[0]
    gpus = torch.cuda.device_count() if not plan.dry else 0
    actors = max(gpus, 1)
    cohort = synthetic_cohort(work / "ray-cohort", plan.ray_photos, photos)
    model_dir = save_model(work / "ray-model", "face2bone", **{"input_size": plan.size, **plan.face2bone})
    started = time.perf_counter()
    summary = screen_cohort(cohort, model=model_dir, out=work / "ray-out", cache=cache, device=plan.device,
                            batch_size=plan.batch, workers=actors, engine="ray")
    seconds = time.perf_counter() - started
    kind = f"{actors} GPU actor(s)" if gpus else "1 CPU actor (dry run)"
    rows.add(f"screen --engine ray, {kind}, {summary['photos']} photos", summary["photos"] / seconds, "img/s", "",
             f"{seconds:.1f} s including the local Ray instance's start; warm face cache")


# -- the parts in order, each with its share of the budget (seconds) ------------------------------------------------

PARTS: dict[str, tuple[float, Callable[..., None]]] = {
    "equality": (30, part_equality),
    "throughput-eager": (75, lambda *a: part_throughput(*a, compiled=False)),
    "throughput-compile": (110, lambda *a: part_throughput(*a, compiled=True)),
    "training": (55, part_training),
    "screen": (50, part_screen),
    "shapley": (30, part_shapley),
    "ddp": (45, part_ddp),
    "ray": (55, part_ray),
}
NEEDS_CACHE = {"screen", "ray"}


def child(name: str, plan: Plan, seconds: float, rows_path: Path, work: Path, cache: Path) -> None:
    """One part, in a forked process."""
    import torch

    # dry run: one thread (on a busy 2-core machine two OpenMP threads can run 10× slower than one)
    torch.set_num_threads(1 if plan.dry else max(1, (os.cpu_count() or 2) // 2))
    rows = Rows(name, rows_path)
    budget = Budget(seconds)
    fn = PARTS[name][1]
    why = missing("facenet_pytorch")
    if why:
        rows.skip(name, f"{why} (Face2Bone's FaceNet branch)")
        return
    try:
        args = (plan, rows, budget, work, cache) if name in NEEDS_CACHE else (plan, rows, budget, work)
        fn(*args)
    except Exception as error:  # a part's failure is its row; the next part runs
        traceback.print_exc(file=sys.stderr)
        rows.error(name, error)


def run_parts(names: list[str], plan: Plan, total: float, cache: Path | None
              ) -> tuple[list[dict], float, dict[str, float]]:
    started = time.monotonic()
    spent: dict[str, float] = {}
    deadline = started + total
    all_rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="f2b-device-check-") as tmp:
        work = Path(tmp)
        cache = cache or work / "face-cache"
        context = multiprocessing.get_context("fork")  # the parent imported torch once; children skip that
        for name in names:
            share = PARTS[name][0] if not plan.dry else 600.0
            seconds = min(share, deadline - time.monotonic()) if not plan.dry else share
            rows_path = work / f"{name}.jsonl"
            print(f"{name} (budget {seconds:.0f} s) ...", file=sys.stderr, flush=True)
            if seconds < 5:
                all_rows.append({"part": name, "item": name, "value": None, "unit": "", "vs": "",
                                 "note": "skipped: the run's overall time budget is spent"})
                continue
            (work / name).mkdir()
            process = context.Process(target=child, args=(name, plan, seconds, rows_path, work / name, cache))
            began = time.monotonic()
            process.start()
            process.join(seconds + 20)  # the part checks its budget between measurements; this is the backstop
            if process.is_alive():
                process.kill()
                process.join()
                ended = f"error: stopped after {seconds + 20:.0f} s (its budget); rows above are complete"
            elif process.exitcode:
                ended = f"error: the part's process died (exit {process.exitcode})"
            else:
                ended = ""
            spent[name] = time.monotonic() - began
            part_rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
            if ended:
                part_rows.append({"part": name, "item": name, "value": None, "unit": "", "vs": "", "note": ended})
            if not part_rows:
                part_rows.append({"part": name, "item": name, "value": None, "unit": "", "vs": "",
                                  "note": "error: the part recorded nothing"})
            all_rows += part_rows
            shutil.rmtree(work / name, ignore_errors=True)
    return all_rows, time.monotonic() - started, spent


def with_ratios(rows: list[dict]) -> list[dict]:
    """Throughput rows get their ratio to ResNet34's img/s in the same part (the §13 way to read them)."""
    anchors = {r["part"]: r["value"] for r in rows if r["item"] == "resnet34" and r["value"]}
    out = []
    for row in rows:
        ref = anchors.get(row["part"])
        if ref and row["unit"] == "img/s" and row["item"] != "resnet34" and row["value"] and not row["vs"]:
            row = {**row, "vs": f"{row['value'] / ref:.2f}× resnet34"}
        out.append(row)
    return out


def table(rows: list[dict], header: str) -> str:
    def value(row: dict) -> str:
        v = row["value"]
        if v is None:
            return ""
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"

    lines = [header, "", "| part | what | value | unit | vs | note |", "| --- | --- | ---: | --- | --- | --- |"]
    for row in with_ratios(rows):
        cells = [row["part"], row["item"], value(row), row["unit"], row["vs"], row["note"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def probe_gpus(path: Path) -> None:
    """In a forked child (the parent must never initialise CUDA, or no forked part could use it): GPU names."""
    import torch

    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    path.write_text(json.dumps({"gpus": names, "cuda": torch.version.cuda}))


def gpus_here() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gpus.json"
        process = multiprocessing.get_context("fork").Process(target=probe_gpus, args=(path,))
        process.start()
        process.join(120)
        if process.is_alive():
            process.kill()
        return json.loads(path.read_text()) if path.exists() else {"gpus": [], "cuda": None}


def describe_machine(plan: Plan, gpus: dict[str, Any]) -> str:
    import torch

    if plan.dry:
        where = f"dry run on the CPU ({os.cpu_count()} cores), tiny shapes"
    else:
        names = sorted(set(gpus["gpus"]))
        where = f"{len(gpus['gpus'])} × {', '.join(names)}; CUDA {gpus['cuda']}"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
    return (f"# device check: {where}; torch {torch.__version__}; Python {platform.python_version()}; "
            f"commit {commit.strip() or 'unknown'}; {time.strftime('%Y-%m-%d %H:%M')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("device_check.md"), help="markdown table (default "
                        "device_check.md)")
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny shapes on the CPU")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for all parts (default "
                        f"{DEFAULT_BUDGET:.0f}; each part also has its own share)")
    parser.add_argument("--only", help=f"comma-separated parts ({', '.join(PARTS)})")
    parser.add_argument("--face-cache", type=Path, help="face cache holding the demo photos' faces (filled on a "
                        "miss, MediaPipe needed then)")
    parser.add_argument("--fill-face-cache", type=Path, metavar="DIR", help="only standardise the demo photos the "
                        "GPU run uses into DIR (MediaPipe, here on the CPU), then exit: carry DIR to the GPU host and "
                        "pass it as --face-cache there")
    parser.add_argument("--ddp-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args.ddp_worker, args.dry_run)
        return 0
    if args.fill_face_cache:
        from _common import demo_photos, warm_face_cache

        faces = warm_face_cache(demo_photos(gpu_plan("cuda").cache_sources), args.fill_face_cache.resolve(),
                                workers=max(1, (os.cpu_count() or 2) - 1))
        print(f"{len(faces)} usable faces in {args.fill_face_cache}")
        return 0
    # Processes this run starts (torchrun's ranks, Ray's workers) import this checkout's package too, also where
    # it is not installed (a bare GPU host) or another copy is.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE)]
                                               + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    # Imported once here, before the parts fork; CUDA is never touched in this process (a forked child cannot use
    # CUDA once its parent has initialised it), so even the GPU count comes from a child.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch  # noqa: F401

    gpus = {"gpus": [], "cuda": None} if args.dry_run else gpus_here()
    if args.dry_run:
        plan = dry_plan()
    elif not gpus["gpus"]:
        raise SystemExit("device_check: no CUDA device here; use --dry-run for the CPU rehearsal")
    else:
        plan = gpu_plan("cuda")
    names = list(PARTS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; choose from {list(PARTS)}")
    if args.face_cache:
        args.face_cache.mkdir(parents=True, exist_ok=True)
    header = describe_machine(plan, gpus)
    rows, seconds, spent = run_parts(names, plan, args.budget,
                                     args.face_cache.resolve() if args.face_cache else None)
    parts = ", ".join(f"{name} {t:.0f} s" for name, t in spent.items())
    text = (table(rows, header) + f"\nTotal {seconds:.0f} s ({parts}). Rows with no value say why (skipped / "
            "error).\n")
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
