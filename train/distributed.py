"""Several processes, one model: flower-train under torchrun and DistributedDataParallel.

    torchrun --nproc_per_node 4 -m flower_edge.train.cli flowers/ -o flower.pth      # one machine
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 4 --rdzv_backend c10d \\
             --rdzv_endpoint host0:29500 -m flower_edge.train.cli flowers/ -o flower.pth

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them (a plain ``flower-train``) everything
here is a no-op for one process. NCCL on GPUs, gloo on CPUs. Training images reach the ranks
through DistributedSampler (a new global shuffle each epoch); when the frozen start of the backbone
is cached, each rank caches its shard (``rank::world``, padded like DistributedSampler so every rank
takes the same number of steps) and DDP averages the gradients, so the head learns from all of it.
Validation and test are split without padding and their sums all-reduced: the figures are over the
whole set. Only rank 0 writes checkpoints and prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T], pad: bool = False) -> list[T]:
        """This rank's share of ``items``; ``pad`` repeats items so every rank gets as many."""
        items = list(items)
        if pad and self.world > 1 and items:
            total = -(-len(items) // self.world) * self.world
            items += items[: total - len(items)]
        return items[self.rank :: self.world]

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sum over all ranks (float64, so counts stay exact)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's BatchNorm statistics everywhere. DDP sends them at the start of each training
        step, so the last step's update differs by rank; evaluation and the checkpoint must not."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup(device: str) -> Dist:
    """Join the process group torchrun describes, if any; returns this process's place in it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    else:  # CPU ranks on one machine share its cores
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
