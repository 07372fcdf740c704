"""One study across processes: which process this is, its share of the batches, and the few
collective steps (a barrier, rank 0's word to the others).

The launchers people already have start the processes: ``torchrun --nproc_per_node N -m specsel
eval ...`` (or its multi-node form) and ``accelerate launch -m specsel eval ...`` both set
RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address) in each process's environment.
Without them the study runs in one process and nothing here touches torch.distributed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        """Rank 0: writes config.json, merges the shards and writes the report."""
        return self.rank == 0

    def owns(self, batch: int) -> bool:
        """Batch b is decoded, every run of it, by rank b mod world (round robin: batches of a
        stream are alike in size, so the shares are even, and every run of a batch stays on one
        rank, interleaved against drift as in one process)."""
        return batch % self.world == self.rank

    def barrier(self) -> None:
        if self.sharded:
            import torch.distributed as dist
            dist.barrier()

    def total(self, value: float) -> float:
        """The sum of `value` over every rank (on every rank)."""
        if not self.sharded:
            return value
        import torch
        import torch.distributed as dist
        t = torch.tensor([float(value)], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t)
        return t.item()

    def from_leader(self, value):
        """Rank 0's `value`, on every rank (each passes its own; only rank 0's counts)."""
        if not self.sharded:
            return value
        import torch.distributed as dist
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launched_ranks() -> Ranks:
    """The ranks a launcher set in the environment (torchrun, accelerate launch), else one process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun or accelerate "
                         "launch); unset them to run in one process") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is not within WORLD_SIZE {world}; launch with torchrun or accelerate launch")
    return Ranks(rank, world, local)


def join(ranks: Ranks, device: str | None) -> str | None:
    """Join the process group of a launched study (gloo on CPU, nccl on CUDA); returns the
    device this rank decodes on (its own GPU, cuda:LOCAL_RANK, when the study uses CUDA)."""
    if not ranks.sharded:
        return device
    import torch
    import torch.distributed as dist

    cuda = (device is None and torch.cuda.is_available()) or (device is not None and device.startswith("cuda"))
    if cuda:
        if torch.cuda.device_count() <= ranks.local_rank:
            raise ValueError(f"LOCAL_RANK {ranks.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                             "launch at most one process per GPU (--nproc_per_node)")
        torch.cuda.set_device(ranks.local_rank)
        device = f"cuda:{ranks.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return device


def leave(ranks: Ranks) -> None:
    """Leave the process group (at the end of a launched study)."""
    if ranks.sharded:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
