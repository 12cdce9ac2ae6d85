"""Data-parallel training across processes and machines with PyTorch's own DistributedDataParallel.

A run is distributed when it is started by `torchrun` (or anything that sets torchrun's environment: RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) with WORLD_SIZE > 1. Backend: NCCL on CUDA, gloo on the CPU.

The recipe does not change with the number of processes: ``--batch-size`` stays the global batch (the paper's
32), each rank takes a contiguous share of every global batch, and the loss is scaled so that DDP's gradient
average equals the single process's batch-mean gradient (also for a last batch that does not split evenly).
BatchNorm statistics cover the global batch too: torch's SyncBatchNorm on CUDA; on the CPU, where torch's
SyncBatchNorm does not run, :class:`CpuSyncBatchNorm` all-reduces the per-channel sums (autograd-aware). So a run
on N processes trains the same model as one process, up to floating-point summation order.

Rank 0 alone writes files; the others compute and wait. Validation runs on rank 0 and its numbers are broadcast,
so every rank takes the same early-stopping decision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn

from f2b_study.errors import InputError

T = TypeVar("T")

# Rank 0 may standardise a large cohort's faces while the others wait at a barrier: longer than torch's default.
TIMEOUT = datetime.timedelta(hours=4)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, world size, local rank (the GPU index on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def _tensor(self, values: list[float]) -> torch.Tensor:
        device = _collective_device(self)
        return torch.tensor(values, dtype=torch.float64, device=device)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return list(values)
        tensor = self._tensor(values)
        torch.distributed.all_reduce(tensor)
        return tensor.cpu().tolist()

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (the other ranks pass placeholders of the same length)."""
        if not self.enabled:
            return list(values)
        tensor = self._tensor(values)
        torch.distributed.broadcast(tensor, src=0)
        return tensor.cpu().tolist()

    def broadcast_text(self, text: str | None) -> str | None:
        """Rank 0's string (or None) on every rank."""
        if not self.enabled:
            return text
        device = _collective_device(self)
        data = text.encode() if text is not None else b""
        size = torch.tensor([len(data) if text is not None else -1], dtype=torch.int64, device=device)
        torch.distributed.broadcast(size, src=0)
        if int(size) < 0:
            return None
        buffer = torch.zeros(int(size), dtype=torch.uint8, device=device)
        if self.is_main and data:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        torch.distributed.broadcast(buffer, src=0)
        return bytes(buffer.cpu().tolist()).decode()

    def gather_rng(self) -> list[torch.Tensor]:
        """Every rank's torch CPU RNG state, in rank order (what resume restores on each rank)."""
        state = torch.get_rng_state()
        if not self.enabled:
            return [state]
        device = _collective_device(self)
        parts = [torch.empty_like(state, device=device) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, state.to(device))
        return [p.cpu() for p in parts]

    def main_first(self, main: Callable[[], T], others: Callable[[], T] | None = None) -> T:
        """Run ``main`` on rank 0, then ``others`` (default ``main``) on the other ranks once rank 0 succeeded.
        An InputError on rank 0 is raised on every rank, so all of them stop with the same one-line error."""
        if not self.enabled:
            return main()
        result: Any = None
        error: str | None = None
        if self.is_main:
            try:
                result = main()
            except InputError as failure:
                error = str(failure)
        error = self.broadcast_text(error)
        if error is not None:
            raise InputError(error)
        if not self.is_main:
            result = (others or main)()
        return result


def _collective_device(context: DistContext) -> torch.device:
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "gloo"
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def torchrun_environment() -> bool:
    """True when torchrun (or a launcher setting its variables) started this process with WORLD_SIZE > 1."""
    if not all(os.environ.get(name) for name in TORCHRUN_VARIABLES):
        return False
    try:
        return int(os.environ["WORLD_SIZE"]) > 1
    except ValueError:
        return False


