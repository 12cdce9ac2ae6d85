"""Joining patients with their photos (docs/methods.md, Photos).

A patient's photos come from the `photo` column (`;`-separated, relative to the photo root) or, when that is
empty, from the folder: `ROOT/<patient_id>/*`, `ROOT/<patient_id>_*.<ext>`, `ROOT/<patient_id>.<ext>`.
No path may leave the photo root: absolute paths, `..` and links that point outside are refused.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePosixPath

import polars as pl

from f2b_study.cohort.images import IMAGE_EXTENSIONS
from f2b_study.errors import InputError

ROW = "_row"


@dataclasses.dataclass
class PhotoJoin:
    """Result of a join: one row per (patient, photo), and what did not match."""

    photos: pl.DataFrame  # patient_id, photo (relative, '/'-separated), path (absolute), source (column|folder)
    patients_without_photos: list[str]
    unmatched_photos: list[str]  # image files under the root that no patient claims
    missing_files: list[tuple[str, str]]  # (patient_id, photo) named in the photo column but not on disk

    def counts(self) -> dict[str, int]:
        return {
            "photos": self.photos.height,
            "patients_with_photos": self.photos["patient_id"].n_unique() if self.photos.height else 0,
            "patients_without_photos": len(self.patients_without_photos),
            "unmatched_photos": len(self.unmatched_photos),
            "missing_files": len(self.missing_files),
        }

    def log_lines(self) -> list[str]:
        """The run log's listing of everything that did not join."""
        lines = [f"patient without photos: {p}" for p in self.patients_without_photos]
        lines += [f"photo named in the cohort but missing: {p} ({pid})" for pid, p in self.missing_files]
        lines += [f"photo that matches no patient: {p}" for p in self.unmatched_photos]
        return lines


def safe_photo_path(root: Path, relative: str, *, file: str | Path, row: int | None = None,
                    column: str = "photo") -> Path:
    """``root/relative`` resolved, or an InputError when it is absolute or leaves the root (also via links)."""
    text = relative.strip().replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or (len(text) > 1 and text[1] == ":") or text.startswith("~"):
        raise InputError.at(file, row=row, column=column, value=relative,
                            expected=f"a path relative to the photo folder {root}")
    if ".." in pure.parts:
        raise InputError.at(file, row=row, column=column, value=relative,
                            expected=f"a path inside the photo folder {root} (no '..')")
    candidate = root.joinpath(*pure.parts)
    resolved = Path(os.path.realpath(candidate))
    if not resolved.is_relative_to(root):
        raise InputError.at(file, row=row, column=column, value=relative,
                            expected=f"a file inside the photo folder {root} (this link points outside it)")
    return resolved


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _scan(root: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Top-level image files and, per subfolder, its image files (relative names), one level deep."""
    top: list[str] = []
    folders: dict[str, list[str]] = {}
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir():
                with os.scandir(entry.path) as inner:
                    folders[entry.name] = sorted(f"{entry.name}/{e.name}" for e in inner
                                                 if _is_image(e.name) and e.is_file())
            elif _is_image(entry.name) and entry.is_file():
                top.append(entry.name)
    return sorted(top), folders


def join_photos(frame: pl.DataFrame, root: str | Path, *, table: str | Path) -> PhotoJoin:
    """Join every patient of ``frame`` (patient_id, optional photo and _row) with photos under ``root``."""
    root_path = Path(os.path.realpath(root))
    if not root_path.is_dir():
        raise InputError.at(root, expected="a folder of photos (--photos)", show_value=False)
    top, folders = _scan(root_path)
    by_stem: dict[str, list[str]] = {}
    for name in top:
        stem = name.rsplit(".", 1)[0]
        by_stem.setdefault(stem, []).append(name)
        # DIR/<patient_id>_*.<ext>: index every prefix ending before an underscore
        for i, char in enumerate(stem):
            if char == "_" and i > 0:
                by_stem.setdefault(stem[:i] + "_*", []).append(name)

    has_column = "photo" in frame.columns
    rows = frame.select("patient_id", pl.col("photo") if has_column else pl.lit(None, dtype=pl.String).alias("photo"),
                        pl.col(ROW) if ROW in frame.columns else pl.int_range(2, frame.height + 2).alias(ROW))
    records: list[tuple[str, str, str, str]] = []
    without: list[str] = []
    missing: list[tuple[str, str]] = []
    claimed: dict[str, tuple[str, int, str]] = {}  # photo -> (patient, row, how it was found)
    for patient_id, listed, row in rows.iter_rows():
        found: list[tuple[str, str]] = []
        if listed:
            for part in (p for p in listed.split(";") if p.strip()):
                path = safe_photo_path(root_path, part, file=table, row=row)
                relative = path.relative_to(root_path).as_posix()
                if path.is_file():
                    found.append((relative, "column"))
                else:
                    missing.append((patient_id, part.strip()))
        else:
            names = folders.get(patient_id, []) + by_stem.get(f"{patient_id}_*", []) + by_stem.get(patient_id, [])
            for name in dict.fromkeys(names):
                path = safe_photo_path(root_path, name, file=root_path, column="photo folder")
                found.append((path.relative_to(root_path).as_posix(), "folder"))
        found = list(dict.fromkeys(found))  # the same file listed twice for one patient is one photo
        if not found:
            without.append(patient_id)
        for relative, source in found:
            if relative in claimed:
                _claimed_twice(table, relative, claimed[relative], (patient_id, row, source))
            claimed[relative] = (patient_id, row, source)
            records.append((patient_id, relative, str(root_path / relative), source))
    every_image = top + [name for names in folders.values() for name in names]
    unmatched = sorted(name for name in every_image if name not in claimed)
    photos = pl.DataFrame(records, schema=["patient_id", "photo", "path", "source"], orient="row")
    return PhotoJoin(photos=photos, patients_without_photos=without, unmatched_photos=unmatched,
                     missing_files=missing)


def _claimed_twice(table: str | Path, photo: str, first: tuple[str, int, str], second: tuple[str, int, str]) -> None:
    """One file, two patients: refused, since the photo would sit in training and validation at once (a leak)."""

    def who(claim: tuple[str, int, str]) -> str:
        patient, row, source = claim
        how = "its photo column" if source == "column" else "the photo folder's file names"
        return f"{patient!r} (row {row}, by {how})"

    raise InputError(f"{table}: photo {photo!r} is claimed by patients {who(first)} and {who(second)}: expected each "
                     "photo file to belong to one patient (shared, it would leak between training and validation)")
