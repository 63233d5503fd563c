"""Where a fold trains: together on every process (DDP), or alone on this one (fold-parallel).

The fold loop is written once against this small interface, so it carries no "distributed?" flags: the two
placements differ only in how the model is prepared, how numbers are summed or gathered, and who writes files.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader


class Shared:
    """Every process trains the fold together: DDP model, sharded loaders, gathered predictions."""

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator
        self.rank = accelerator.process_index
        self.is_writer = accelerator.is_main_process
        self.device_specific_seed = False  # the same initial weights everywhere (DDP also broadcasts them)

    def prepare(self, model, optimizer, train_loader, val_loader):
        return self.accelerator.prepare(model, optimizer, train_loader, val_loader)

    def reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, reduction="sum")

    def gather(self, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.accelerator.gather_for_metrics(tensors)

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()


class Alone:
    """This process trains the fold by itself: no DDP wrapper, no sharding, no collective (the other processes
    are busy with their own folds)."""

    rank = 0
    is_writer = True
    device_specific_seed = True

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator

    def prepare(self, model, optimizer, train_loader, val_loader):
        # Wrapped but not sharded: the wrapper tells Accelerate where an epoch ends, so a last accumulation window
        # shorter than train.grad_accum still ends in an optimizer update instead of leaking into the next epoch.
        train_loader = prepare_data_loader(train_loader, num_processes=1, process_index=0)
        return model.to(self.accelerator.device), self.accelerator.prepare_optimizer(optimizer), train_loader, \
            val_loader

    def reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def gather(self, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tensors

    def barrier(self) -> None:
        """Nothing to wait for."""


Placement = Shared | Alone
