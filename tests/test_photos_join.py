"""Photo join (docs/methods.md, Photos): column or folder discovery, several photos a patient, path safety, decoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from f2b_study.cohort.images import ImageError, load_rgb
from f2b_study.cohort.photos import join_photos
from f2b_study.errors import InputError


def _image(path: Path, color=(200, 100, 50), size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _frame(ids: list[str], photos: list[str | None] | None = None) -> pl.DataFrame:
    data = {"patient_id": ids, "_row": list(range(2, len(ids) + 2))}
    if photos is not None:
        data["photo"] = photos
    return pl.DataFrame(data)


def test_folder_discovery_all_three_patterns_and_unmatched(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _image(root / "A" / "front.jpg")
    _image(root / "A" / "second.PNG")
    _image(root / "B_1.jpg")
    _image(root / "B_2.jpeg")
    _image(root / "C.png")
    _image(root / "stranger.jpg")
    (root / "notes.txt").write_text("not a photo")
    join = join_photos(_frame(["A", "B", "C", "D"]), root, table="cohort.csv")
    got = {(r["patient_id"], r["photo"]) for r in join.photos.iter_rows(named=True)}
    assert got == {("A", "A/front.jpg"), ("A", "A/second.PNG"), ("B", "B_1.jpg"), ("B", "B_2.jpeg"), ("C", "C.png")}
    assert join.patients_without_photos == ["D"]
    assert join.unmatched_photos == ["stranger.jpg"]
    assert join.counts()["patients_with_photos"] == 3
    assert any("stranger.jpg" in line for line in join.log_lines())


def test_underscore_ids_do_not_swallow_each_other(tmp_path: Path) -> None:
    root = tmp_path / "p"
    _image(root / "face_1.jpg")
    _image(root / "face_10.jpg")
    _image(root / "face_1_b.jpg")
    join = join_photos(_frame(["face_1", "face_10"]), root, table="c.csv")
    got = sorted(join.photos.select("patient_id", "photo").iter_rows())
    assert got == [("face_1", "face_1.jpg"), ("face_1", "face_1_b.jpg"), ("face_10", "face_10.jpg")]


def test_photo_column_with_several_paths_and_a_missing_file(tmp_path: Path) -> None:
    root = tmp_path / "p"
    _image(root / "visit1" / "x.jpg")
    _image(root / "visit2" / "x.jpg")
    _image(root / "Z.jpg")
    join = join_photos(_frame(["X", "Z"], ["visit1/x.jpg; visit2\\x.jpg;gone.jpg", None]), root, table="c.csv")
    assert join.photos.filter(pl.col("patient_id") == "X")["photo"].to_list() == ["visit1/x.jpg", "visit2/x.jpg"]
    assert join.photos.filter(pl.col("patient_id") == "Z")["source"].to_list() == ["folder"]
    assert join.missing_files == [("X", "gone.jpg")]


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.jpg", "a/../../outside.jpg", "C:\\photos\\x.jpg",
                                 "~/x.jpg"])
def test_paths_that_leave_the_root_are_refused(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "p"
    root.mkdir()
    _image(tmp_path / "outside.jpg")
    with pytest.raises(InputError) as error:
        join_photos(_frame(["X", "Y"], [None, bad]), root, table="cohort.csv")
    message = str(error.value)
    assert "cohort.csv" in message and "row 3" in message and "'photo'" in message and "photo folder" in message


def test_links_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    outside = _image(tmp_path / "secret.jpg")
    os.symlink(outside, root / "X.jpg")
    with pytest.raises(InputError, match="points outside"):
        join_photos(_frame(["X"]), root, table="c.csv")
    with pytest.raises(InputError, match="points outside"):
        join_photos(_frame(["Y"], ["X.jpg"]), root, table="c.csv")


def test_link_inside_the_root_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "p"
    target = _image(root / "store" / "img.jpg")
    os.symlink(target, root / "X.jpg")
    join = join_photos(_frame(["X"]), root, table="c.csv")
    assert join.photos["photo"].to_list() == ["store/img.jpg"]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # a 40x20 image whose top half is red, stored rotated with EXIF orientation 6 (display = rotate 90° cw)
    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:10] = (255, 0, 0)
    stored = np.rot90(upright, k=1)  # what a camera held sideways writes
    image = Image.fromarray(np.ascontiguousarray(stored))
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    pixels = load_rgb(path)
    assert pixels.shape == (20, 40, 3)
    assert pixels[:10, :, 0].mean() > 200 and pixels[10:, :, 0].mean() < 50


def test_heic_decodes(tmp_path: Path) -> None:
    from pillow_heif import from_bytes

    array = np.zeros((32, 48, 3), np.uint8)
    array[:, :24] = (0, 0, 255)
    heif = from_bytes(mode="RGB", size=(48, 32), data=array.tobytes())
    path = tmp_path / "ipad.heic"
    heif.save(path, quality=95)
    pixels = load_rgb(path)
    assert pixels.shape == (32, 48, 3)
    assert pixels[:, :20, 2].mean() > 200 and pixels[:, 28:, 2].mean() < 50


@pytest.mark.parametrize("kind", ["empty", "text", "truncated"])
def test_unreadable_files_raise_image_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a JPEG")
    else:
        _image(tmp_path / "full.jpg", size=(200, 200))
        data = (tmp_path / "full.jpg").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError) as error:
        load_rgb(path)
    assert error.value.reason == "unreadable"


def test_pixel_limit_refuses_bombs(tmp_path: Path) -> None:
    path = _image(tmp_path / "big.png", size=(300, 300))
    with pytest.raises(ImageError) as error:
        load_rgb(path, max_pixels=300 * 299)
    assert error.value.reason == "too_large"


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    if mode == "I;16":
        image = Image.fromarray(np.full((10, 12), 65535, np.uint16))
        path = tmp_path / "deep.png"
    elif mode == "CMYK":
        image = Image.new("CMYK", (12, 10), (0, 255, 255, 0))
        path = tmp_path / "print.jpg"
    else:
        image = Image.new("RGB", (12, 10), (255, 0, 0)).convert(mode)
        path = tmp_path / f"{mode}.png"
    image.save(path)
    pixels = load_rgb(path)
    assert pixels.shape == (10, 12, 3) and pixels.dtype == np.uint8
    if mode == "I;16":
        assert pixels.min() == 255  # full-scale 16-bit white stays white, not clipped noise
    if mode in ("CMYK", "RGBA", "P"):
        assert pixels[..., 0].mean() > 200 and pixels[..., 1].mean() < 60
