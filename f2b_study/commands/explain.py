"""`f2b-study explain`: what the model looks at, by facial region (exact Shapley values) and by concept (CRAFT)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, print_json
from f2b_study.faces.cache import DEFAULT_CACHE


def register(sub: Any) -> None:
    parser = add_command(
        sub, "explain", help="region Shapley values, pixel maps and CRAFT concepts (Tables 6–8)",
        description="Explain a trained model on a cohort's faces (DESIGN §12; the paper's SHAP and CRAFT analyses). "
        "Region Shapley: the five facial regions are the players, an absent region is replaced by the training "
        "split's mean face (or a blur), and all 32 coalitions of every face are evaluated, so the values are exact. "
        "Writes region_shapley.csv (one row per photo), table6.csv (mean ± SD per region per class, by sex), "
        "table7.csv (intra-/inter-class cosine similarity, Welch t-test), table8.csv (Jensen–Shannon divergence "
        "of CRAFT maps, base 2), SVG figures drawn on a mean face only, and explain.json. Faces default to the "
        "run's validation patients (and any patient the run never saw).",
        examples="  f2b-study explain cohorts/demo.toml --model runs/demo --out reports/demo/explain\n"
        "  f2b-study explain dxa.csv --photos photos/ --model runs/centre_a --out reports/a/explain --json\n"
        "  f2b-study explain dxa.csv --photos photos/ --model runs/a --out x --baseline blur --max-images 200\n"
        "  f2b-study explain dxa.csv --photos photos/ --model runs/a --out x --split all --device cuda\n")
    parser.add_argument("cohort", nargs="+", help="cohort table(s) (.csv/.xlsx) or config(s) (.toml)")
    parser.add_argument("--photos", type=Path, help="photo folder (default: the config's, else the table's folder)")
    parser.add_argument("--model", type=Path, required=True, help="run folder (runs/NAME), its best/ folder, or a "
                        "checkpoint's model.json")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--split", choices=("validation", "train", "all"),
                        help="which patients (default validation: the run's validation patients and any it never saw)")
    parser.add_argument("--baseline", choices=("mean", "blur"),
                        help="what an absent region becomes (default mean: the training split's mean face)")
    parser.add_argument("--blur-sigma", type=float, help="Gaussian sigma in pixels at the input size for "
                        "--baseline blur (default input size / 16)")
    parser.add_argument("--output", choices=("probability", "logit"), help="what is explained (default probability)")
    parser.add_argument("--facenet-input", choices=("masked", "original"),
                        help="Face2Bone's FaceNet sees each composite (masked, default: exact for the whole model) or "
                        "the unmasked face (original: ~10x cheaper on a CPU; attributes the image branch only)")
    parser.add_argument("--max-images", type=int, help="explain at most N photos (whole patients, class-stratified)")
    parser.add_argument("--n-concepts", type=int, help="CRAFT concepts per class (default 6)")
    parser.add_argument("--no-craft", action="store_true", help="skip CRAFT")
    parser.add_argument("--no-pixel-maps", action="store_true", help="skip the gradient maps")
    parser.add_argument("--batch-size", type=int, help="composite images per forward pass (default 256 on CUDA, 64 "
                        "on the CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--no-bf16", action="store_true", help="float32 on the GPU")
    parser.add_argument("--seed", type=int, help="seed of subsets, NMF and Sobol designs (default 0)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="face cache folder")
    parser.add_argument("--json", action="store_true", help="print the tables and settings as JSON")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> tuple[Any, dict[str, Any] | None]:
    """Settings: defaults, then the first config's [explain] section, then the flags; and its [qc] section."""
    import dataclasses

    from f2b_study.config import load_config
    from f2b_study.explain.craft import CraftConfig
    from f2b_study.explain.run import ExplainSettings, settings_from_config, validate

    settings = ExplainSettings()
    qc = None
    first = Path(args.cohort[0])
    if first.suffix.lower() == ".toml":
        config = load_config(first)
        settings = settings_from_config(config.section("explain"), first, settings)
        qc = config.section("qc") or None
    for flag in ("split", "baseline", "blur_sigma", "output", "facenet_input", "max_images", "batch_size", "seed"):
        value = getattr(args, flag)
        if value is not None:
            setattr(settings, flag, value)
    settings.device = args.device
    settings.bf16 = not args.no_bf16
    if args.no_pixel_maps:
        settings.pixel_maps = False
    if args.no_craft:
        settings.craft = None
    elif args.n_concepts is not None:
        settings.craft = dataclasses.replace(settings.craft or CraftConfig(), n_concepts=args.n_concepts)
    if settings.craft is not None:
        settings.craft = dataclasses.replace(settings.craft, seed=settings.seed)
    validate(settings, "command line")
    return settings, qc


def run(args: argparse.Namespace) -> int:
    import sys

    from f2b_study.explain.run import run_explain

    settings, qc = settings_from_args(args)
    result, files = run_explain(args.cohort, photos=args.photos, model_path=args.model, out=args.out,
                                settings=settings, cache=args.cache, qc=qc, progress=sys.stderr.isatty())
    doc = result.document
    if args.json:
        print_json({key: doc[key] for key in ("model", "settings", "baseline", "n_images", "n_patients",
                                              "patients_by_class", "region_shapley", "table6", "table7",
                                              "table7_summary", "table8", "craft", "seconds", "files")})
        return 0
    shap = doc["region_shapley"]
    by_class = ", ".join(f"{k} {v}" for k, v in doc["patients_by_class"].items())
    print(f"explained {doc['n_images']} photos of {doc['n_patients']} patients ({by_class}); "
          f"baseline {doc['baseline']['kind']}; "
          f"region Shapley {shap['seconds']:.1f} s on {shap['device']} (efficiency gap "
          f"{shap['efficiency_max_abs_gap']:.1e})")
    if doc.get("craft") and doc["craft"].get("skipped"):
        print(f"CRAFT skipped: {doc['craft']['skipped']}")
    for name, path in files.items():
        print(f"  {name}: {path}")
    return 0
