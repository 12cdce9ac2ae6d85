"""`--facenet-weights vggface2`: facenet-pytorch's cache, downloaded when online; offline, one line that says which
file to put where (issue 12)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from f2b_study.errors import InputError
from f2b_study.models import facenet


def test_offline_vggface2_names_the_file_and_where_it_goes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url: str, destination: str, *args: object, **kwargs: object) -> None:
        Path(destination).write_bytes(b"half a file")  # a download that dies midway leaves nothing behind
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("facenet_pytorch.models.utils.download.download_url_to_file", no_network)
    branch = facenet.FaceNetBranch(mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(InputError) as caught:
        branch.load_weights("vggface2")
    message = str(caught.value)
    target = tmp_path / "torch" / "checkpoints" / facenet.RELEASE_FILE
    assert str(target) in message and "put the release file" in message and "\n" not in message
    assert not target.exists() and not list(target.parent.glob("*.partial"))


def test_vggface2_loads_the_cached_file_and_records_its_sha256(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    branch = facenet.FaceNetBranch(mean=(0.5,) * 3, std=(0.5,) * 3)
    target = facenet.facenet_cache_file()
    target.parent.mkdir(parents=True)
    torch.save(branch.net.state_dict(), target)  # a release-shaped file: every tensor name and shape matches
    record = facenet.FaceNetBranch(mean=(0.5,) * 3, std=(0.5,) * 3).load_weights("vggface2")
    assert record["source"] == "vggface2" and record["dataset"] == "VGGFace2"
    assert len(record["sha256"]) == 64 and record["path"] == str(target.resolve())
