"""The STARD report: escaping of hostile names and IDs, self-contained (no external fetch), sections, privacy,
the degenerate-model banner, formatting, methods as prose, the checklists and the exports."""

import dataclasses
import re
from html import unescape

import numpy as np
import pytest
from report_sample import HOSTILE_CENTRE, HOSTILE_ID, degenerate_study, predictions, sample_methods, sample_study

from f2b_study import CLASSES
from f2b_study.present import format as fmt
from f2b_study.report.checklist import ITEMS, TRIPOD_ITEMS, tripod_checklist
from f2b_study.report.stard import build_context, render_stard_report, write_stard_report


@pytest.fixture(scope="module")
def study():
    return sample_study(replicates=100)


@pytest.fixture(scope="module")
def html(study):
    return render_stard_report(study)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_hostile_names_and_ids_are_escaped(html):
    assert "<script" not in html.lower()  # the template has no script; nothing from the data becomes one
    assert "&lt;script&gt;alert(&#39;centre&#39;)&lt;/script&gt;" in html  # the centre name, shown as text
    assert "Face2Bone validation &lt;sample&gt; &amp; test" in html
    assert "&lt;b&gt;jawline&lt;/b&gt;" in html  # explanation tables are data, escaped


def test_patient_ids_are_pseudonymised(study, html):
    raw_ids = [e["patient_id"] for e in study.evaluation["errors"]]
    assert raw_ids and any(HOSTILE_ID in i for i in raw_ids)
    for raw in raw_ids:
        assert raw not in html
        assert "alert(&#39;id&#39;)" not in html
    assert len(re.findall(r"S-[0-9a-f]{10}", html)) == len(raw_ids)


def test_self_contained(html):
    # no external resource: no http(s) src/href/url()/@import anywhere (xmlns attributes are names, not fetches)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.I)
    assert "@import" not in html
    assert "<link" not in html.lower() and "<img" not in html.lower()
    assert "<metadata>" not in html  # matplotlib's RDF block is stripped


def test_sections_and_banners(study, html):
    for anchor in ("methods", "flow", "table1", "results", "calibration", "subgroups", "comparators", "multicentre",
                   "explanations", "checklist", "tripod", "definitions", "table2", "table3", "forest", "roc"):
        assert f'id="{anchor}"' in html, anchor
    assert 'id="simulated-banner"' in html and "SIMULATED LABELS" in html
    assert "randomly initialised" in html  # loud FaceNet warning from the provenance
    assert "Research use only" in html
    assert re.search(r"T ≥ −1(\.0)?\b", html)  # WHO wording of the labelling rule
    assert html.count("<svg") >= 7  # flow, confusion ×3, ROC, reliability, forest
    assert len(ITEMS) == 34 and [i.number for i in ITEMS][-1] == "30"
    assert len(TRIPOD_ITEMS) == 52 and [i.number for i in TRIPOD_ITEMS][-1] == "27c"
    assert html.count('class="text status-') == 34 + 52
    assert 'id="degenerate-banner"' not in html  # this sample's model separates the classes


def test_numbers_come_from_the_evaluation(study, html):
    ev = study.evaluation
    assert f"{ev['overall']['accuracy']:.3f}" in html
    lo, hi = ev["ci"]["accuracy"]
    assert f"{lo:.3f} to {hi:.3f}" in html
    assert f"{ev['bootstrap']['replicates']} replicates" in html
    assert "nan" not in _text(html).lower().split()


def test_faces_never_in_the_shareable_report(study, html):
    assert "Figures with faces are left out" in html and 'id="expl-figure_1"' not in html
    with_faces = render_stard_report(dataclasses.replace(study, include_faces=True))
    # --include-faces writes faces to the private outputs; the report, which may be shared, still has none
    assert 'id="expl-figure_1"' not in with_faces and "private outputs only" in with_faces


def test_deterministic(study, html):
    assert render_stard_report(study) == html


def test_svg_ids_are_unique_per_figure(html):
    ids = re.findall(r'\bid="([^"]+)"', html)
    duplicated = {i for i in ids if ids.count(i) > 1}
    assert not duplicated, sorted(duplicated)[:5]


