"""torch.distributed setup for torchrun: NCCL on GPUs, gloo on CPU, no-ops when alone."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return DistInfo(rank, world, local)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank (in place).

    Needed after updates that are not gradients: k-means init and dead-code restarts in the
    quantizer run on each rank's own batch and would otherwise drift apart."""
    if not info.enabled:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_reduce_mean(values: dict[str, float], info: DistInfo, device) -> dict[str, float]:
    """Average scalar metrics over ranks (for logging on rank 0)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return {k: v / info.world_size for k, v in zip(keys, t.tolist())}


def stop_signal_on_any_rank(local: int | None, info: DistInfo, device) -> int | None:
    """The signal that stops a run: this rank's, or SIGTERM when only another rank got one, so
    every rank stops after the same step (a checkpoint needs them all)."""
    if not info.enabled:
        return local
    flag = torch.tensor([1.0 if local else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if float(flag) and not local:
        return int(signal.SIGTERM)
    return local


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
