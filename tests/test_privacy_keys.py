"""The pseudonym key lives in a key store outside the outputs (issue 14): owner-only, stable per study, shareable
across the centres of one study through a key file, refused inside an output folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from f2b_study.errors import InputError
from f2b_study.privacy import key_path, pseudonym, study_key


def test_key_store_is_owner_only_and_stable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("F2B_KEY_STORE", str(tmp_path / "store"))
    first = study_key("demo")
    path = key_path("demo")
    assert path.parent == tmp_path / "store"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert study_key("demo") == first and study_key("other") != first
    assert pseudonym("A1", first) == pseudonym("A1", study_key("demo")) != pseudonym("A1", study_key("other"))


def test_a_shared_key_file_and_one_inside_the_outputs(tmp_path: Path) -> None:
    shared = tmp_path / "consortium.key"
    a = study_key("centre-a", key_file=shared, outputs=tmp_path / "out-a")
    b = study_key("centre-b", key_file=shared, outputs=tmp_path / "out-b")
    assert a == b  # two centres, one study: the same pseudonyms
    with pytest.raises(InputError, match="outside the output folder"):
        study_key("x", key_file=tmp_path / "out" / "k.key", outputs=tmp_path / "out")
    (tmp_path / "bad.key").write_text("not hex")
    with pytest.raises(InputError, match="pseudonym key"):
        study_key("x", key_file=tmp_path / "bad.key")
