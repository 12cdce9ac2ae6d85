"""`f2b-study explain`: what the model looks at, by facial region (exact Shapley values) and by concept (CRAFT)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, cache_folder, load_study_args, print_json


def register(sub: Any) -> None:
    parser = add_command(
        sub, "explain", help="region Shapley values, pixel maps and CRAFT concepts (Tables 6–8)",
        description="Explain a trained model on a cohort's faces (docs/methods.md, Explanations; the paper's SHAP "
        "and CRAFT analyses). "
        "Region Shapley: the five facial regions are the players, an absent region is replaced by the training "
        "split's mean face (or a blur), and all 32 coalitions of every face are evaluated, so the values are exact. "
        "Writes OUT/private/region_shapley.csv (one row per photo) and, under OUT/shareable/, table6.csv (mean ± "
        "SD per region per class, by sex), table7.csv (intra-/inter-class cosine similarity, Welch t-test), "
        "table8.csv (Jensen–Shannon divergence of CRAFT maps, base 2), figures drawn on a mean face only (SVG and "
        "PNG) and explain.json. The config's [explain] sets the defaults of the flags. Faces default to the "
        "run's validation patients (and any patient the run never saw).",
        examples="  f2b-study explain cohorts/demo.toml --model runs/demo --out reports/demo/explain\n"
        "  f2b-study explain dxa.csv --photos photos/ --model runs/centre_a --out reports/a/explain --json\n"
        "  f2b-study explain dxa.csv --photos photos/ --model runs/a --out x --baseline blur --max-images 200\n"
        "  f2b-study explain dxa.csv --photos photos/ --model runs/a --out x --split all --device cuda\n")
    parser.add_argument("cohort", nargs="+", help="cohort table(s) (.csv/.xlsx) or config(s) (.toml)")
    parser.add_argument("--photos", type=Path, help="photo folder (default: the config's, else the table's folder)")
    parser.add_argument("--model", help="run folder (runs/NAME), its best/ folder, or a checkpoint's model.json "
                        "(default: the config's [model] path, else the newest run in runs/)")
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
    parser.add_argument("--no-craft", dest="craft", action="store_const", const=False, help="skip CRAFT")
    parser.add_argument("--no-pixel-maps", dest="pixel_maps", action="store_const", const=False,
                        help="skip the gradient maps")
    parser.add_argument("--batch-size", type=int, help="composite images per forward pass (default 256 on CUDA, 64 "
                        "on the CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--no-bf16", dest="bf16", action="store_const", const=False, help="float32 on the GPU")
    parser.add_argument("--seed", type=int, help="seed of subsets, NMF and Sobol designs (default 0)")
    parser.add_argument("--cache", type=Path, help="face cache folder (default .f2b-cache/faces)")
    parser.add_argument("--json", action="store_true", help="print the tables and settings as JSON")
    parser.set_defaults(func=run)


FLAGS = {name: f"explain.{name}" for name in (
    "split", "baseline", "blur_sigma", "output", "facenet_input", "max_images", "n_concepts", "craft", "pixel_maps",
    "batch_size", "bf16", "seed")}


def run(args: argparse.Namespace) -> int:
    import sys

    from f2b_study.cohort.cohort_photos import build_cohort_photos
    from f2b_study.commands.screen import resolve_model
    from f2b_study.explain.run import run_explain
    from f2b_study.faces.table import standardise

    study = load_study_args(args.cohort, args, FLAGS)
    checkpoint, how = resolve_model(args.model, study)
    if how != "--model":
        print(f"f2b-study explain: using {checkpoint.path} ({how})", file=sys.stderr)
    cohort = build_cohort_photos(study.centres, photos=args.photos, target="bone_status")
    faces = standardise(cohort.photos_of(cohort.patients["patient_id"]), qc=study.qc, cache_dir=cache_folder(args))
    from f2b_study.outputs import prepare_outputs
    from f2b_study.runlock import run_lock

    with run_lock(args.out, "explain"):
        outputs = prepare_outputs(args.out)
        result, files = run_explain(cohort, faces, checkpoint, out=outputs.shareable, private=outputs.private,
                                    settings=study.explain, device=args.device, progress=sys.stderr.isatty())
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
