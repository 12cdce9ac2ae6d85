"""The STARD report: escaping of hostile names and IDs, self-contained (no external fetch), sections, privacy."""

import dataclasses
import re

import pytest
from report_sample import HOSTILE_CENTRE, HOSTILE_ID, sample_study

from f2b_study.report.checklist import ITEMS
from f2b_study.report.stard import render_stard_report


@pytest.fixture(scope="module")
def study():
    return sample_study(replicates=100)


@pytest.fixture(scope="module")
def html(study):
    return render_stard_report(study)


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
                   "explanations", "checklist", "table2", "table3", "forest", "roc"):
        assert f'id="{anchor}"' in html, anchor
    assert 'id="simulated-banner"' in html and "SIMULATED LABELS" in html
    assert "randomly initialised" in html  # loud FaceNet warning from the provenance
    assert "Research use only" in html
    assert "T ≥ −1.0" in html  # WHO wording of the labelling rule
    assert html.count("<svg") >= 7  # flow, confusion ×3, ROC, reliability, forest
    assert len(ITEMS) == 34 and [i.number for i in ITEMS][-1] == "30"
    assert html.count('class="text status-') == 34


def test_numbers_come_from_the_evaluation(study, html):
    ev = study.evaluation
    assert f"{ev['overall']['accuracy']:.3f}" in html
    lo, hi = ev["ci"]["accuracy"]
    assert f"({lo:.3f}–{hi:.3f})" in html
    assert f"{ev['bootstrap']['replicates']} replicates" in html
    assert "nan" not in re.sub(r"<[^>]+>", " ", html).lower().split()


def test_faces_hidden_unless_asked(study, html):
    assert "Figures with faces are left out" in html
    with_faces = render_stard_report(dataclasses.replace(study, include_faces=True))
    assert "Figures with faces are left out" not in with_faces
    assert 'id="expl-figure_1"' in with_faces


def test_deterministic(study, html):
    assert render_stard_report(study) == html


def test_svg_ids_are_unique_per_figure(html):
    ids = re.findall(r'\bid="([^"]+)"', html)
    duplicated = {i for i in ids if ids.count(i) > 1}
    assert not duplicated, sorted(duplicated)[:5]


def test_minimal_report_from_evaluation_only():
    import numpy as np

    from f2b_study.report.stard import StudyReportInput
    from f2b_study.stats.evaluation import evaluate_arrays

    rng = np.random.default_rng(0)
    y = rng.choice(3, 50)
    proba = rng.dirichlet([1, 1, 1], 50)
    text = render_stard_report(StudyReportInput(title="t", evaluation=evaluate_arrays(y, proba=proba, replicates=0)))
    assert 'id="flow"' not in text and 'id="multicentre"' not in text
    assert "Not run for this report" in text
    assert HOSTILE_CENTRE not in text
