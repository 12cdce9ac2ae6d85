"""Every HTML output in a real browser: Debian's chromium, headless, renders each report (the STARD report of
`study`/`demo`, the evaluation report of `evaluate`, a degenerate model's report, the screening report, a Table 1
page) at 1280 px and 390 px with no console error, and prints it to PDF. Screenshots and PDFs are kept under the
test's tmp folder. Skipped (with the reason) where chromium is absent; `.ci/run` installs it."""

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
from report_sample import degenerate_study, evaluation_report_study, sample_methods, sample_study, screening_sample

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]
WIDTHS = (1280, 390)

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                 ".ci/run installs it)")]


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180)


def console_messages(stderr: str) -> list[str]:
    """What the page printed to the console (Chromium logs each message as a CONSOLE line), and uncaught errors."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def pages(module_tmp) -> dict[str, Path]:
    from f2b_study.report.screening import render_screening_report
    from f2b_study.report.stard import write_stard_report
    from f2b_study.report.table1 import table1_page

    folder = module_tmp("pages")
    study = dataclasses.replace(sample_study(replicates=50), methods=sample_methods())
    out = {"stard": write_stard_report(study, folder / "study" / "report.html"),
           "evaluation": write_stard_report(evaluation_report_study(), folder / "evaluate" / "report.html"),
           "degenerate": write_stard_report(degenerate_study(), folder / "degenerate" / "report.html")}
    patients, images, summary = screening_sample()
    out["screening"] = folder / "screening_report.html"
    out["screening"].write_text(render_screening_report(patients, images, summary, simulated_labels=True),
                                encoding="utf-8")
    caption, result = study.table1[0]
    out["table1"] = folder / "table1.html"
    out["table1"].write_text(table1_page(result, "Table 1", caption), encoding="utf-8")
    return out


def test_the_console_check_sees_an_error(tmp_path):
    """The check below is only worth something if it catches a console error: a page that logs one."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('broken page');</script></body></html>")
    run = _chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    assert any("broken page" in line for line in console_messages(run.stderr)), run.stderr[-2000:]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_report_renders_without_console_errors(pages, width, tmp_path):
    from PIL import Image

    shots = tmp_path / "screenshots"
    shots.mkdir()
    for name, page in pages.items():
        shot = shots / f"{name}-{width}.png"
        run = _chromium(tmp_path / f"profile-{name}", f"--screenshot={shot}", f"--window-size={width},3000",
                        page.as_uri())
        assert run.returncode == 0, (name, run.stderr[-2000:])
        assert not console_messages(run.stderr), (name, console_messages(run.stderr))
        with Image.open(shot) as image:
            assert image.size == (width, 3000)
            colours = image.convert("L").getextrema()
        assert colours[0] < 60 and colours[1] > 240, name  # text on a page, not a blank screen


def test_the_stard_dom_has_every_section_and_escaped_names(pages, tmp_path):
    dom = _chromium(tmp_path / "profile", "--dump-dom", pages["stard"].as_uri())
    assert dom.returncode == 0
    for anchor in ('id="results"', 'id="multicentre"', 'id="checklist"', 'id="tripod"', 'id="simulated-banner"',
                   'id="definitions"'):
        assert anchor in dom.stdout
    assert "<script" not in dom.stdout.lower()
    assert "&lt;script&gt;alert('centre')&lt;/script&gt;" in dom.stdout
    degenerate = _chromium(tmp_path / "profile", "--dump-dom", pages["degenerate"].as_uri())
    assert 'id="degenerate-banner"' in degenerate.stdout


def test_reports_print_to_pdf(pages, tmp_path):
    """Chromium's "Print to PDF": several A4 pages (checked by eye during development: no row split across pages,
    figures whole); pages are rasterised with pdftoppm when poppler is installed."""
    for name in ("stard", "screening"):
        pdf = tmp_path / f"{name}.pdf"
        run = _chromium(tmp_path / f"profile-{name}", f"--print-to-pdf={pdf}", "--no-pdf-header-footer",
                        pages[name].as_uri())
        assert run.returncode == 0 and pdf.stat().st_size > 20_000, run.stderr[-2000:]
        assert not console_messages(run.stderr)
        if shutil.which("pdfinfo"):
            info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
            pages_count = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
            assert pages_count >= (5 if name == "stard" else 1)
            assert "(A4)" in next(line for line in info.splitlines() if line.startswith("Page size:"))
        if shutil.which("pdftoppm"):
            subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "3", str(pdf), str(tmp_path / name)],
                           check=True, timeout=120)
            assert sorted(tmp_path.glob(f"{name}-*.png"))
