"""Bad photos (the issue's list): each becomes a row with a named reason, or a standardised face when it is a
face after all; never a crash, never a lost row."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from faces_support import sample_photos
from PIL import Image

from f2b_study.faces import REASONS, load_face
from f2b_study.faces.preprocess import photos_from_folder, preprocess_photos


def _face(index: int = 0) -> Image.Image:
    return Image.open(sample_photos(40)[index]).convert("RGB")


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bad_run(module_tmp):
    """One folder with every bad input of the issue, preprocessed once without a cohort."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    root = module_tmp("bad") / "photos"
    root.mkdir()
    face = _face(0)
    (root / "zero_byte.jpg").write_bytes(b"")
    face.save(root / "whole.jpg", quality=92)
    data = (root / "whole.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "whole.jpg").unlink()
    (root / "text.jpg").write_text("this is not a photo\n")
    rgba = face.convert("RGBA")
    alpha = np.full((face.height, face.width), 255, np.uint8)
    alpha[:, : face.width // 8] = 0  # a transparent strip
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(root / "alpha.png")
    face.convert("L").save(root / "grey.jpg")
    face.convert("CMYK").save(root / "cmyk.jpg")
    grey16 = (np.asarray(face.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(grey16).save(root / "sixteen_bit.png")
    assert Image.open(root / "sixteen_bit.png").mode.startswith("I")
    # pixels stored turned a quarter counter-clockwise; EXIF orientation 6 tells viewers to turn them back
    exif = Image.Exif()
    exif[0x0112] = 6
    face.transpose(Image.Transpose.ROTATE_90).save(root / "exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    face.save(root / "iphone.heic", quality=90)
    (root / "bomb.png").write_bytes(_png_claiming(60_000, 60_000))  # PIL's own bomb check refuses it
    (root / "big.png").write_bytes(_png_claiming(8_000, 8_000))  # under PIL's limit, over ours (60 MP)
    second = _face(5).resize(face.size)
    pair = Image.new("RGB", (face.width * 2, face.height))
    pair.paste(face, (0, 0))
    pair.paste(second, (face.width, 0))
    pair.save(root / "two_faces.jpg", quality=95)
    # a distant face: too small for the short-range detector, found by the full-range one
    distant = Image.new("RGB", (1600, 1200), (90, 110, 130))
    distant.paste(face.resize((face.width // 2, face.height // 2)), (500, 400))
    distant.save(root / "distant.jpg", quality=95)
    ramp = np.linspace(0, 255, 400, dtype=np.uint8)
    sky = np.stack([ramp[:, None].repeat(600, 1), ramp[:, None].repeat(600, 1) // 2 + 80,
                    np.full((400, 600), 200, np.uint8)], axis=2)
    sky[280:] = (40, 120, 40)  # a green field under a blue sky
    Image.fromarray(sky).save(root / "landscape.jpg")
    out = module_tmp("bad_out")
    result = preprocess_photos(photos_from_folder(root), out, workers=1, progress=False)
    return root, result


EXPECTED = {
    "zero_byte.jpg": "unreadable",
    "truncated.jpg": "unreadable",
    "text.jpg": "unreadable",
    "bomb.png": "unreadable",
    "big.png": "unreadable",
    "two_faces.jpg": "multiple_faces",
    "landscape.jpg": "no_face",
    "alpha.png": None,
    "grey.jpg": None,
    "cmyk.jpg": None,
    "sixteen_bit.png": None,
    "exif_rotated.jpg": None,
    "iphone.heic": None,
    "distant.jpg": None,
}


def test_every_bad_input_has_its_row(bad_run) -> None:
    _, result = bad_run
    frame = result.frame
    assert sorted(frame["photo"]) == sorted(EXPECTED)
    assert set(frame.filter(pl.col("status") == "excluded")["reason"]) <= set(REASONS)
    assert result.csv_path.is_file()
    assert pl.read_csv(result.csv_path).height == len(EXPECTED)


@pytest.mark.parametrize("photo", sorted(EXPECTED))
def test_bad_input(bad_run, photo: str) -> None:
    _, result = bad_run
    row = result.frame.filter(pl.col("photo") == photo).row(0, named=True)
    expected = EXPECTED[photo]
    if expected is None:
        assert (row["status"], row["reason"]) == ("ok", None), row["detail"]
        rgb, landmarks = load_face(row["face_path"])
        assert rgb.shape == (512, 512, 3)
        iris = landmarks[473] - landmarks[468]
        assert abs(np.degrees(np.arctan2(iris[1], iris[0]))) < 2.0
        assert abs(row["roll"]) < 20, "found upright"
    else:
        assert (row["status"], row["reason"]) == ("excluded", expected)
        assert row["detail"] and row["face_path"] is None


def test_a_distant_face_is_found_by_the_full_range_detector(bad_run) -> None:
    _, result = bad_run
    row = result.frame.filter(pl.col("photo") == "distant.jpg").row(0, named=True)
    assert row["detector"] == "full_range" and row["status"] == "ok"
    near = result.frame.filter(pl.col("photo") == "grey.jpg").row(0, named=True)
    assert near["detector"] == "short_range"
    assert row["interocular_px"] == pytest.approx(near["interocular_px"] / 2, rel=0.1)


def test_details_say_why(bad_run) -> None:
    _, result = bad_run
    detail = dict(result.frame.select("photo", "detail").iter_rows())
    assert "0 bytes" in detail["zero_byte.jpg"]
    assert "DecompressionBomb" in detail["bomb.png"]
    assert "too_large" in detail["big.png"] and "8000x8000" in detail["big.png"]
    assert "2 faces" in detail["two_faces.jpg"]


def test_the_exif_rotated_photo_matches_the_upright_one(bad_run, tmp_path: Path) -> None:
    """The rotated file and the upright original give the same face (pose within a degree or two)."""
    _, result = bad_run
    upright = tmp_path / "photos"
    upright.mkdir()
    _face(0).save(upright / "upright.jpg", quality=95)
    again = preprocess_photos(photos_from_folder(upright), tmp_path / "out", workers=1, progress=False)
    a = result.frame.filter(pl.col("photo") == "exif_rotated.jpg").row(0, named=True)
    b = again.frame.row(0, named=True)
    for key in ("yaw", "pitch", "roll"):
        assert a[key] == pytest.approx(b[key], abs=2.0)
    assert a["interocular_px"] == pytest.approx(b["interocular_px"], rel=0.03)


def test_patient_ids_without_a_cohort(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "P002").mkdir(parents=True)
    for name in ("P001_front.jpg", "P001_side.png", "P003.jpg", "P002/a.jpg", ".hidden.jpg", "notes.txt"):
        (root / name).write_bytes(b"x")
    frame = photos_from_folder(root)
    assert sorted(frame.select("patient_id", "photo").iter_rows()) == [
        ("P001", "P001_front.jpg"), ("P001", "P001_side.png"), ("P002", "P002/a.jpg"), ("P003", "P003.jpg")]