def test_minimal_report_from_evaluation_only():
    from f2b_study.report.stard import StudyReportInput
    from f2b_study.stats.evaluation import evaluate_arrays

    rng = np.random.default_rng(0)
    y = rng.choice(3, 50)
    proba = rng.dirichlet([1, 1, 1], 50)
    text = render_stard_report(StudyReportInput(title="t", evaluation=evaluate_arrays(y, proba=proba, replicates=0)))
    assert 'id="flow"' not in text and 'id="multicentre"' not in text
    assert "Not run for this report" in text
    assert HOSTILE_CENTRE not in text
    assert "no bootstrap intervals" in text


# -- the degenerate index test ----------------------------------------------------------------------------------------

def test_degenerate_model_gets_a_banner_at_the_top():
    study = degenerate_study()
    ev = study.evaluation
    assert ev["predicted_counts"] == [0, ev["n"], 0]  # osteopenia for everyone
    html = unescape(render_stard_report(study))
    banner = html.index('id="degenerate-banner"')
    assert banner < html.index('id="methods"')  # before anything else is read
    assert f"It predicted osteopenia for {ev['n']} of {ev['n']} patients (100.0%)" in html
    assert "Cohen's κ is 0.000" in html


def test_degeneracy_criteria_each_on_its_own():
    from f2b_study.report.degenerate import assess

    def doc(cm, kappa, ci):
        return {"n": int(np.sum(cm)), "classes": list(CLASSES), "confusion_matrix": cm,
                "overall": {"kappa": kappa, "auc_macro_ovr": 0.7}, "ci": {"auc_macro_ovr": ci}}

    healthy = doc([[30, 5, 5], [5, 30, 5], [5, 5, 30]], 0.6, [0.62, 0.78])
    assert not assess(healthy).degenerate and assess(healthy).console_line() == ""
    one_class = assess(doc([[0, 40, 0], [1, 39, 0], [0, 40, 0]], 0.6, [0.62, 0.78]))
    assert one_class.degenerate and one_class.dominant_class == "osteopenia"
    assert one_class.dominant_share == pytest.approx(119 / 120)
    assert len(one_class.reasons) == 1 and one_class.console_line().startswith("WARNING: degenerate")
    # 94% in one class is not degenerate by that rule alone
    assert not assess(doc([[0, 47, 3], [0, 47, 3], [0, 47, 3]], 0.6, [0.62, 0.78])).degenerate
    assert assess(doc([[30, 5, 5], [5, 30, 5], [5, 5, 30]], 0.05, [0.62, 0.78])).degenerate  # κ ≤ 0.05
    assert not assess(doc([[30, 5, 5], [5, 30, 5], [5, 5, 30]], 0.051, [0.62, 0.78])).degenerate
    chance = assess(doc([[30, 5, 5], [5, 30, 5], [5, 5, 30]], 0.6, [0.45, 0.78]))
    assert chance.degenerate and "includes 0.5" in chance.reasons[0]
    assert assess(doc([[30, 5, 5], [5, 30, 5], [5, 5, 30]], None, None)).reasons == ()  # unknown ≠ degenerate


def test_degeneracy_reads_the_json_document_too():
    from f2b_study.report.degenerate import assess
    from f2b_study.stats.evaluation import to_document

    ev = degenerate_study().evaluation
    assert assess(to_document(ev)).reasons == assess(ev).reasons


# -- formatting -------------------------------------------------------------------------------------------------------

def test_number_and_interval_formatting():
    assert fmt.number(-0.5471) == "−0.547" and fmt.number(0.1444) == "0.144"
    assert fmt.number(-0.0001) == "0.000"  # no "−0.000"
    assert fmt.number(None) == "—" and fmt.number(float("nan")) == "—"
    assert fmt.interval((-0.547, -0.144)) == "−0.547 to −0.144"
    assert fmt.interval((0.475, 0.475)) == "—" and fmt.interval_note((0.475, 0.475)) == fmt.DEGENERATE_INTERVAL
    assert fmt.interval((0.2, 0.6), n=1) == "—" and fmt.interval_note((0.2, 0.6), 1) == fmt.ONE_PATIENT
    assert fmt.p_value(0.0004) == "<0.001" and fmt.p_value(0.05) == "0.050"
    assert fmt.decimals_for([8.91e-05, -0.000897]) == 6 and fmt.decimals_for([0.12, 0.5]) == 3


