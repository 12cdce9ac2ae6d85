"""`f2b-study pool`: the multi-centre STARD report from the centres' site summaries alone (docs/multicentre.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, print_json, warn


def register(sub: Any) -> None:
    parser = add_command(
        sub, "pool", help="pool the centres' site summaries -> one multi-centre STARD report, no patient data",
        description="Read the summaries `f2b-study site-summary` wrote at each centre, check that they come from "
        "one model and one version of the tool and were not edited, and write OUT/report.html (the STARD report: "
        "flow per centre and in total, Table 1, per-centre and pooled results with the fixed- and random-effects "
        "meta-analysis of the AUCs, the pooled confusion matrix with sensitivity, specificity, PPV and NPV, "
        "calibration from the pooled bins, decision curves, comparator tests) and OUT/pooled.json. The report "
        "has a table of which pooled figures are exact and which are approximations, and by how much they can "
        "differ from a run on all patients' data.",
        examples="  f2b-study pool centre-a.json centre-b.json --out reports/pooled\n"
        "  f2b-study pool summaries/*.json --out reports/pooled --title 'Face2Bone external validation' --json\n")
    parser.add_argument("summaries", nargs="+", type=Path, help="site summaries (SITE.json), one per centre")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.html and pooled.json")
    parser.add_argument("--title", help="report title")
    parser.add_argument("--bootstrap", type=int, help="bootstrap replicates of the pooled confusion-matrix CIs "
                        "(default: the first summary's)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (default: the first summary's)")
    parser.add_argument("--json", action="store_true", help="print the pooled key figures as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from f2b_study.atomic import write_text
    from f2b_study.errors import InputError
    from f2b_study.jsonutil import dumps
    from f2b_study.report.pooled import write_pooled_report
    from f2b_study.stats.pooling import pool_sites, read_sites

    sites, warnings = read_sites(args.summaries)
    settings = sites[0].doc["settings"]
    replicates = settings.get("bootstrap", 2000) if args.bootstrap is None else args.bootstrap
    if replicates < 0:
        raise InputError.at("--bootstrap", value=replicates, expected="0 or more replicates")
    seed = settings.get("bootstrap_seed", 42) if args.seed is None else args.seed
    pooled = pool_sites(sites, warnings, replicates=replicates, seed=seed)
    args.out.mkdir(parents=True, exist_ok=True)
    document = pooled.to_json()
    write_text(args.out / "pooled.json", dumps(document, indent=1))
    report = write_pooled_report(pooled, args.out / "report.html", title=args.title)
    for message in warnings:
        warn("pool", message)
    ev = pooled.evaluation
    if args.json:
        print_json({"sites": [s.name for s in sites], "n": ev["n"], "overall": ev["overall"],
                    "meta": {k: {"fixed": m["fixed"], "random": m["random"], "i2": m["i2"]}
                             for k, m in pooled.multicentre["meta"].items()},
                    "exactness": pooled.exactness, "files": {"report": str(report),
                                                              "pooled": str(args.out / "pooled.json")}})
        return 0
    macro = pooled.multicentre["meta"]["auc_macro_ovr"]
    print(f"pooled {len(sites)} centre(s): {ev['n']} patients evaluated; accuracy {ev['overall']['accuracy']:.3f}, "
          f"kappa {_f(ev['overall']['kappa'])}")
    for name, centre in pooled.multicentre["centres"].items():
        print(f"  {name:<20} n {centre['n']:>6}  macro AUC {_f(centre['overall']['auc_macro_ovr'])}")
    if macro.get("fixed"):
        print(f"  macro AUC, fixed effect {_f(macro['fixed']['estimate'])}, random effects "
              f"{_f(macro['random']['estimate'])}, I² {100 * macro['i2']:.1f}%")
    approximate = [row["figure"] for row in pooled.exactness if row["status"] != "exact"]
    print(f"  not exact pools ({len(approximate)}): see the report's table 'Exact and approximate pooled figures'")
    print(f"report: {report}", file=sys.stdout)
    return 0


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
