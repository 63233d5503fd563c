"""What every fit of one CV run shares."""

from __future__ import annotations

from dataclasses import dataclass

from accelerate import Accelerator

from foldtrain.config import Config
from foldtrain.data.prepare import PreparedData
from foldtrain.model.heads import Heads
from foldtrain.run.folder import RunFolder


@dataclass(frozen=True)
class Session:
    """The config, the prepared data, the run folder, the Accelerator and the output heads of a CV run."""

    cfg: Config
    data: PreparedData
    folder: RunFolder
    accelerator: Accelerator
    heads: Heads
