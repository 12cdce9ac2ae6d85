"""Pseudonymous patient IDs for reports: stable within a study, not reversible without the study's key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

KEY_FILE = ".pseudonym-key"


def study_key(folder: str | Path) -> bytes:
    """The study's secret key, created once in ``folder`` (kept beside the outputs, never in a report)."""
    path = Path(folder) / KEY_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(16)
    from f2b_study.atomic import write_text

    write_text(path, key.hex())
    return key


def pseudonym(patient_id: str, key: bytes) -> str:
    """``S-`` and 10 hex digits of HMAC-SHA256(key, id): same patient -> same pseudonym in one study."""
    return "S-" + hmac.new(key, str(patient_id).encode(), hashlib.sha256).hexdigest()[:10]
