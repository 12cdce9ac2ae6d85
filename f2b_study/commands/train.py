"""`f2b-study train`: train one or several registry models on a cohort, with the config's [train] and [qc]."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, cache_folder, load_study_args, print_json, split_list

# argparse attribute -> the config setting it overrides (flag > config > default)
FLAGS = {
    "target": "train.target", "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
    "patience": "train.patience", "seed": "train.seed", "split_seed": "train.split_seed",
    "input_size": "train.input_size", "model": "train.model", "facenet_weights": "train.facenet_weights",
    "facenet_trainable": "train.facenet_trainable", "weights": "train.imagenet_weights",
    "augment": "train.augment", "workers": "train.workers", "bf16": "train.bf16", "compile": "train.compile",
}


def register(sub: Any) -> None:
    parser = add_command(
        sub, "train", help="train a model (or compare several) with the paper's recipe",
        description="Label the cohort, standardise its faces (through the cache, with the config's [qc]), split "
        "patients (the cohort's split column, else stratified 8:2 with seed 42) and train the config's [train] "
        "model with the paper's recipe: CrossEntropy, Adam, OneCycleLR (max lr 1e-3, 30% warm-up, anneal to "
        "1e-6), batch 32, up to 150 epochs, early stopping on validation accuracy (patience 10), augmentations "
        "HorizontalFlip, VerticalFlip, Affine, CLAHE. Flags override the config, which overrides these defaults; "
        "run.json records every setting and where it came from. Several --arch names train on the same split and "
        "write a comparison table in the paper's Table 2 / Table 5 form.\n\n"
        "Run time: the paper's full model at 224 px trains at roughly 0.2-0.4 s per image per epoch on 2 CPU "
        "cores, so 150 epochs of ~800 images take many hours there; on a GPU, minutes. To try it on a CPU, "
        "shorten it: --epochs 20 --input-size 112 --model-config '{\"dims\": [24, 48, 96, 192], \"depths\": "
        "[1, 1, 2, 1]}' (what cohorts/demo.toml does), or pass --device cuda on a GPU machine.",
        examples="  f2b-study train cohorts/demo.toml --out runs/demo            # the config's [train] model\n"
        "  f2b-study train cohort.csv --photos photos/ --arch face2bone,resnet34,vgg16 --out runs/compare\n"
        "  f2b-study train cohorts/demo.toml --target sex --arch resnet18 --epochs 30 --out runs/sex\n"
        "  f2b-study train cohorts/demo.toml --out runs/demo --resume\n"
        "  torchrun --nproc_per_node 4 -m f2b_study train cohorts/demo.toml --out runs/ddp\n"
        "\nUnder torchrun the run is data-parallel (DistributedDataParallel; NCCL on GPUs, gloo on the CPU): "
        "--batch-size stays the global batch, split across the processes; rank 0 writes the run folder.\n")
    parser.add_argument("cohort", nargs="+", help="cohort table(s) (.csv/.xlsx) or config(s) (.toml)")
    parser.add_argument("--photos", type=Path, help="photo folder (default: the config's, else the table's folder)")
    parser.add_argument("--arch", help="registry name(s), comma-separated (default: the config's [train] arch, "
                        "else face2bone; see f2b-study models)")
    parser.add_argument("--out", type=Path, required=True, help="run folder, e.g. runs/NAME")
    parser.add_argument("--target", help="column to learn (default bone_status; e.g. sex)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 150)")
    parser.add_argument("--batch-size", type=int, help="global batch (default 32)")
    parser.add_argument("--lr", type=float, help="OneCycleLR's maximum learning rate (default 1e-3)")
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 10)")
    parser.add_argument("--seed", type=int, help="training seed (default 42)")
    parser.add_argument("--split-seed", type=int, help="seed of the stratified 8:2 split (default 42)")
    parser.add_argument("--input-size", type=int, help="model input size (default: the registry's, 224)")
    parser.add_argument("--model-config", dest="model", type=_json_object,
                        help="JSON object of architecture settings, e.g. "
                        "'{\"dims\": [24, 48, 96, 192], \"depths\": [1, 1, 2, 1]}'")
    parser.add_argument("--facenet-weights", help="VGGFace2 weights for the FaceNet branch: a file "
                        "(20180402-114759-vggface2.pt) or 'vggface2' (facenet-pytorch's cache, downloaded when "
                        "online); without it FaceNet is randomly initialised, with a loud warning")
    parser.add_argument("--facenet-trainable", choices=("frozen", "last", "full"),
                        help="which FaceNet layers train (default frozen: its embeddings are computed once)")
    parser.add_argument("--weights", help="ImageNet weights file for a torchvision comparator")
    parser.add_argument("--augment", type=split_list, help="augmentations to use: hflip,vflip,affine,clahe "
                        "(default all) or none")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: 4 on a GPU, 0 on the CPU)")
    parser.add_argument("--preprocess-workers", type=int, default=1, help="processes for face standardisation")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--no-bf16", dest="bf16", action="store_const", const=False,
                        help="train in float32 on the GPU")
    parser.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    parser.add_argument("--cache", type=Path, help="face cache folder (default .f2b-cache/faces)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    parser.set_defaults(func=run)


def _json_object(text: str) -> dict[str, Any]:
    from f2b_study.errors import InputError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError.at("--model-config", value=text, expected=f"a JSON object ({error.msg})") from None
    if not isinstance(value, dict):
        raise InputError.at("--model-config", value=text, expected="a JSON object")
    return value


def run(args: argparse.Namespace) -> int:
    from f2b_study.training.distributed import session

    with session(args.device) as context:
        return _run(args, context)


def _run(args: argparse.Namespace, context: Any) -> int:
    from f2b_study.errors import InputError
    from f2b_study.models.registry import get_spec
    from f2b_study.training.run import preflight

    study = load_study_args(args.cohort, args, FLAGS)
    settings = study.train
    archs = split_list(args.arch) or [settings.arch]
    for arch in archs:
        get_spec(arch)  # unknown names fail before any work
    if context.enabled and settings.batch_size % context.world_size:
        raise InputError.at("--batch-size", value=settings.batch_size,
                            expected=f"a multiple of the {context.world_size} processes (it is the global batch, "
                            "split evenly across them)")
    cache = cache_folder(args)

    def claim() -> None:
        for arch in archs:
            preflight(args.out if len(archs) == 1 else args.out / arch, resume=args.resume, overwrite=args.overwrite)
        owner_only(args.out)  # a run folder holds patient IDs (split.csv) and photo names: private

    import contextlib

    from f2b_study.outputs import owner_only
    from f2b_study.runlock import run_lock

    with contextlib.ExitStack() as stack:
        if context.is_main:  # rank 0 writes the folder, so it alone holds its lock
            stack.enter_context(run_lock(args.out, "train"))
        context.main_first(claim, others=lambda: None)
        return _train(args, context, study, settings, archs, cache)


def _train(args: argparse.Namespace, context: Any, study: Any, settings: Any, archs: list[str], cache: Any) -> int:
    import dataclasses

    from f2b_study.cohort.cohort_photos import build_cohort_photos
    from f2b_study.faces.table import standardise
    from f2b_study.report.model_comparison import write_comparison
    from f2b_study.report.training_curve import write_training_curve
    from f2b_study.training.run import train_one, training_data

    cohort = build_cohort_photos(study.centres, photos=args.photos, target=settings.target)
    wanted = cohort.photos_of(cohort.patients["patient_id"])

    def faces_here() -> Any:
        return standardise(wanted, qc=study.qc, cache_dir=cache, workers=args.preprocess_workers)

    def faces_from_cache() -> Any:  # rank 0 filled the face cache: the other ranks only read it
        return standardise(wanted, qc=study.qc, cache_dir=cache, workers=1, progress=False)

    faces = context.main_first(faces_here, others=faces_from_cache)
    data = training_data(cohort, faces, settings)
    runs = {}
    for arch in archs:
        out = args.out if len(archs) == 1 else args.out / arch
        arch_settings = dataclasses.replace(settings, arch=arch)
        record = study.describe(["train", "qc"])
        if arch != settings.arch:
            record["train"]["arch"] = {"value": arch, "from": "flag"}
        runs[arch] = train_one(data, arch_settings, out=out, device=args.device, resume=args.resume,
                               overwrite=args.overwrite, settings_record=record,
                               simulated_labels=study.report.simulated_labels)
        if context.is_main:  # what may leave the site: the curve and the validation figures (no patient rows)
            write_training_curve(out, f"{arch} · {data.target}")
            copy_text(out / "evaluation.json", out / "shareable" / "evaluation.json")
    if not context.is_main:
        return 0
    if len(archs) > 1:
        write_comparison(args.out / "shareable", {arch: args.out / arch for arch in archs})
    for message in cohort.warnings:
        print(f"f2b-study train: warning: {message}")
    first = runs[archs[0]].record
    if args.json:
        print_json({"target": data.target, "classes": data.classes, "excluded": data.excluded,
                    "n_patients": first.n_patients,
                    "runs": {arch: {"out": str(r.out), "epochs_run": r.record.epochs_run,
                                    "best_epoch": r.record.best_epoch, "validation": r.record.summary,
                                    "facenet_weights": (r.record.facenet_weights or {}).get("source")}
                             for arch, r in runs.items()}})
        return 0
    print(f"target {data.target}: {first.n_patients['train']} training and {first.n_patients['validation']} "
          f"validation patients (left out: {_counts(data.excluded)})")
    print(format_runs(runs))
    return 0


def copy_text(source: Any, target: Any) -> None:
    from f2b_study.atomic import write_text

    write_text(target, source.read_text(encoding="utf-8"))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.items()) or "none"


def format_runs(runs: dict[str, Any]) -> str:
    """One line per run: epochs, best epoch and the validation figures, three decimals."""
    keys = [("accuracy", "accuracy"), ("f1_macro", "macro F1"), ("auc_macro_ovr", "macro AUC"), ("auc", "AUC"),
            ("kappa", "kappa")]
    shown = [(k, label) for k, label in keys if any(k in (r.record.summary or {}) for r in runs.values())]
    header = f"{'model':<20} {'epochs':>6} {'best':>5} " + " ".join(f"{label:>9}" for _, label in shown) + "  folder"
    lines = [header]
    for arch, run in runs.items():
        summary = run.record.summary or {}
        best = "-" if run.record.best_epoch is None or run.record.best_epoch < 0 else run.record.best_epoch + 1
        values = " ".join(f"{summary[k]:>9.3f}" if isinstance(summary.get(k), int | float) else f"{'-':>9}"
                          for k, _ in shown)
        lines.append(f"{arch:<20} {run.record.epochs_run or 0:>6} {best:>5} {values}  {run.out}")
    return "\n".join(lines)
