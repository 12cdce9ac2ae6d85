"""`f2b-study models`: the model registry with parameter counts and GFLOPs."""

from __future__ import annotations

import argparse
from typing import Any

from f2b_study.commands._common import add_command, print_json


def register(sub: Any) -> None:
    parser = add_command(
        sub, "models", help="list the registry's models with parameters and GFLOPs",
        description="List every model `train --arch` accepts: Face2Bone, its three ablations and the paper's "
        "comparators, with total and trainable parameters and the compute of one image at the input size. "
        "GMACs = multiply-adds / 1e9 (what vision papers call GFLOPs); GFLOPs = 2 x GMACs (torch's count). "
        "Nothing is downloaded and no weights are allocated.",
        examples="  f2b-study models\n"
        "  f2b-study models --input-size 112\n"
        "  f2b-study models --json\n")
    parser.add_argument("--input-size", type=int, metavar="N",
                        help="count FLOPs at N x N pixels (default: each model's own, 224)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from f2b_study.errors import InputError
    from f2b_study.models.flops import describe
    from f2b_study.models.registry import list_models

    if args.input_size is not None and not 32 <= args.input_size <= 1024:
        raise InputError(f"--input-size {args.input_size}: expected a size between 32 and 1024 pixels")
    overrides = {} if args.input_size is None else {"input_size": args.input_size}
    rows = []
    for name in tqdm(list_models(), desc="counting", unit="model", leave=False, disable=args.json):
        try:
            rows.append(describe(name, overrides))
        except InputError as error:  # e.g. ViT-B/16 takes multiples of 16 only: say so in its row
            rows.append({"name": name, "params": None, "trainable_params": None, "gflops": None, "gmacs": None,
                         "input_size": args.input_size, "description": f"not available: {error}"})
    if args.json:
        print_json({"models": rows, "flops_convention": "gmacs = multiply-adds / 1e9; gflops = 2 * gmacs"})
    else:
        print(format_table(rows))
    return 0


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'model':<18} {'params':>8} {'trainable':>9} {'GMACs':>7} {'GFLOPs':>7} {'input':>5}  description",
             f"{'':<18} {'(M)':>8} {'(M)':>9} {'':>7} {'':>7} {'(px)':>5}"]
    for row in rows:
        if row["params"] is None:
            lines.append(f"{row['name']:<18} {'-':>8} {'-':>9} {'-':>7} {'-':>7} {row['input_size']:>5}  "
                         f"{row['description']}")
            continue
        lines.append(f"{row['name']:<18} {row['params'] / 1e6:>8.2f} {row['trainable_params'] / 1e6:>9.2f} "
                     f"{row['gmacs']:>7.2f} {row['gflops']:>7.2f} {row['input_size']:>5}  {row['description']}")
    lines.append("GMACs = multiply-adds per image / 1e9 (papers' \"GFLOPs\"); GFLOPs = 2 x GMACs. Face2Bone's "
                 "trainable count is with FaceNet frozen (the default; train --facenet-trainable changes it).")
    return "\n".join(lines)
