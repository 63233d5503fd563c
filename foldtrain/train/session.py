"""What every fit of one CV run shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator

from foldtrain.config import Config
from foldtrain.data.prepare import PreparedData
from foldtrain.model.heads import Heads
from foldtrain.run.folder import RunFolder
from foldtrain.teach.pseudo import PseudoPool
from foldtrain.teach.teacher_run import TeacherRun


@dataclass(frozen=True)
class Session:
    """The config, the prepared data, the run folder, the Accelerator, the output heads and the teacher of a CV run."""

    cfg: Config
    data: PreparedData
    folder: RunFolder
    accelerator: Accelerator
    heads: Heads
    teacher: TeacherRun | None = None  # `distill.teacher`: the run whose fold models teach this one
    pool: PseudoPool | None = None  # `pseudo.teacher`: the unlabeled pool and each fit's labels
    unlabeled: Path | None = None  # `distill.data`: the decoded cache of the images the teacher alone labels
