"""The paper's training recipe (docs/methods.md, Training) for any registry model, resumable and reproducible.

CrossEntropy; Adam; OneCycleLR (max lr 1e-3, 30% warm-up, anneal to 1e-6); batch 32; up to 150 epochs; early
stopping on validation accuracy (patience 10; accuracy of the per-patient mean probabilities, the unit the
report analyses); the best epoch's weights kept. Two refinements of the paper's stopping rule, both because a
small validation set makes accuracy move in coarse steps: an epoch is better when its accuracy is higher, or
equal with a lower validation loss; and patience counts only after the warm-up, since stopping while the
learning rate still rises judges a schedule that has not run.

bf16 autocast and channels_last on CUDA. After every epoch the whole state (weights, optimiser, scheduler, RNG,
history) is written atomically, so a run killed mid-epoch loses at most that epoch and `--resume` continues to
the same result as an uninterrupted run.

With a frozen FaceNet branch, each image's embedding is computed once (on the un-augmented face) and reused
every epoch; the image branch still sees the augmented face.

Under torchrun the same loop runs data-parallel (DistributedDataParallel; see `distributed.py`): the global batch,
the schedule and the stopping rule are those of one process; rank 0 alone validates and writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from f2b_study.atomic import atomic_path, write_text
from f2b_study.models.runtime import InputTransform, autocast, face_embeddings, pick_device, predict_faces
from f2b_study.training.data import EpochSampler, FaceDataset
from f2b_study.training.distributed import ShardedBatchSampler, current, rank_device, sync_batchnorm
from f2b_study.training.settings import TrainSettings

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
BEST_DIR = "best"


@dataclasses.dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float
    images_per_second: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _uses_embedding_cache(model: nn.Module) -> bool:
    return bool(getattr(model, "facenet_frozen", False)) and hasattr(model, "face_embedding")


def patient_accuracy(probabilities: np.ndarray, labels: np.ndarray, patients: Sequence[str]) -> float:
    """Accuracy of the argmax of each patient's mean image probabilities (the unit the report analyses)."""
    from f2b_study.models.runtime import patient_means

    if not len(patients):
        return float("nan")
    ids, means, _ = patient_means(probabilities, patients)
    first_label = dict(zip(patients[::-1], labels[::-1], strict=True))  # each patient's label (they share one)
    return float(np.mean([int(np.argmax(m) == first_label[p]) for p, m in zip(ids, means, strict=True)]))


