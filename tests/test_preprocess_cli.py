"""`f2b-study preprocess`: cohort and folder input, the cache (hits, changed photos), resuming after an
interruption, [qc] from the config, the process pool, and --json counts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from faces_support import REPO, photo_frame, sample_photos

from f2b_study.cli import main
from f2b_study.faces.preprocess import iter_processed, preprocess_photos


def _photo_folder(root: Path, n: int = 6) -> Path:
    """P001..P00n.jpg: real portraits; P007.jpg: a text file posing as a photo."""
    root.mkdir(parents=True, exist_ok=True)
    for i, source in enumerate(sample_photos(40)[:n], start=1):
        shutil.copy(source, root / f"P{i:03d}.jpg")
    (root / f"P{n + 1:03d}.jpg").write_text("not a photo")
    return root


def _cohort(path: Path, ids: list[str]) -> Path:
    lines = ["patient_id,sex,age_years,menopausal_status,t_spine_l1_l4,t_femoral_neck"]
    lines += [f"{pid},F,{60 + i},post,-1.5,-2.0" for i, pid in enumerate(ids)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys, *argv: str) -> dict:
    assert main(["preprocess", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cohort_run_rerun_and_a_changed_photo(tmp_path: Path, capsys) -> None:
    photos = _photo_folder(tmp_path / "photos")
    cohort = _cohort(tmp_path / "cohort.csv", [f"P{i:03d}" for i in range(1, 9)])
    out = tmp_path / "out"
    args = (str(cohort), "--photos", str(photos), "--out", str(out), "--workers", "1", "--cache", str(tmp_path / "c"))
    first = _run(capsys, *args)
    assert first["photos"] == 7 and first["computed"] == 7 and first["from_cache"] == 0
    assert first["by_reason"].get("unreadable") == 1
    assert first["by_status"]["ok"] + first["by_status"]["excluded"] == 7
    assert first["join"]["patients_without_photos"] == 1
    assert "P008" in (out / "private" / "preprocess_log.txt").read_text()
    table = pl.read_csv(out / "private" / "preprocess.csv")
    assert table.height == 7 and table["photo"].n_unique() == 7
    assert {"photo", "patient_id", "status", "reason", "flags", "detection_score", "yaw", "pitch", "roll",
            "interocular_px", "face_path", "content_hash"} <= set(table.columns)
    bad = table.filter(pl.col("photo") == "P007.jpg").row(0, named=True)
    assert (bad["status"], bad["reason"]) == ("excluded", "unreadable")

    from f2b_study.faces.preprocess import analyzer_calls

    calls = analyzer_calls()
    again = _run(capsys, *args)
    assert again["computed"] == 0 and again["from_cache"] == 7
    assert analyzer_calls() == calls, "no model work on a rerun"
    assert pl.read_csv(out / "private" / "preprocess.csv").equals(table)

    shutil.copy(sample_photos(40)[20], photos / "P002.jpg")
    changed = _run(capsys, *args)
    assert changed["computed"] == 1 and changed["from_cache"] == 6
    after = pl.read_csv(out / "private" / "preprocess.csv")
    assert after.height == 7 and after["photo"].n_unique() == 7
    old = table.filter(pl.col("photo") == "P002.jpg")["content_hash"][0]
    assert after.filter(pl.col("photo") == "P002.jpg")["content_hash"][0] != old


def test_an_interrupted_run_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    paths = sample_photos(40)[:8]
    frame = photo_frame(paths)
    cache = tmp_path / "out" / "cache"
    stream = iter_processed([str(p) for p in paths], cache, workers=1)
    for _ in range(3):
        next(stream)
    stream.close()  # the run stops here, as on Ctrl-C
    entries = sorted(cache.rglob("*"))
    assert len([p for p in entries if p.suffix == ".npz"]) == 3
    assert not [p for p in entries if p.is_file() and p.name.startswith(".")], "no half-written file"
    result = preprocess_photos(frame, tmp_path / "out", workers=1, progress=False)
    assert result.computed == 5 and result.from_cache == 3
    assert result.frame.height == 8 and result.frame["photo"].n_unique() == 8
    assert result.summary()["computed"] == 5


def test_the_same_file_twice_is_processed_once_and_keeps_both_rows(tmp_path: Path) -> None:
    path = sample_photos(40)[0]
    frame = pl.DataFrame({"patient_id": ["A", "B"], "photo": ["x.jpg", "y.jpg"], "path": [str(path)] * 2})
    result = preprocess_photos(frame, tmp_path, workers=1, progress=False)
    assert result.frame.height == 2 and result.computed == 1
    assert result.frame["face_path"][0] == result.frame["face_path"][1]


def test_qc_config_turns_a_flag_into_an_exclusion_without_recomputing(tmp_path: Path, capsys) -> None:
    photos = _photo_folder(tmp_path / "cohort" / "photos")
    _cohort(tmp_path / "cohort" / "cohort.csv", [f"P{i:03d}" for i in range(1, 8)])
    config = tmp_path / "cohort.toml"
    config.write_text('name = "c"\ncsv = "cohort/cohort.csv"\nphotos = "cohort/photos"\n')
    out = tmp_path / "out"
    first = _run(capsys, str(config), "--out", str(out), "--workers", "1")
    smiling = first["flags"].get("non_neutral_expression", 0)
    assert smiling >= 1 and "non_neutral_expression" not in first["by_reason"]
    config.write_text(config.read_text() + "[qc]\nexclude_non_neutral_expression = true\nmax_yaw = 25\n")
    second = _run(capsys, str(config), "--out", str(out), "--workers", "1")
    assert second["computed"] == 0
    assert second["by_reason"]["non_neutral_expression"] == smiling
    assert photos.is_dir()


def test_bad_qc_setting_and_missing_input_are_one_line_errors(tmp_path: Path, capsys) -> None:
    _photo_folder(tmp_path / "photos", n=1)
    _cohort(tmp_path / "cohort.csv", ["P001"])
    config = tmp_path / "c.toml"
    config.write_text('name = "c"\ncsv = "cohort.csv"\nphotos = "photos"\n[qc]\nmax_yawn = 3\n')
    assert main(["preprocess", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "qc.max_yawn" in capsys.readouterr().err
    config.write_text('name = "c"\ncsv = "cohort.csv"\nphotos = "photos"\n[qc]\nexclude_eyes_closed = "yes"\n')
    assert main(["preprocess", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "true or false" in capsys.readouterr().err
    assert main(["preprocess", "--out", str(tmp_path / "o")]) == 2
    assert "--photos" in capsys.readouterr().err
    assert main(["preprocess", "--photos", str(tmp_path / "nowhere")]) == 2


def test_a_folder_without_a_cohort(tmp_path: Path, capsys) -> None:
    photos = _photo_folder(tmp_path / "photos", n=2)
    summary = _run(capsys, "--photos", str(photos), "--out", str(tmp_path / "out"), "--workers", "1",
                   "--cache", str(tmp_path / "c"))
    assert summary["photos"] == 3 and summary["by_reason"] == {"unreadable": 1}
    table = pl.read_csv(tmp_path / "out" / "private" / "preprocess.csv")
    assert sorted(table["patient_id"]) == ["P001", "P002", "P003"]
    assert main(["preprocess", "--photos", str(photos), "--out", str(tmp_path / "out"), "--workers", "1",
                 "--cache", str(tmp_path / "c")]) == 0
    assert "3 from the cache" in capsys.readouterr().out


@pytest.mark.slow
def test_the_pool_gives_what_one_process_gives(tmp_path: Path, monkeypatch) -> None:
    from f2b_study.faces import preprocess

    monkeypatch.setattr(preprocess, "MIN_PHOTOS_FOR_POOL", 0)
    frame = photo_frame(sample_photos(40)[:12])
    alone = preprocess_photos(frame, tmp_path / "one", workers=1, progress=False).frame
    spawned: list[int] = []
    real_pooled = preprocess._pooled
    monkeypatch.setattr(preprocess, "_pooled", lambda *a, **k: spawned.append(1) or real_pooled(*a, **k))
    pooled = preprocess_photos(frame, tmp_path / "two", workers=2, progress=False).frame
    assert spawned, "the pool ran"
    columns = ["photo", "status", "reason", "flags", "yaw", "pitch", "roll", "content_hash"]
    assert pooled.select(columns).equals(alone.select(columns))


def _crash_on_marked(items: list[tuple[int, str]]) -> list:
    """A worker task that dies like a native crash on the photo named crash.jpg."""
    from f2b_study.faces.preprocess import _process_many

    if any(path.endswith("crash.jpg") for _, path in items):
        os._exit(1)
    return _process_many(items)


@pytest.mark.slow
def test_a_worker_that_dies_costs_one_row_its_reason_not_the_run(tmp_path: Path) -> None:
    from f2b_study.faces.preprocess import _pooled

    sources = sample_photos(40)[:9]
    paths = [str(p) for p in sources[:4]] + [str(tmp_path / "crash.jpg")] + [str(p) for p in sources[4:]]
    shutil.copy(sources[0], tmp_path / "crash.jpg")
    seen = {index: meta for index, meta, _ in _pooled(paths, str(tmp_path / "cache"), 2, task=_crash_on_marked)}
    assert sorted(seen) == list(range(len(paths)))
    assert seen[4]["error"] == "unreadable" and "crashed" in seen[4]["detail"]
    assert all(not seen[i].get("error") for i in seen if i != 4)


def entries(out: Path) -> list[Path]:
    """Finished cache entries (temporary files of writes in flight start with a dot)."""
    return [p for p in (out / "cache").rglob("*.npz") if not p.name.startswith(".")]


@pytest.mark.slow
def test_ctrl_c_then_rerun(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for source in sample_photos(40):
        shutil.copy(source, photos / source.name)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "f2b_study", "preprocess", "--photos", str(photos), "--out", str(out),
               "--workers", "2", "--cache", str(out / "cache")]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(entries(out)) < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    done = len(entries(out))
    if process.returncode == 0:  # finished before the signal landed: nothing to resume
        pytest.skip("the run finished before Ctrl-C")
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert 4 <= done < 40
    rerun = subprocess.run([*command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    summary = json.loads(rerun.stdout)
    assert summary["from_cache"] == done and summary["computed"] == 40 - done
    table = pl.read_csv(out / "private" / "preprocess.csv")
    assert table.height == 40 and table["photo"].n_unique() == 40


@pytest.mark.slow
@pytest.mark.browser
def test_review_sheet_renders_in_chromium_without_console_errors(tmp_path: Path, capsys) -> None:
    """`preprocess --review`: qc_review.html beside preprocess.csv, self-contained, and it works in a browser
    (the filter buttons hide cards) with no console message."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    photos = _photo_folder(tmp_path / "photos", n=3)
    out = tmp_path / "out"
    summary = _run(capsys, "--photos", str(photos), "--out", str(out), "--workers", "1", "--review")
    page = out / "private" / "qc_review.html"
    assert summary["review"] == str(page) and page.is_file()
    text = page.read_text()
    assert "PRIVATE" in text and text.count('class="card ') >= 2  # the unreadable photo and a sample
    assert 'data-filter="unreadable"' in text and "no thumbnail (unreadable)" in text
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "review.png"
    run = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,1200", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
               or "Content Security Policy" in line]
    assert not console, console
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert 'id="cards"' in dom.stdout and "P004.jpg" in dom.stdout
