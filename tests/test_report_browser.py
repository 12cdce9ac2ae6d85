"""The report in a real browser: Debian's chromium, headless, renders it with no console error and takes a
screenshot. Skipped (with the reason) where chromium is absent; `.ci/run` installs it."""

import shutil
import subprocess

import pytest
from report_sample import sample_study

from f2b_study.report.stard import render_stard_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                                 ".ci/run installs it)")]


def _chromium(tmp_path, *args):
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_renders_in_chromium_without_console_errors(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_stard_report(sample_study(replicates=100)), encoding="utf-8")
    shot = tmp_path / "report.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 50_000  # a rendered page, not a blank one
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    # the DOM chromium built has every section and the escaped centre name as text, not as markup
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0
    for anchor in ('id="results"', 'id="multicentre"', 'id="checklist"', 'id="simulated-banner"'):
        assert anchor in dom.stdout
    assert "<script" not in dom.stdout.lower()
    assert "&lt;script&gt;alert('centre')&lt;/script&gt;" in dom.stdout
