"""The STARD report's explainability sections (f2b_study.present.section.ReportSection) from an explain result.

    explanation_sections(document, figures) -> [ReportSection, ...]   (explain.json's content, {name: svg})
    sections_from_folder(out_dir) -> [ReportSection, ...]             (what `f2b-study explain --out` wrote)

Text is our own, with every value that comes from data escaped; figures are our own inline SVGs drawn on a mean
face only (no individual face: contains_faces stays False); tables are plain data the report template escapes.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from f2b_study import CLASSES
from f2b_study.present import format as fmt
from f2b_study.present import tabular as tb
from f2b_study.present.labels import subgroup_label
from f2b_study.present.section import ReportSection

FIGURES = ("region_shapley", "pixel_maps", "craft_importance", "craft_maps", "ssam_attention")


def _p(text: str) -> str:
    return f"<p>{text}</p>"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _mean_sd_cell(mean: Any, sd: Any, n: Any, digits: int) -> tb.Cell:
    if not n:
        return tb.Cell()
    return tb.Cell(value=fmt.finite(mean), text=f"{fmt.number(mean, digits)} ± {fmt.number(sd, digits)}",
                   parts={"SD": fmt.finite(sd)})


def _table6(rows: Sequence[Mapping[str, Any]], explained: str, classes: Sequence[str], caption: str,
            key: str) -> tb.Table:
    """Region Shapley values, mean ± SD and n per class; one fixed-point precision for the whole table."""
    from f2b_study.explain.tables import table_digits

    chosen = [r for r in rows if r["explained_output"] == explained]
    digits = table_digits([r.get(f"{c}_{k}") for r in chosen for c in classes for k in ("mean", "sd")])
    columns = [tb.Column("Subgroup", tb.TEXT), tb.Column("Region", tb.TEXT)]
    for c in classes:
        columns += [tb.Column(f"{c}: mean ± SD", digits=digits, parts=("SD",)), tb.Column(f"{c}: n", tb.INT)]
    table_rows = []
    for r in chosen:
        cells = [tb.text(subgroup_label(str(r["subgroup"]))), tb.text(r["region"])]
        for c in classes:
            cells += [_mean_sd_cell(r.get(f"{c}_mean"), r.get(f"{c}_sd"), r.get(f"{c}_n"), digits),
                      tb.num(r.get(f"{c}_n"))]
        table_rows.append(tb.Row(cells))
    return tb.Table(key=key, caption=caption, columns=columns, rows=table_rows)


def _table7(rows: Sequence[Mapping[str, Any]]) -> tb.Table:
    columns = [tb.Column("Analysis", tb.TEXT), tb.Column("Comparison", tb.TEXT), tb.Column("Patients", tb.INT),
               tb.Column("Pairs", tb.INT), tb.Column("Similarity (mean ± SD)", parts=("SD",)),
               tb.Column("Welch t", digits=2), tb.Column("df", digits=1), tb.Column("P", tb.P)]
    table_rows = [tb.Row([tb.text(r["analysis"]), tb.text(r["comparison"]), tb.num(r["n_patients"]),
                          tb.num(r["n_pairs"]), _mean_sd_cell(r.get("mean"), r.get("sd"), r["n_pairs"], 3),
                          tb.num(r.get("welch_t")), tb.num(r.get("welch_df")), tb.num(r.get("p"))])
                  for r in rows]
    return tb.Table(key="table7", caption="Table 7. Cosine similarity of patients' region-attribution vectors (5 "
                    "regions × 3 outputs): within each class and between classes (mean ± SD over pairs); Welch's "
                    "two-sample t-test of intra-class against inter-class pairs, two-sided (pairs sharing a patient "
                    "are not independent: P is descriptive).", columns=columns, rows=table_rows)


def _table8(rows: Sequence[Mapping[str, Any]]) -> tb.Table | None:
    if not rows or len(rows[0]) <= 1:
        return None
    kinds = [k[: -len("_js_divergence")] for k in rows[0] if k.endswith("_js_divergence")]
    names = {"craft_attribution": "CRAFT concept maps", "ssam_attention": "SSAM attention"}
    columns = [tb.Column("Comparison", tb.TEXT)]
    for kind in kinds:
        for suffix, label in (("js_divergence", "JS divergence (bits)"), ("js_distance", "JS distance")):
            digits = fmt.decimals_for([r.get(f"{kind}_{suffix}") for r in rows])
            columns.append(tb.Column(f"{names.get(kind, kind)}: {label}", digits=digits))
    table_rows = [tb.Row([tb.text(r["comparison"]), *[tb.num(r.get(f"{kind}_{suffix}")) for kind in kinds
                                                     for suffix in ("js_divergence", "js_distance")]])
                  for r in rows]
    return tb.Table(key="table8", caption="Table 8. Jensen–Shannon divergence between the classes' mean attention "
                    "maps, logarithm base 2 (0 = identical maps, 1 = disjoint); the JS distance is its square root "
                    "(scipy's jensenshannon). Maps at the feature map's resolution.", columns=columns,
                    rows=table_rows)


def _concepts_table(craft: Mapping[str, Any]) -> tb.Table:
    every = [v for item in craft.get("classes", []) for v in item["importance"]]
    digits = fmt.decimals_for(every, significant=2, low=2, high=5)
    rows = []
    for item in craft.get("classes", []):
        importance = item["importance"]
        top = ", ".join(f"concept {i + 1}: {fmt.number(importance[i], digits)}" for i in item["ranking"][:3])
        rows.append(tb.Row([tb.text(item["class"]), tb.num(item["n_images"]), tb.num(item["n_crops"]),
                            tb.num(item["n_concepts"]), tb.num(item["nmf_relative_error"]), tb.text(top)]))
    return tb.Table(key="craft_concepts", caption="CRAFT concepts per class: faces, crops, NMF concepts, NMF relative "
                    "reconstruction error ‖A − UW‖/‖A‖, and the three most important concepts (total Sobol index).",
                    columns=[tb.Column("Class", tb.TEXT), tb.Column("Faces", tb.INT), tb.Column("Crops", tb.INT),
                             tb.Column("Concepts", tb.INT), tb.Column("NMF error"),
                             tb.Column("Most important concepts", tb.TEXT)], rows=rows)


def explanation_sections(document: Mapping[str, Any], figures: Mapping[str, str]) -> list[ReportSection]:
    """The report sections for one explain result (explain.json's content and its figures' SVG text)."""
    classes = list((document.get("model") or {}).get("classes") or CLASSES)
    shap = document["region_shapley"]
    settings = document["settings"]
    baseline = document["baseline"]
    output = shap["output"]
    by_class = ", ".join(f"{_e(c)} {document['patients_by_class'].get(c, 0)}" for c in classes)
    facenet = shap["facenet_input"]
    facenet_text = {
        "masked": "FaceNet sees the same composite as the image branch, so an absent region is absent for the "
                  "whole network.",
        "original": "FaceNet is given the unmasked face for every composite (a cheaper approximation): the values "
                    "attribute only what goes through the image branch.",
    }.get(facenet, "The model has no FaceNet branch.")
    parts = [
        _p(f"Region Shapley values: the five facial regions (forehead, periorbital, midface, nasolabial, jawline; "
           f"from the face mesh landmarks, disjoint, covering the face ellipse) are the players. All 2⁵ = 32 "
           f"coalitions of every face were evaluated, so the values are exact Shapley values (not sampled); "
           f"they sum to f(all regions) − f(no region) for every face (largest deviation "
           f"{float(shap['efficiency_max_abs_gap']):.1e}). Explained: the model's {_e(output)} of each class. "
           f"Baseline: {_e(baseline['description'])}. {facenet_text}"),
        _p(f"{document['n_images']} photos of {document['n_patients']} patients ({_e(settings['split'])} split; "
           f"patients per class: {by_class}). The unit of analysis is the patient: a patient's value is the mean "
           f"over their photos. Maps are averaged over each class and drawn on the mean face of the "
           f"{document['n_images']} explained faces"
           + ("" if document.get("mean_face_shown") else " (too few faces to show the mean face: outline only)")
           + "; no individual face is shown."),
    ]
    if document.get("pixel_maps"):
        parts.append(_p("Pixel maps: gradient × (input − baseline) for each face's own class output, the "
                        "one-step approximation of integrated gradients from the same baseline."))
    tables = [
        _table6(document["table6"], "reference class", classes,
                f"Table 6. Region Shapley values (mean ± SD over patients, n) of the {output} of each patient's own "
                "reference class, by reference class; overall and by sex.", "table6"),
        _table6(document["table6"], classes[-1], classes,
                f"Table 6b. Region Shapley values of the {classes[-1]} {output} for every patient, by reference "
                "class (towards the last class, as the paper's negative-to-positive progression reads).",
                "table6b"),
        _table7(document["table7"]),
    ]
    shap_figures = [n for n in ("region_shapley", "pixel_maps") if figures.get(n)]
    shap_section = ReportSection(title="Explainability: facial regions (exact Shapley values)", html="".join(parts),
                                 figures=[figures[n] for n in shap_figures], figure_names=shap_figures,
                                 tables=tables)
    sections = [shap_section]

    craft = document.get("craft")
    if craft is not None:
        if craft.get("skipped"):
            craft_html = _p(f"CRAFT concepts were not computed: {_e(craft['skipped'])}.")
            craft_tables: list[tb.Table] = []
        else:
            config = craft["config"]
            craft_html = _p(
                f"CRAFT (Fel et al. 2023): per reference class, crops of the standardised faces "
                f"({config['crop_grid']}×{config['crop_grid']} grid, {config['crop_fraction']:.0%} of the face "
                f"each, resized to the model's input), non-negative activations of {_e(craft['adapter'])}, "
                f"{config['n_concepts']} NMF concepts per class (scikit-learn, seeded), concept importance as the "
                f"total Sobol index of the class's {_e(craft['output'])} (Jansen's estimator, "
                f"{config['nb_design']} scrambled Sobol designs per crop × (concepts + 2)), concept maps from each "
                f"position's activations in the class's concept bank. Maps are "
                f"{craft['map_size'][0]}×{craft['map_size'][1]} (the feature map).")
            craft_tables = [_concepts_table(craft)]
            table8 = _table8(document.get("table8") or [])
            if table8:
                craft_tables.append(table8)
        craft_figures = [n for n in ("craft_importance", "craft_maps", "ssam_attention") if figures.get(n)]
        sections.append(ReportSection(
            title="Explainability: concepts (CRAFT)", html=craft_html,
            figures=[figures[n] for n in craft_figures], figure_names=craft_figures, tables=craft_tables))
    return sections


def sections_from_folder(out_dir: str | Path) -> list[ReportSection]:
    """The sections from an explain output folder (explain.json and its SVG figures)."""
    out_dir = Path(out_dir)
    document = json.loads((out_dir / "explain.json").read_text(encoding="utf-8"))
    figures = {name: (out_dir / f"{name}.svg").read_text(encoding="utf-8").strip()
               for name in FIGURES if (out_dir / f"{name}.svg").is_file()}
    return explanation_sections(document, figures)