def test_no_ascii_hyphen_intervals_and_degenerate_intervals_are_noted(html):
    text = _text(html)
    assert not re.search(r"\d\s*--?\s*\d\.\d{3}\)", text)  # no "(-0.547--0.144)" style interval
    assert not re.search(r"\(\d\.\d{3}–\d\.\d{3}\)", text)  # intervals read "a to b" now

    from f2b_study.present import tabular as tb

    table = tb.Table("t", "c", [tb.Column("Metric", tb.TEXT), tb.Column("AUC", ci=True)],
                     [tb.Row([tb.text("a"), tb.num(0.475, (0.475, 0.475))]),
                      tb.Row([tb.text("b"), tb.num(0.5, (0.2, 0.8), n=1)]),
                      tb.Row([tb.text("c"), tb.num(-0.3, (-0.547, -0.144))])])
    notes = tb.Footnotes()
    view = tb.html_view(table, notes)
    assert [r["cells"][1]["ci"] for r in view["rows"]] == ["—", "—", "−0.547 to −0.144"]
    assert notes.items == [fmt.DEGENERATE_INTERVAL, fmt.ONE_PATIENT]
    assert view["rows"][0]["cells"][1]["refs"] == [1]


def test_small_subgroups_are_marked():
    import polars as pl

    from f2b_study.report.stard import SMALL_N_NOTE, StudyReportInput
    from f2b_study.stats.evaluation import evaluate_predictions
    from f2b_study.stats.predictions import predictions_from_frame

    frame = predictions(80, 11, "Centre A", "S-")
    frame = frame.with_columns(pl.Series("sex", ["M"] * 6 + ["F"] * (frame.height - 6)))
    ev = evaluate_predictions(predictions_from_frame(frame, source="s"), by=("sex",), replicates=20)
    male = ev["subgroups"]["sex"]["M"]["n"]
    assert male < 10
    context = build_context(StudyReportInput(title="t", evaluation=ev))
    rows = {r["cells"][0]["text"]: r for r in context["subgroup_tables"][0]["rows"]}
    ref = context["footnotes"].index(SMALL_N_NOTE) + 1
    assert ref in rows["Male"]["cells"][0]["refs"] and ref not in rows["Female"]["cells"][0]["refs"]


def test_codes_are_words(study):
    import polars as pl
    from report_sample import predictions as sample_predictions

    from f2b_study.stats.table1 import table1

    frame = pl.concat([sample_predictions(60, 1, "A", "x"), sample_predictions(60, 2, "B", "y")])
    report = render_stard_report(dataclasses.replace(study, table1=[("By sex", table1(frame, "sex",
                                                                                      ["age_years", "bmi"]))]))
    headers = re.findall(r"<th[^>]*>(.*?)</th>", report)
    assert any(h.startswith("Female") for h in headers) and any(h.startswith("Male") for h in headers)
    assert not any(re.fullmatch(r"[MF](<span.*)?", h) for h in headers)
    assert "Sex: Female" in report and "sex F" not in report


def test_table1_footnote_and_one_precision_per_kind(study):
    from f2b_study.report.table1 import MEAN_SD, MEDIAN_IQR, kinds, table1_table

    for caption, result in study.table1:
        table = table1_table(result, caption)
        found = kinds(result)
        note = table.notes[0]
        assert "Shapiro–Wilk" in note and "P ≥ 0.01" in note
        for variable, kind in found.items():
            label = next(r.cells[0].value for r in table.rows if r.cells[0].value and
                         str(r.cells[0].value).startswith(result_label(variable)))
            assert label.endswith(kind), (label, kind)
        for row in table.rows:
            for cell in row.cells[1:-2]:
                text = cell.text or ""
                if "±" in text:
                    assert re.fullmatch(r"−?\d+\.\d ± \d+\.\d", text), text
                elif " to " in text:
                    assert re.fullmatch(r"−?\d+\.\d \(−?\d+\.\d to −?\d+\.\d\)", text), text
        assert {MEAN_SD, MEDIAN_IQR} & set(found.values())