def current() -> DistContext:
    """The context of the initialised default process group, or a single-process one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return DistContext(rank=torch.distributed.get_rank(), world_size=torch.distributed.get_world_size(),
                           local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    return DistContext()


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[DistContext]:
    """Initialise the process group from torchrun's environment (when there is one) and tear it down after."""
    if not torchrun_environment() or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        yield current()
        return
    if not torch.distributed.is_available():
        raise InputError("this PyTorch build has no torch.distributed: run without torchrun")
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise InputError.at("--device", value=device, expected="a CUDA device on every rank (or --device cpu)")
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    torch.distributed.init_process_group(backend=backend, timeout=TIMEOUT)
    try:
        yield current()
    finally:
        torch.distributed.destroy_process_group()


def rank_device(device: torch.device, context: DistContext) -> torch.device:
    """Under DDP each rank drives the GPU of its local rank."""
    if context.enabled and device.type == "cuda" and device.index is None:
        return torch.device("cuda", context.local_rank)
    return device


# -- the global batch on every rank -----------------------------------------------------------------------------

def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous share of ``n`` items (shares differ by at most one; early ranks larger)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class ShardedBatchSampler(torch.utils.data.Sampler):
    """Batches of (epoch, index) keys: global batch k is keys[k*B:(k+1)*B] of the epoch's order (an EpochSampler),
    and this rank yields its contiguous share. With one process it yields exactly the batches a DataLoader with
    ``batch_size=B`` yields. A rank whose share of a short last batch is empty (fewer images left than processes)
    yields that batch's first key, which the loss weighs zero: every rank must take part in every step's
    all-reduce, and the models do not run on empty batches. That image still enters that one step's BatchNorm
    statistics, the one place where N processes differ from one beyond summation order."""

    def __init__(self, sampler: Any, batch_size: int, context: DistContext) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.context = context

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        keys = list(self.sampler)
        for start in range(0, len(keys), self.batch_size):
            batch = keys[start:start + self.batch_size]
            lo, hi = shard_bounds(len(batch), self.context.world_size, self.context.rank)
            yield batch[lo:hi] if hi > lo else batch[:1]

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def step_sizes(self, step: int) -> tuple[int, int]:
        """(global batch size, this rank's real share) of step ``step`` of an epoch."""
        n = min(self.batch_size, len(self.sampler) - step * self.batch_size)
        lo, hi = shard_bounds(n, self.context.world_size, self.context.rank)
        return n, hi - lo


# -- BatchNorm over the global batch ----------------------------------------------------------------------------

class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, for the gloo backend (torch's
    SyncBatchNorm runs on GPUs only). Per-channel sum, sum of squares and count are all-reduced with torch's
    differentiable functional all_reduce, in float64 so that E[x²] − E[x]² loses nothing that matters;
    running statistics follow nn.BatchNorm's update (unbiased variance)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        # torch's differentiable collectives (what the deprecated torch.distributed.nn.functional now points to)
        from torch.distributed import _functional_collectives as collectives

        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        wide = x.double()
        count = wide.new_full((1,), float(x.numel() // max(channels, 1)))
        stats = collectives.wait_tensor(collectives.all_reduce(
            torch.cat([wide.sum(dims), (wide * wide).sum(dims), count]), "sum", torch.distributed.group.WORLD))
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var.to(x.dtype).view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batchnorm(model: nn.Module, device: torch.device) -> Callable[[], None]:
    """Swap the model's BatchNorm layers for synchronised ones sharing their parameters and buffers; returns the
    function that puts the originals back (checkpoints and later single-process use see the plain model)."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.modules.batchnorm._BatchNorm) or isinstance(
                    child, nn.SyncBatchNorm | CpuSyncBatchNorm):
                continue
            kind = nn.SyncBatchNorm if device.type == "cuda" else CpuSyncBatchNorm
            synced = kind(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            if child.affine:
                synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            synced.train(child.training)
            setattr(parent, name, synced)
            swapped.append((parent, name, child))

    def restore() -> None:
        for parent, name, original in swapped:
            synced = getattr(parent, name)
            original.train(synced.training)
            setattr(parent, name, original)

    return restore
