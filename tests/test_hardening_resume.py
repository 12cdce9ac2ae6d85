"""`train --resume` on a state.pt that is not this run's training state: an InputError naming the file, never a
traceback (issue 14); a genuine state still resumes."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from f2b_study.errors import InputError
from f2b_study.models import create_model
from f2b_study.models.runtime import InputTransform
from f2b_study.training.loop import STATE_FILE, Trainer, TrainSettings

torch.set_num_threads(1)


def _trainer(out: Path, arch: str = "resnet18") -> Trainer:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(arch, input_size=32)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(12) % 3
    out.mkdir(parents=True, exist_ok=True)
    return Trainer(model, faces=faces, labels=labels, patients=[f"P{i}" for i in range(12)],
                   train_index=np.arange(8), val_index=np.arange(8, 12),
                   transform=InputTransform(32, (0.5,) * 3, (0.25,) * 3),
                   settings=TrainSettings(epochs=2, batch_size=4, augment=("none",)), device="cpu", out=out,
                   save_best=lambda model, info: None, progress=False)


@pytest.fixture(scope="module")
def genuine_state(module_tmp) -> bytes:
    out = module_tmp("run")
    trainer = _trainer(out)
    trainer.fit()
    return (out / STATE_FILE).read_bytes()


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", ["garbage", "empty", "truncated", "pickle with code", "a plain dict",
                                     "another model"])
def test_a_bad_state_is_an_input_error_naming_the_file(tmp_path: Path, genuine_state: bytes, content: str,
                                                       capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    path = out / STATE_FILE
    if content == "garbage":
        path.write_bytes(b"\x00not a torch file\xff" * 10)
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "truncated":
        path.write_bytes(genuine_state[: len(genuine_state) // 2])
    elif content == "pickle with code":
        path.write_bytes(pickle.dumps(_Evil()))
    elif content == "a plain dict":
        torch.save({"epoch": 1}, path)
    else:  # a genuine state of another architecture
        other = _trainer(tmp_path / "other", arch="resnet34")
        other.fit()
        path.write_bytes((tmp_path / "other" / STATE_FILE).read_bytes())
    trainer = _trainer(out)
    with pytest.raises(InputError) as error:
        trainer.fit(resume=True)
    message = str(error.value)
    assert message.startswith(str(path)) and "training state" in message and "\n" not in message
    assert "unpickled code ran" not in capsys.readouterr().out


def test_a_genuine_state_still_resumes(tmp_path: Path, genuine_state: bytes) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / STATE_FILE).write_bytes(genuine_state)
    trainer = _trainer(out)
    history = trainer.fit(resume=True)
    assert trainer.start_epoch == 2 and len(history) == 2  # both epochs were done: nothing left to train