def result_label(variable: str) -> str:
    from f2b_study.stats.table1 import LABELS

    return LABELS.get(variable, variable)


def test_table1_kind_follows_the_shapiro_rule():
    """The footnote's kinds are the rule's, checked against scipy directly on data made for each kind."""
    import polars as pl
    from scipy import stats

    from f2b_study.report.table1 import MEAN_SD, MEDIAN_IQR, kinds
    from f2b_study.stats.table1 import NORMALITY_ALPHA, table1

    rng = np.random.default_rng(0)
    groups = np.repeat(["a", "b"], 80)
    frame = pl.DataFrame({"g": groups, "normal_var": rng.normal(50, 5, 160),
                          "skewed_var": rng.lognormal(0, 1.2, 160)})
    result = table1(frame, "g", ["normal_var", "skewed_var"])
    found = kinds(result)
    for variable in ("normal_var", "skewed_var"):
        normal = all(stats.shapiro(frame.filter(pl.col("g") == g)[variable].to_numpy()).pvalue >= NORMALITY_ALPHA
                     for g in ("a", "b"))
        assert found[variable] == (MEAN_SD if normal else MEDIAN_IQR)
    assert found == {"normal_var": MEAN_SD, "skewed_var": MEDIAN_IQR}


# -- methods as prose -------------------------------------------------------------------------------------------------

def test_methods_are_paragraphs_from_the_facts(study):
    report = render_stard_report(dataclasses.replace(study, methods=sample_methods()))
    methods = report[report.index('id="methods"'):report.index('id="flow"')]
    for topic in ("Participants and reference standard", "Photos and quality control", "Model and training",
                  "Statistics"):
        assert topic in methods
    text = _text(methods)
    assert "stratified by bone status" in text and "seed 42" in text
    assert "|yaw| &gt; 30°, |pitch| &gt; 25° or |roll| &gt; 40°" in text or \
        "|yaw| > 30°, |pitch| > 25° or |roll| > 40°" in text  # QCThresholds' defaults
    assert "Recorded as flags only" in text  # eyes closed and expression are flags by default
    assert "up to 80 epochs" in text and "Adam" in text
    assert "<ul>" not in methods  # prose, not a list of formulas
    definitions = report[report.index('id="definitions"'):]
    assert "<details>" in definitions and "Σ (n_b/N)" in definitions


def test_model_configuration_reads_as_words_and_accounts_for_every_key():
    from f2b_study.models.face2bone import DEFAULTS
    from f2b_study.report.methods import model_config_text

    config = {**DEFAULTS, "input_size": 112, "num_classes": 3, "mean": [0.485, 0.456, 0.406],
              "std": [0.229, 0.224, 0.225], "dims": [24, 48, 96, 192], "depths": [1, 1, 2, 1]}
    text = model_config_text(config)
    assert "{" not in text and '"' not in text  # not a JSON dump
    for words in ("input 112 × 112 px", "channels 24/48/96/192", "blocks 1/1/2/1", "attention heads 2/4/8/16",
                  "HiLo window 2", "HiLo α 0.5", "SSAM attention pooling (8 heads) supervised by a frozen FaceNet "
                  "at 160 px", "KAN head (hidden 64, grid 5, spline order 3)", "3 classes", "SD (0.229, 0.224"):
        assert words in text, words
    # a key this function does not know is still stated, never dropped
    assert model_config_text({**config, "drop_path": 0.1}).endswith("drop_path = 0.1")
    assert "global average pooling" in model_config_text({**config, "pooling": "gap"})
    assert "MLP head (hidden 64)" in model_config_text({**config, "head": "mlp"})


# -- checklists -------------------------------------------------------------------------------------------------------

