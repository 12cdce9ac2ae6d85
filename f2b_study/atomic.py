"""Writes that never leave half a file: write to a temporary sibling, then rename over the target.

Every writer goes through `atomic_path`, so the checks on where output goes live here once: a target that is an
existing folder, a folder that cannot be created or written, a full disk, and a spreadsheet name (.xlsx) given to
a writer of another format are one-line InputErrors (exit 2), never tracebacks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from f2b_study.errors import InputError

SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def check_target(target: str | Path, suffix: str | None = None) -> Path:
    """``target`` as a Path, or an InputError when it cannot be written as a file: it is a folder, or a writer of
    ``suffix`` content would put it under a spreadsheet name (CSV text in a file named .xlsx)."""
    target = Path(target)
    if target.is_dir():
        raise InputError.at(target, expected="a file name to write (this is an existing folder)", show_value=False)
    wanted = target.suffix.lower()
    if suffix is not None and wanted in SPREADSHEET_SUFFIXES and suffix.lower() != wanted:
        raise InputError.at(target, show_value=False,
                            expected=f"a file name ending in {suffix} (this output is {suffix.lstrip('.').upper()}, "
                            f"not a {wanted} workbook)")
    return target


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename. ``suffix``
    names the format written (".csv"): it gives the temporary file its suffix and must match a spreadsheet
    target's."""
    target = check_target(target, suffix)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp",
                                        dir=target.parent)
    except OSError as error:  # a parent that is a file, no permission, a read-only file system
        raise InputError.at(target, show_value=False,
                            expected=f"a location that can be written ({error.strerror or error})") from None
    try:
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
        except OSError as error:
            if error.errno in _DISK_FULL:
                raise InputError.at(target, show_value=False,
                                    expected=f"room to write the file ({error.strerror})") from None
            raise
        # mkstemp makes the file owner-only; give it the permissions a plain open() would (umask applies),
        # except inside an owner-only folder (private outputs, the face cache): there the file stays owner-only
        if tmp.exists() and not _owner_only(target.parent):
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        try:
            os.replace(tmp, target)
        except OSError as error:  # the target became a folder meanwhile, or cannot be replaced
            raise InputError.at(target, show_value=False,
                                expected=f"a file that can be replaced ({error.strerror or error})") from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _owner_only(folder: Path) -> bool:
    """Whether ``folder`` is owner-only, or lies (up to 4 levels down) in an owner-only output folder named
    "private" (f2b_study.outputs)."""
    def closed(candidate: Path) -> bool:
        try:
            return candidate.is_dir() and not candidate.stat().st_mode & 0o077
        except OSError:
            return False

    return closed(folder) or any(p.name == "private" and closed(p) for p in list(folder.parents)[:4])


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
