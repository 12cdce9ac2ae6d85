"""Decode allow-list (issue 14): only JPEG, PNG, HEIF/HEIC and WebP are decoded, decided by content; every other
format is `unsupported_format` and its decoder never runs (EPS would run Ghostscript)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from f2b_study.cohort.images import ImageError, load_rgb

REPO = Path(__file__).resolve().parent.parent
EPS = "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"


def _picture() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "BMP"])
def test_other_formats_named_jpg_are_unsupported(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "photo.jpg"
    _picture().save(path, format=fmt)
    with pytest.raises(ImageError) as error:
        load_rgb(path)
    assert error.value.reason == "unsupported_format"
    assert fmt in error.value.detail and "JPEG, PNG, HEIF/HEIC or WebP" in error.value.detail


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_allowed_formats_decode_whatever_their_name(tmp_path: Path, fmt: str) -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    path = tmp_path / "photo.png"  # the name lies; the content decides
    _picture().save(path, format=fmt)
    assert load_rgb(path).shape == (40, 50, 3)


def test_existing_reasons_are_kept(tmp_path: Path) -> None:
    (tmp_path / "text.jpg").write_text("not a photo\n")
    _picture().save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    for name in ("text.jpg", "truncated.jpg"):
        with pytest.raises(ImageError) as error:
            load_rgb(tmp_path / name)
        assert error.value.reason == "unreadable", name
    with pytest.raises(ImageError) as error:
        load_rgb(tmp_path / "whole.jpg", max_pixels=100)
    assert error.value.reason == "too_large"


def _fake_gs(folder: Path, marker: Path) -> dict[str, str]:
    """A `gs` first on PATH that leaves ``marker`` behind if anything runs it."""
    folder.mkdir()
    gs = folder / "gs"
    gs.write_text(f"#!/bin/sh\necho ran \"$@\" >> '{marker}'\nexit 1\n")
    gs.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_ghostscript_never_runs_for_an_eps_named_jpg(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_text(EPS)
    marker = tmp_path / "gs-ran"
    env = _fake_gs(tmp_path / "bin", marker)
    done = _run(f"""
        from f2b_study.cohort.images import ImageError, load_rgb
        try:
            load_rgb({str(photo)!r})
        except ImageError as error:
            print(error.reason)
        """, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unsupported_format"
    assert not marker.exists(), marker.read_text()
    # control: Pillow without the allow-list does run this `gs`, so the check above can fail
    control = _run(f"""
        from PIL import Image
        try:
            Image.open({str(photo)!r}).load()
        except Exception as error:
            print(type(error).__name__)
        """, env)
    assert control.returncode == 0, control.stderr
    assert marker.exists()