def test_tripod_status_follows_the_report_contents(study):
    full = {row["number"]: row["status"] for row in tripod_checklist(dataclasses.replace(study,
                                                                                        methods=sample_methods()))}
    bare = {row["number"]: row["status"] for row in tripod_checklist(dataclasses.replace(
        study, flow=None, multicentre=None, table1=[], provenance=None))}
    assert full["11"] == "filled" and bare["11"] == "partly"  # missing data: the flow
    assert full["12d"] == "filled" and bare["12d"] == "partly"  # clusters: multi-centre
    assert full["20c"] == "filled" and bare["20c"] == "authors"  # Table 1 by split
    assert full["13"] == "filled" and bare["13"] == "authors"  # class imbalance, when the facts say
    assert full["7"] == "partly" and full["27a"] == "filled"
    assert all(row["applies"] in ("D", "E", "D;E") for row in tripod_checklist(study))


# -- exports ----------------------------------------------------------------------------------------------------------

def test_exports_tables_and_figures(study, tmp_path):
    import openpyxl
    from PIL import Image

    target = write_stard_report(study, tmp_path / "report.html")
    context = build_context(study)
    tables = context["export_tables"]
    book = openpyxl.load_workbook(tmp_path / "tables.xlsx")
    assert len(book.sheetnames) == len(tables) >= 10
    sheet = book["table2_weighted"]
    header = [c.value for c in sheet[3]]
    assert header[:5] == ["Model", "n", "Accuracy", "Accuracy 95% CI lower", "Accuracy 95% CI upper"]
    first = [c.value for c in sheet[4]]
    ev = study.evaluation
    assert first[0] == "Face2Bone" and first[1] == ev["n"]
    assert first[2] == pytest.approx(ev["overall"]["accuracy"])
    assert first[3:5] == pytest.approx(ev["ci"]["accuracy"])
    assert isinstance(first[2], float) and sheet.cell(4, 3).number_format == "0.000"
    csvs = sorted((tmp_path / "tables").glob("*.csv"))
    assert len(csvs) == len(tables)
    assert (tmp_path / "tables" / "table2_weighted.csv").read_text().startswith("Model,n,Accuracy,")
    figures = context["export_figures"]
    assert {"flow", "confusion", "roc", "reliability", "forest"} <= set(figures)
    assert "expl_figure" not in " ".join(figures)  # a faces figure is not exported without --include-faces
    for name in figures:
        svg = (tmp_path / "figures" / f"{name}.svg").read_text()
        assert svg.startswith("<?xml") and 'width="' in svg[:400]
        with Image.open(tmp_path / "figures" / f"{name}.png") as png:
            assert round(png.info["dpi"][0]) == 300
    assert 'id="exports"' in target.read_text() and "tables.xlsx" in target.read_text()


def test_figure_text_is_at_least_9_pt_at_100_percent(html):
    from f2b_study.present.style import MIN_FONT_PT, shown_font_px, svg_width_pt

    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) >= 7
    for svg in svgs:
        assert svg_width_pt(svg) * 4 / 3 <= 1144, svg_width_pt(svg)  # shown at natural size at 1280 px
        assert shown_font_px(svg) >= MIN_FONT_PT * 4 / 3 - 1e-6, (svg[:120], shown_font_px(svg))


def test_exported_text_never_becomes_a_formula(tmp_path):
    import openpyxl

    from f2b_study.present import tabular as tb

    table = tb.Table("centres", "c", [tb.Column("Centre", tb.TEXT), tb.Column("n", tb.INT)],
                     [tb.Row([tb.text('=HYPERLINK("http://x","y")'), tb.num(3)]), tb.Row([tb.text("-1+2"), tb.num(4)])])
    tb.write_xlsx([table], tmp_path / "t.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "t.xlsx")["centres"]
    assert sheet.cell(4, 1).value == '=HYPERLINK("http://x","y")' and sheet.cell(4, 1).data_type == "s"
    assert sheet.cell(4, 2).value == 3 and sheet.cell(5, 1).data_type == "s"
    lines = tb.csv_text(table).splitlines()
    assert lines[1].startswith("\"'=HYPERLINK") and lines[2].startswith("'-1+2")