class Trainer:
    """Trains ``model`` on uint8 faces; call :meth:`fit`. All outputs go to ``out``."""

    def __init__(self, model: nn.Module, *, faces: np.ndarray, labels: np.ndarray, patients: Sequence[str],
                 train_index: np.ndarray, val_index: np.ndarray, transform: InputTransform,
                 settings: TrainSettings, out: Path, save_best: Callable[[nn.Module, dict[str, Any]], None],
                 device: str = "auto", progress: bool = True) -> None:
        self.model = model
        self.faces, self.labels, self.patients = faces, np.asarray(labels), list(patients)
        self.train_index, self.val_index = np.asarray(train_index), np.asarray(val_index)
        self.transform = transform
        self.settings = settings
        self.out = out
        self.save_best = save_best
        self.progress = progress
        self.context = current()
        self.device = rank_device(pick_device(device), self.context)
        self.history: list[EpochRecord] = []
        self.best_accuracy = -math.inf
        self.best_loss = math.inf
        self.best_epoch = -1
        self.start_epoch = 0

    # -- set-up ----------------------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.settings
        context = self.context
        if context.enabled and s.batch_size % context.world_size:
            from f2b_study.errors import InputError

            raise InputError.at("--batch-size", value=s.batch_size,
                                expected=f"a multiple of the {context.world_size} processes (it is the global batch, "
                                "split evenly across them)")
        self.model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self._restore_batchnorm = sync_batchnorm(self.model, self.device) if context.enabled else None
        self.embeddings = None
        if _uses_embedding_cache(self.model):
            self.embeddings = face_embeddings(self.model, self.faces, transform=self.transform, device=self.device,
                                              batch_size=s.eval_batch_size)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=s.lr)
        self.steps_per_epoch = math.ceil(len(self.train_index) / s.batch_size)
        initial_lr = s.lr / 25.0  # OneCycleLR's default start
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=s.lr, epochs=s.epochs, steps_per_epoch=self.steps_per_epoch,
            pct_start=s.warmup_fraction, div_factor=25.0, final_div_factor=initial_lr / s.final_lr)
        dataset = FaceDataset(self.faces, self.labels, s.augment_config(), s.seed)
        self.sampler = EpochSampler(len(self.faces), s.seed, shuffle=True, indices=self.train_index.tolist())
        # one process: the same batches as DataLoader(batch_size=...); N processes: each rank's share of them
        self.batches = ShardedBatchSampler(self.sampler, s.batch_size, context)
        workers = s.workers if s.workers is not None else (4 if self.device.type == "cuda" else 0)
        self.loader = DataLoader(dataset, batch_sampler=self.batches, num_workers=workers,
                                 pin_memory=self.device.type == "cuda", persistent_workers=workers > 0)
        step_model: nn.Module = self.model
        if context.enabled:
            import warnings

            from torch.nn.parallel import DistributedDataParallel

            # channels_last inputs give conv weights channels_last gradients on the CPU; the reducer copies them
            # into its buckets (a speed note, not a correctness one)
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            step_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step_model = torch.compile(step_model) if s.compile else step_model
        self.loss_fn = nn.CrossEntropyLoss()
        self.per_image_loss_fn = nn.CrossEntropyLoss(reduction="none")

    # -- state ------------------------------------------------------------------------------------------------
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "torch_rng_ranks": self.context.gather_rng(),
            "best_accuracy": self.best_accuracy,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "history": json.dumps([dataclasses.asdict(h) for h in self.history]),
        }

    def _save_state(self, epoch: int) -> None:
        state = self._state(epoch)  # a collective under DDP: every rank builds it, rank 0 writes it
        if self.context.is_main:
            with atomic_path(self.out / STATE_FILE) as tmp:
                torch.save(state, tmp)

    def _load_state(self) -> None:
        """Resume from ``out/state.pt``; a file that is not this run's training state is an InputError naming it
        (garbage, truncated, another model's): never unpickled beyond tensors (weights_only=True)."""
        path = self.out / STATE_FILE
        try:
            self._apply_state(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as error:  # torch.load and the load_state_dicts raise many kinds; all mean "not usable"
            from f2b_study.errors import InputError

            detail = " ".join(str(error).split())[:160]
            raise InputError.at(path, show_value=False,
                                expected="the training state that `f2b-study train` saved for this run "
                                f"({type(error).__name__}: {detail}); delete it to start over, or use another --out"
                                ) from None

    def _apply_state(self, state: Any) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ranks = state.get("torch_rng_ranks") or []
        if not self.context.enabled:
            torch.set_rng_state(state["torch_rng"])
        elif len(ranks) == self.context.world_size:
            torch.set_rng_state(ranks[self.context.rank])
        # else: resumed on another number of processes, this rank keeps its fresh per-rank seed
        self.best_accuracy = float(state["best_accuracy"])
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.history = [EpochRecord(**h) for h in json.loads(state["history"])]
        self.start_epoch = int(state["epoch"]) + 1

    # -- loop -------------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False, on_epoch: Callable[[EpochRecord], None] | None = None) -> list[EpochRecord]:
        s = self.settings
        seed_everything(s.seed)
        self._build()
        if self.context.enabled:
            seed_everything(s.seed + self.context.rank)  # the model starts identical; random draws differ per rank
        has_state = resume and (self.out / STATE_FILE).exists()
        if self.context.enabled:  # rank 0's view decides; the others read the same file (shared storage)
            has_state = bool(self.context.broadcast([float(has_state)])[0])
        if has_state:
            self._load_state()
        try:
            return self._fit(on_epoch)
        finally:
            if self._restore_batchnorm is not None:
                self._restore_batchnorm()

    def _fit(self, on_epoch: Callable[[EpochRecord], None] | None) -> list[EpochRecord]:
        from tqdm import tqdm

        s = self.settings
        context = self.context
        epochs_without_gain = self._epochs_since_best()
        for epoch in range(self.start_epoch, s.epochs):
            if epochs_without_gain >= s.patience:
                break
            self.model.train()
            if _uses_embedding_cache(self.model):
                self.model.facenet_eval()
            self.sampler.set_epoch(epoch)
            started = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{s.epochs}", unit="batch", leave=False,
                       disable=not self.progress or not context.is_main)
            for step, (images, labels, index) in enumerate(bar):
                images = self.transform.normalise(images.to(self.device, non_blocking=True))
                labels = labels.to(self.device, non_blocking=True)
                kwargs = {}
                if self.embeddings is not None:
                    kwargs["face_embedding"] = self.embeddings[index].to(self.device, non_blocking=True)
                with autocast(self.device, s.bf16):
                    logits = self.step_model(images, **kwargs)
                    if context.enabled:
                        # this rank's share of the global batch's summed loss, times the world size: DDP's
                        # gradient average is then the global batch mean, however the batch split
                        n_global, own = self.batches.step_sizes(step)
                        per_image = self.per_image_loss_fn(logits.float(), labels)[:own]
                        loss = per_image.sum() * (context.world_size / n_global)
                    else:
                        loss = self.loss_fn(logits.float(), labels)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                if context.enabled:
                    loss_sum += float(per_image.detach().sum())
                    correct += int((logits[:own].argmax(1) == labels[:own]).sum())
                    seen += own
                else:
                    loss_sum += float(loss.detach()) * len(labels)
                    correct += int((logits.argmax(1) == labels).sum())
                    seen += len(labels)
                bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.3f}", acc=f"{correct / max(seen, 1):.3f}")
            train_seconds = time.perf_counter() - started
            if context.enabled:
                loss_sum, correct, seen = context.all_reduce_sum([loss_sum, correct, seen])
            # rank 0 validates; every rank takes the same stopping decision from its numbers
            val_loss, val_accuracy = context.broadcast(list(self.validate()) if context.is_main else [0.0, 0.0])
            record = EpochRecord(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_accuracy=correct / max(seen, 1),
                                 val_loss=val_loss, val_accuracy=val_accuracy,
                                 lr=float(self.scheduler.get_last_lr()[0]), seconds=time.perf_counter() - started,
                                 images_per_second=seen / train_seconds if train_seconds else float("nan"))
            self.history.append(record)
            if self.progress and context.is_main:  # the bar goes; one line per epoch stays on screen
                best = " *" if (val_accuracy, -val_loss) > (self.best_accuracy, -self.best_loss) else ""
                tqdm.write(f"epoch {epoch + 1:>3}/{s.epochs}  train loss {record.train_loss:.3f} acc "
                           f"{record.train_accuracy:.3f} | validation loss {val_loss:.3f} acc {val_accuracy:.3f}"
                           f"{best}  ({record.seconds:.1f} s)", file=sys.stderr)
            if (val_accuracy, -val_loss) > (self.best_accuracy, -self.best_loss):
                self.best_accuracy, self.best_loss, self.best_epoch = val_accuracy, val_loss, epoch
                if context.is_main:
                    self.save_best(self.model, {"best_epoch": epoch, "val_accuracy": val_accuracy})
            epochs_without_gain = self._epochs_since_best()
            self._save_state(epoch)
            if on_epoch and context.is_main:
                on_epoch(record)
        return self.history

    def _epochs_since_best(self) -> int:
        """Epochs since the best one, counted from the end of the warm-up at the earliest."""
        if not self.history:
            return 0
        warmup_end = math.ceil(self.settings.warmup_fraction * self.settings.epochs) - 1
        return self.history[-1].epoch - max(self.best_epoch, warmup_end)

    @torch.inference_mode()
    def validate(self) -> tuple[float, float]:
        faces = self.faces[self.val_index]
        embeddings = self.embeddings[self.val_index] if self.embeddings is not None else None
        probabilities = predict_faces(self.model, faces, transform=self.transform, device=self.device,
                                      batch_size=self.settings.eval_batch_size, embeddings=embeddings,
                                      bf16=self.settings.bf16)
        labels = self.labels[self.val_index]
        eps = 1e-12
        loss = float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + eps)))
        accuracy = patient_accuracy(probabilities, labels, [self.patients[i] for i in self.val_index])
        return loss, accuracy


def write_history(history: Sequence[EpochRecord], out: Path) -> None:
    import polars as pl

    from f2b_study.tables import write_csv

    frame = pl.DataFrame([dataclasses.asdict(h) for h in history])
    write_csv(frame, out / "metrics.csv")
    write_text(out / "metrics.json", json.dumps([dataclasses.asdict(h) for h in history], indent=1))
