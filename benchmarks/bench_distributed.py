"""Beyond one machine (issue 9), measured on this machine: what the distributed engines cost and save.

    .venv/bin/python benchmarks/bench_distributed.py [--photos N] [--no-cold] [--label-rows 10000000]
                                                     [--ddp-patients-per-class 12] [--skip screen,ddp,label]

Three tables, every number measured in this run:
1. Screening, photos/s end to end (`screen()`: join, standardisation through the cache, inference, outputs) on
   the demo cohort with the demo's model size (random weights: speed does not depend on them): the
   single-machine path vs `--engine ray` with 1 and 2 inference actors on a local Ray instance (started once,
   its start-up reported apart). Warm cache: faces already standardised, so the rows compare inference plus each
   engine's overhead. Cold cache: MediaPipe standardisation included (local: 2 preprocessing processes; Ray:
   CPU tasks beside the actor).
2. DDP training: seconds per optimiser step (the same global batch) on one process vs two (torchrun, gloo),
   median over the epochs after the first.
3. Labelling N generated rows: wall time and peak RSS of `f2b-study label` (streaming, polars lazy) vs the
   in-memory path (load_cohort + label + write_csv), each in a fresh process (os.wait4's ru_maxrss). The CSV
   (about 47 bytes a row) is written to a temporary folder and deleted.
With 2 cores, Ray's workers and DDP's ranks share the same two cores: the tables show each engine's overhead and
memory, not the speed-up that more machines bring. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import DEMO, quiet, save_model, screen_cohort  # noqa: E402

DEMO_MODEL = {"input_size": 112, "dims": [24, 48, 96, 192], "depths": [1, 1, 2, 1]}  # cohorts/demo.toml [train]


def bench_screen(work: Path, photos: int | None, cold: bool) -> list[tuple[str, str, float, float]]:
    import polars as pl

    rows = pl.read_csv(DEMO / "cohort.csv", infer_schema=False)
    rows = rows.head(photos) if photos else rows
    cohort = work / "cohort.csv"
    rows.write_csv(cohort)
    model = save_model(work / "model", "face2bone", num_classes=3, **DEMO_MODEL)
    n = rows.height  # one photo per demo patient
    results: list[tuple[str, str, float, float]] = []

    def timed(label: str, cache: str, folder: str, **kwargs) -> None:
        started = time.perf_counter()
        with quiet():
            screen_cohort(cohort, model=model, photos=DEMO / "photos", out=work / f"out-{len(results)}",
                          cache=work / folder, **kwargs)
        seconds = time.perf_counter() - started
        results.append((label, cache, seconds, n / seconds))
        print(f"  {label:<28} {cache:<5} {seconds:7.1f} s", file=sys.stderr)

    if cold:  # this run fills the cache that the warm rows use
        timed("local (2 preprocess workers)", "cold", "cache-warm", preprocess_workers=2)
    else:
        with quiet():
            screen_cohort(cohort, model=model, photos=DEMO / "photos", out=work / "fill",
                          cache=work / "cache-warm", preprocess_workers=2)
    timed("local", "warm", "cache-warm")
    import ray

    started = time.perf_counter()
    ray.init(include_dashboard=False, object_store_memory=512 << 20, log_to_driver=False,
             logging_level=logging.WARNING)
    results.append(("(ray start, local instance)", "", time.perf_counter() - started, float("nan")))
    try:
        timed("ray, 1 actor", "warm", "cache-warm", engine="ray", workers=1)
        timed("ray, 2 actors", "warm", "cache-warm", engine="ray", workers=2)
        if cold:
            timed("ray, 1 actor", "cold", "cache-cold-ray", engine="ray", workers=1)
    finally:
        ray.shutdown()
    return results


def step_seconds(run: Path, batch: int) -> float:
    import polars as pl

    n_train = json.loads((run / "run.json").read_text())["n_images"]["train"]
    steps = math.ceil(n_train / batch)
    per_epoch = (n_train / pl.read_csv(run / "metrics.csv")["images_per_second"]).to_list()
    return statistics.median(seconds / steps for seconds in per_epoch[1:])


def bench_ddp(work: Path, per_class: int, cache: Path, batch: int = 16,
              epochs: int = 4) -> list[tuple[str, float, float]]:
    from tests.conftest import make_mini_cohort

    cohort = make_mini_cohort(work / "ddp-cohort", per_class=per_class)
    common = ["train", str(cohort), "--cache", str(cache), "--epochs", str(epochs), "--batch-size", str(batch),
              "--augment", "none", "--model-config", json.dumps(DEMO_MODEL)]
    single = [sys.executable, "-m", "f2b_study"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "f2b_study"]
    configs = [("1 process, 2 threads", single, "2"), ("1 process, 1 thread", single, "1"),
               ("2 processes (gloo), 1 thread each", torchrun, "1")]
    results = []
    for index, (label, launcher, threads) in enumerate(configs):
        out = work / f"ddp-{index}"
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore"}
        done = subprocess.run([*launcher, *common, "--out", str(out)], capture_output=True, text=True, env=env,
                              cwd=REPO)
        if done.returncode:
            raise SystemExit(f"{label} failed:\n{done.stderr[-2000:]}")
        seconds = step_seconds(out, batch)
        results.append((label, seconds, batch / seconds))
        print(f"  {label:<34} {seconds:6.2f} s/step", file=sys.stderr)
    return results


# The measured program reports its own peak (VmHWM of its address space): a child's ru_maxrss would include the
# pages it shared with this large parent between fork and exec.
REPORT_PEAK = ("\nimport sys\nhwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
               "sys.stderr.write(f'F2B_PEAK_KB {hwm}\\n')\n")


def peak(code: str, *args: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of ``code`` run in a fresh Python process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code + REPORT_PEAK, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}):\n{code}\n{done.stderr[-2000:]}")
    kilobytes = next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("F2B_PEAK_KB"))
    return seconds, int(kilobytes) / 1024


def bench_label(work: Path, rows: int, eager: bool) -> list[tuple[str, float, float]]:
    from benchmarks.bench_cohort import generate

    cohort = work / "big.csv"
    generate(rows, cohort)
    size_mb = cohort.stat().st_size / 2**20
    print(f"  generated {rows:,} rows ({size_mb:.0f} MB)", file=sys.stderr)
    results = [("python + polars + f2b_study imported",
                *peak("import polars, f2b_study.cli, f2b_study.cohort.schema, f2b_study.cohort.label"))]
    streaming = ("import sys\nfrom f2b_study.cli import main\n"
                 "assert main(['label', sys.argv[1], '--out', sys.argv[2], '--json']) == 0")
    results.append(("streaming: f2b-study label", *peak(streaming, str(cohort), str(work / "labelled.csv"))))
    if eager:
        in_memory = ("import sys\nfrom f2b_study.cohort.schema import load_cohort\n"
                     "from f2b_study.cohort.label import label\nfrom f2b_study.tables import write_csv\n"
                     "write_csv(label(load_cohort(sys.argv[1])).drop('_row'), sys.argv[2])")
        results.append(("in memory: load_cohort + label", *peak(in_memory, str(cohort),
                                                                 str(work / "labelled-eager.csv"))))
        if (work / "labelled.csv").read_bytes() != (work / "labelled-eager.csv").read_bytes():
            raise SystemExit("the streaming and in-memory outputs differ")
    for name in ("big.csv", "labelled.csv", "labelled-eager.csv"):
        (work / name).unlink(missing_ok=True)
    return [(label, seconds, rss, size_mb) for label, seconds, rss in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, help="demo patients to screen (default all, one photo each)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache screening rows")
    parser.add_argument("--ddp-patients-per-class", type=int, default=12)
    parser.add_argument("--label-rows", type=int, default=10_000_000)
    parser.add_argument("--no-eager-label", action="store_true", help="skip the in-memory labelling row")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: screen, ddp, label")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    cores = len(os.sched_getaffinity(0))
    print(f"# bench_distributed: {cores} cores; Ray and torchrun on this one machine", flush=True)
    with tempfile.TemporaryDirectory(prefix="f2b-bench-dist-") as tmp:
        work = Path(tmp)
        if "screen" not in skip:
            print("screening ...", file=sys.stderr)
            screen_rows = bench_screen(work, args.photos, cold=not args.no_cold)
            local = {cache: rate for label, cache, _, rate in screen_rows if label.startswith("local")}
            print("\n## screening (end to end, demo model 112 px, CPU)")
            print(f"{'engine':<30} {'cache':<6} {'seconds':>8} {'photos/s':>9} {'vs local':>9}")
            for label, cache, seconds, rate in screen_rows:
                ratio = rate / local[cache] if cache in local else float("nan")
                print(f"{label:<30} {cache:<6} {seconds:8.1f} {rate:9.1f} {ratio:9.2f}")
        if "ddp" not in skip:
            print("DDP ...", file=sys.stderr)
            cache = work / "cache-warm" if (work / "cache-warm").exists() else work / "ddp-cache"
            ddp_rows = bench_ddp(work, args.ddp_patients_per_class, cache)
            base = ddp_rows[0][1]
            print("\n## DDP training step (global batch 16, demo model 112 px, FaceNet frozen, CPU)")
            print(f"{'configuration':<36} {'s/step':>7} {'img/s':>7} {'vs 1 process':>13}")
            for label, seconds, rate in ddp_rows:
                print(f"{label:<36} {seconds:7.2f} {rate:7.1f} {base / seconds:13.2f}")
        if "label" not in skip:
            print("labelling ...", file=sys.stderr)
            label_rows = bench_label(work, args.label_rows, eager=not args.no_eager_label)
            print(f"\n## label {args.label_rows:,} generated rows ({label_rows[0][3]:.0f} MB CSV)")
            print(f"{'path':<38} {'seconds':>8} {'peak RSS MB':>12} {'rows/s':>11}")
            for label, seconds, rss, _ in label_rows:
                rate = f"{args.label_rows / seconds:11,.0f}" if "label" in label else f"{'':>11}"
                print(f"{label:<38} {seconds:8.1f} {rss:12.0f} {rate}")


if __name__ == "__main__":
    main()
