"""The screening report: patients and photos counted separately from the data, loud banners (simulated labels, one
class for everyone, random FaceNet), aligned headers, aggregates only."""

import re
from html import unescape

import polars as pl
from report_sample import HOSTILE_CENTRE, screening_sample

from f2b_study import CLASSES
from f2b_study.report.screening import counts, render_screening_report


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_patients_and_photos_are_counted_separately():
    patients, images, summary = screening_sample()
    numbers = counts(patients, images)
    assert numbers["patients"] == 12 and numbers["photos"] == images.height == 12  # one has none, one has two
    assert numbers["patients_without_photo"] == 1 and numbers["patients_no_usable_photo"] == 1
    assert numbers["patients_with_usable_photo"] == 10 and numbers["photos_usable"] == 11
    text = _text(render_screening_report(patients, images, summary))
    assert ("12 patients screened: 10 with at least one usable photo (and so a prediction), 1 whose photos all "
            "failed quality control, 1 without any photo. 12 photos found for them, 11 usable.") in text
    assert "12 of 12 photos usable" not in text


def test_simulated_labels_banner_follows_the_flag_or_the_summary():
    patients, images, summary = screening_sample()
    assert 'id="simulated-banner"' in render_screening_report(patients, images, summary, simulated_labels=True)
    plain = render_screening_report(patients, images, summary)
    assert 'id="simulated-banner"' not in plain and "not recorded in the checkpoint" in plain
    recorded = render_screening_report(patients, images, {**summary, "model": {**summary["model"],
                                                                               "simulated_labels": True}})
    assert 'id="simulated-banner"' in recorded
    assert 'id="simulated-banner"' not in render_screening_report(patients, images, summary, simulated_labels=False)


def test_one_class_for_everyone_is_said_loudly():
    patients, images, summary = screening_sample()
    scored = patients.filter(pl.col("predicted").is_not_null()).height
    everyone = {**summary, "by_predicted_class": {"normal": 0, "osteopenia": scored, "osteoporosis": 0}}
    html = render_screening_report(patients, images, everyone)
    assert 'id="degenerate-banner"' in html
    assert f"The model predicted osteopenia for {scored} of {scored} patients (100.0%)" in _text(html)
    assert 'id="degenerate-banner"' not in render_screening_report(patients, images, summary)


def test_headers_align_with_their_columns_and_nothing_identifies_anyone():
    patients, images, summary = screening_sample()
    html = render_screening_report(patients, images, summary)
    table = html[html.index('id="classes"'):html.index("</table>", html.index('id="classes"'))]
    heads = re.findall(r'<th class="(\w+)">', table)
    first_row = re.search(r"<tr><td.*?</tr>", table, re.S).group(0)
    cells = re.findall(r'<td class="(\w+)">', first_row)
    assert heads == cells == ["text", "num", "num", "text"]
    assert "randomly initialised" in html and "Research use only" in html
    assert "&lt;script&gt;" in html and "<script" not in html.lower() and HOSTILE_CENTRE not in html
    for patient_id in patients["patient_id"]:
        assert patient_id not in html
    assert all(f">{c}<" in html or f"</span>{c}<" in html for c in CLASSES)
