"""`f2b-study train`: train one or several registry models on a labelled, preprocessed cohort."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, print_json
from f2b_study.faces.cache import DEFAULT_CACHE


def register(sub: Any) -> None:
    parser = add_command(
        sub, "train", help="train a model (or compare several) with the paper's recipe",
        description="Label the cohort, standardise its faces (through the cache), split patients 8:2 "
        "(stratified, seed 42; a given split column is honoured) and train with the paper's recipe: "
        "CrossEntropy, Adam, OneCycleLR (max lr 1e-3, 30%% warm-up, anneal to 1e-6), batch 32, up to 150 "
        "epochs, early stopping on validation accuracy (patience 10), augmentations HorizontalFlip, "
        "VerticalFlip, Affine, CLAHE. Several --arch names train on the same split and write a comparison "
        "table in the paper's Table 2 / Table 5 form.",
        examples="  f2b-study train cohorts/demo.toml --arch face2bone --out runs/demo\n"
        "  f2b-study train cohort.csv --photos photos/ --arch face2bone,resnet34,vgg16 --out runs/compare\n"
        "  f2b-study train cohorts/demo.toml --target sex --arch resnet18 --epochs 30 --out runs/sex\n"
        "  f2b-study train cohorts/demo.toml --arch face2bone --out runs/demo --resume\n"
        "  torchrun --nproc_per_node 4 -m f2b_study train cohorts/demo.toml --arch face2bone --out runs/ddp\n"
        "\nUnder torchrun the run is data-parallel (DistributedDataParallel; NCCL on GPUs, gloo on the CPU): "
        "--batch-size stays the global batch, split across the processes; rank 0 writes the run folder.\n")
    parser.add_argument("cohort", nargs="+", help="cohort table(s) (.csv/.xlsx) or config(s) (.toml)")
    parser.add_argument("--photos", type=Path, help="photo folder (default: the config's, else the table's folder)")
    parser.add_argument("--arch", default="face2bone", help="registry name(s), comma-separated (see f2b-study models)")
    parser.add_argument("--out", type=Path, required=True, help="run folder, e.g. runs/NAME")
    parser.add_argument("--target", default="bone_status", help="column to learn (default bone_status; e.g. sex)")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="OneCycleLR's maximum learning rate")
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--input-size", type=int, help="model input size (default: the registry's, 224)")
    parser.add_argument("--model-config", help="JSON object of architecture settings, e.g. "
                        "'{\"dims\": [24, 48, 96, 192], \"depths\": [1, 1, 2, 1]}'")
    parser.add_argument("--facenet-weights", help="VGGFace2 weights file for the FaceNet branch "
                        "(20180402-114759-vggface2.pt); without it FaceNet is randomly initialised")
    parser.add_argument("--weights", help="ImageNet weights file for a torchvision comparator")
    parser.add_argument("--augment", help="augmentations to use: hflip,vflip,affine,clahe (default all) or none")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: 4 on a GPU, 0 on the CPU)")
    parser.add_argument("--preprocess-workers", type=int, default=1, help="processes for face standardisation")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--no-bf16", action="store_true", help="train in float32 on the GPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="face cache folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    parser.set_defaults(func=run)


def parse_model_config(text: str | None, input_size: int | None) -> dict[str, Any]:
    from f2b_study.errors import InputError

    config: dict[str, Any] = {}
    if text:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError.at("--model-config", value=text, expected=f"a JSON object ({error.msg})") from None
        if not isinstance(config, dict):
            raise InputError.at("--model-config", value=text, expected="a JSON object")
    if input_size:
        config["input_size"] = input_size
    return config


def settings_from_args(args: argparse.Namespace) -> Any:
    import torch

    from f2b_study.training.augment import AugmentConfig
    from f2b_study.training.loop import TrainSettings

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    workers = args.workers if args.workers is not None else (4 if device.startswith("cuda") else 0)
    augment = AugmentConfig.from_names(args.augment)
    return TrainSettings(epochs=args.epochs, batch_size=args.batch_size, max_lr=args.lr, patience=args.patience,
                         seed=args.seed, workers=workers, device=args.device, bf16=not args.no_bf16,
                         compile=args.compile, augment=augment)


def run(args: argparse.Namespace) -> int:
    from f2b_study.training.distributed import session

    with session(args.device) as context:
        return _run(args, context)


def _run(args: argparse.Namespace, context: Any) -> int:
    import tempfile

    from f2b_study.errors import InputError
    from f2b_study.models.registry import get_spec
    from f2b_study.training.compare import write_comparison
    from f2b_study.training.run import preflight, prepare, train_one

    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    for arch in archs:
        get_spec(arch)  # unknown names fail before any work
    for number, name in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--patience", args.patience)):
        if name < 1:
            raise InputError.at(number, value=name, expected="a whole number ≥ 1")
    if context.enabled and args.batch_size % context.world_size:
        raise InputError.at("--batch-size", value=args.batch_size,
                            expected=f"a multiple of the {context.world_size} processes (it is the global batch, "
                            "split evenly across them)")
    model_config = parse_model_config(args.model_config, args.input_size)
    settings = settings_from_args(args)

    def claim() -> None:
        for arch in archs:
            preflight(args.out if len(archs) == 1 else args.out / arch, resume=args.resume, overwrite=args.overwrite)
        args.out.mkdir(parents=True, exist_ok=True)

    context.main_first(claim, others=lambda: None)

    def prepare_in(run_dir: Path, workers: int) -> Any:
        return prepare(args.cohort, photos=args.photos, target=args.target, run_dir=run_dir, cache_dir=args.cache,
                       workers=workers)

    def prepare_from_cache() -> Any:
        # rank 0 filled the face cache: the other ranks only read it, and keep their preprocess.csv to themselves
        with tempfile.TemporaryDirectory(prefix="f2b-rank-") as scratch:
            return prepare_in(Path(scratch), 1)

    data = context.main_first(lambda: prepare_in(args.out, args.preprocess_workers), others=prepare_from_cache)
    runs = {}
    for arch in archs:
        out = args.out if len(archs) == 1 else args.out / arch
        runs[arch] = train_one(data, arch=arch, out=out, settings=settings, model_config=model_config,
                               facenet_weights=args.facenet_weights, imagenet_weights=args.weights,
                               resume=args.resume, overwrite=args.overwrite)
    if not context.is_main:
        return 0
    if len(archs) > 1:
        write_comparison(args.out, {arch: args.out / arch for arch in archs})
    summary = {arch: {"out": str(args.out if len(archs) == 1 else args.out / arch),
                      "epochs_run": r.get("epochs_run"), "best_epoch": r.get("best_epoch"),
                      "validation": r.get("summary"), "facenet_weights": (r.get("facenet_weights") or {}).get("source")}
               for arch, r in runs.items()}
    if args.json:
        print_json({"target": data.target, "classes": data.classes, "excluded": data.excluded,
                    "n_patients": runs[archs[0]]["n_patients"], "runs": summary})
    else:
        print(f"target {data.target}: {runs[archs[0]]['n_patients']} patients "
              f"(left out: {data.excluded or 'none'})")
        for arch, item in summary.items():
            best = item["best_epoch"] + 1 if item["best_epoch"] is not None else "-"
            print(f"{arch}: {item['epochs_run']} epochs (best {best}), "
                  f"validation {json.dumps(item['validation'])} -> {item['out']}")
    return 0
