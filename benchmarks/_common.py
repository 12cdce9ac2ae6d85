"""What the benchmark scripts share: the one call into the screening API, timing, synthetic cohorts over a warm
face cache, a saved model.

`screen_cohort` is the ONLY place a benchmark calls the screening API (bench_screen, bench_distributed and
device_check go through it): that API is being reshaped (issue 12), so it is adapted here and nowhere else.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DEMO = REPO / "cohorts" / "demo"


# -- the screening API (adapt here when it changes) ----------------------------------------------------------------

def screen_cohort(cohort: Path, *, model: Path, out: Path, cache: Path, photos: Path | None = None,
                  device: str = "auto", batch_size: int | None = None, workers: int | None = None,
                  engine: str = "local", preprocess_workers: int = 1) -> dict[str, Any]:
    """`f2b-study screen` end to end as the command runs it (photo join, standardisation through the face cache,
    scoring, output tables; not the HTML report): cohort (CSV or TOML), model (a checkpoint folder or run) ->
    the run's summary (screen.json). engine "ray" standardises and scores on a local Ray instance."""
    from f2b_study.cohort.cohort_photos import build_cohort_photos
    from f2b_study.faces.qc import QCThresholds
    from f2b_study.faces.table import standardise
    from f2b_study.inference.screen import check_checkpoint, ray_faces_and_scores, screen
    from f2b_study.models.runtime import resolve_checkpoint

    checkpoint = resolve_checkpoint(model)
    check_checkpoint(checkpoint)
    people = build_cohort_photos([cohort], photos=photos, target=None, require_dxa=False)
    qc = QCThresholds()
    probabilities = None
    if engine == "ray":
        faces, probabilities = ray_faces_and_scores(
            people, qc=qc, checkpoint=checkpoint, out=out, cache_dir=cache, device=device, batch_size=batch_size,
            workers=workers, bf16=True, address=None, progress=False)
    else:
        faces = standardise(people.photos, qc=qc, cache_dir=cache, workers=preprocess_workers, progress=False)
    result = screen(people, faces, checkpoint, out=out, device=device, batch_size=batch_size, workers=workers,
                    bf16=True, progress=False, probabilities=probabilities)
    return result.summary


# -- timing --------------------------------------------------------------------------------------------------------

def synchronize(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def fastest_step(step: Callable[[], object], device: Any, *, seconds: float, min_steps: int = 3,
                 warmup: int = 2) -> float:
    """Seconds of the fastest of the timed calls of ``step`` (as timeit advises: the call least disturbed by other
    work on a shared machine), after ``warmup`` untimed calls; times at least ``min_steps`` calls and ``seconds``."""
    for _ in range(warmup):
        step()
    steps: list[float] = []
    while len(steps) < min_steps or sum(steps) < seconds:
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        steps.append(time.perf_counter() - start)
    return min(steps)


def quiet() -> contextlib.ExitStack:
    """Silence stdout, stderr and warnings (the random-init FaceNet warning, progress lines) inside a timed call."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


# -- inputs -------------------------------------------------------------------------------------------------------

def demo_photos(n: int) -> list[Path]:
    """The first n photos of the bundled demo cohort (real public faces)."""
    photos = sorted(DEMO.glob("photos/*.jpg"))[:n]
    if len(photos) < n:
        raise SystemExit(f"the demo cohort has {len(photos)} photos, {n} asked for")
    return photos


def synthetic_cohort(folder: Path, n: int, sources: Sequence[Path]) -> Path:
    """A screening cohort of n patients, one photo each: hard links to ``sources`` in turn (so the face cache
    holds len(sources) entries for all of them). Writes folder/cohort.csv and folder/photos/; returns a TOML."""
    import polars as pl

    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    ids = [f"S{i:07d}" for i in range(n)]
    for i, patient_id in enumerate(ids):
        target = photos / f"{patient_id}.jpg"
        try:
            os.link(sources[i % len(sources)], target)
        except OSError:  # another file system: a copy does as well
            target.write_bytes(Path(sources[i % len(sources)]).read_bytes())
    pl.DataFrame({"patient_id": ids, "sex": ["F"] * n, "age_years": [60] * n}).write_csv(folder / "cohort.csv")
    toml = folder / "cohort.toml"
    toml.write_text(f'name = "synthetic{n}"\ncsv = "cohort.csv"\nphotos = "photos"\n')
    return toml


def warm_face_cache(photos: Sequence[Path], cache: Path, workers: int = 1) -> list[str]:
    """Standardise ``photos`` into the face cache (MediaPipe on a miss, nothing on a hit); their usable faces'
    cache paths, in order."""
    import polars as pl

    from f2b_study.faces.qc import QCThresholds
    from f2b_study.faces.table import standardise

    frame = pl.DataFrame({"patient_id": [p.stem for p in photos], "photo": [p.name for p in photos],
                          "path": [str(p) for p in photos]})
    faces = standardise(frame, qc=QCThresholds(), cache_dir=cache, workers=workers, progress=False)
    ok = faces.frame.filter(pl.col("status") == "ok")
    if ok.height == 0:
        raise RuntimeError(f"none of {len(photos)} demo photos gave a usable face")
    return ok["face_path"].to_list()


def save_model(folder: Path, arch: str = "face2bone", **config: Any) -> Path:
    """A randomly initialised registry model saved as a checkpoint the screening API accepts."""
    from f2b_study.faces.version import PIPELINE_VERSION
    from f2b_study.models.checkpoint import save_checkpoint
    from f2b_study.models.registry import create_model

    with quiet():
        model = create_model(arch, **config)
    save_checkpoint(model, folder, preprocessing_version=PIPELINE_VERSION, seed=0)
    return folder


def model_only_rate(model: Any, faces: Any, transform: Any, device: Any, *, batch: int, seconds: float,
                    bf16: bool = True) -> float:
    """Images/s of the model alone on one batch of faces already in memory (uint8 (B, S, S, 3)): normalise,
    forward, softmax to the host, as the screening loop does per batch."""
    import torch

    from f2b_study.models.runtime import autocast, to_chw

    x = to_chw(faces[:batch]).to(device)

    def step() -> None:
        with torch.inference_mode(), autocast(device, bf16):
            torch.softmax(model(transform.normalise(x)).float(), dim=1).cpu()

    return len(x) / fastest_step(step, device, seconds=seconds)
