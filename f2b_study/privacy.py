"""Pseudonymous patient IDs for reports: stable within a study, not reversible without the study's key.

The key lives in a key store outside every output folder (a folder that holds a report must not hold the key that
reverses its pseudonyms): `$F2B_KEY_STORE`, else `$XDG_CONFIG_HOME/f2b-study/keys` (default `~/.config/...`),
one file per study, the folder 0700 and the file 0600. The centres of one study share a key by pointing
`[privacy] key_file` (or `--key-file`) at the same file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from f2b_study.errors import InputError

KEY_STORE_VARIABLE = "F2B_KEY_STORE"
LEGACY_KEY_FILE = ".pseudonym-key"  # where versions before 0.2 kept the key: beside the report


def key_store() -> Path:
    """The folder that holds study keys."""
    if os.environ.get(KEY_STORE_VARIABLE):
        return Path(os.environ[KEY_STORE_VARIABLE])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "f2b-study" / "keys"


def key_path(study: str) -> Path:
    """The key file of the study named ``study`` in the key store."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", study).strip("._") or "study"
    return key_store() / f"{name}.key"


def study_key(study: str, *, key_file: str | Path | None = None, outputs: Path | None = None) -> bytes:
    """The study's secret key, created on first use (0600, in a 0700 folder). ``outputs``: the run's output
    folder; a key file inside it is refused."""
    path = Path(key_file) if key_file is not None else key_path(study)
    if outputs is not None:
        resolved, out = path.resolve(), Path(outputs).resolve()
        if resolved == out or out in resolved.parents:
            raise InputError.at(path, show_value=False, expected="a pseudonym key file outside the output folder "
                                f"{out} (whoever receives the outputs must not receive the key)")
    if path.exists():
        try:
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise InputError.at(path, show_value=False, expected="a pseudonym key file written by f2b-study "
                                "(hexadecimal text)") from None
        if len(key) < 16:
            raise InputError.at(path, show_value=False, expected="a key of at least 16 bytes")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    if key_file is None:
        os.chmod(path.parent, 0o700)
    key = secrets.token_bytes(32)
    # created owner-only from the start (no window in which another user could read it), never overwritten
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the same study created it first: use theirs
        return study_key(study, key_file=key_file, outputs=outputs)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    return key


def pseudonym(patient_id: str, key: bytes) -> str:
    """``S-`` and 10 hex digits of HMAC-SHA256(key, id): same patient -> same pseudonym in one study."""
    return "S-" + hmac.new(key, str(patient_id).encode(), hashlib.sha256).hexdigest()[:10]
