"""One writer per run folder: an exclusive OS lock on the run folder itself, held by the main process for the run.

An OS lock (`flock`) dies with its process, so a killed run never leaves a stale lock behind to block
`train.resume=true`, while a second start of the same run folder, with or without resume, is refused at once with
the holder's pid and host. The lock is taken on the folder's own descriptor, not on a file in it: deleting the
`.lock` file (which only tells who holds the lock) cannot let a second writer in. (On network file systems without
lock support, use separate run folders per job.)
"""

from __future__ import annotations

import os
from pathlib import Path

from foldtrain.run.folder import LOCK, RunFolderError, describe_holder, this_process

try:
    import fcntl
except ImportError:  # Windows: no flock; one writer is then the user's to ensure
    fcntl = None

LOCK_NAME = LOCK


class RunLock:
    """The run folder's lock; `acquire` or fail, `release` when the run ends (the OS releases it on death)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.file = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Lock the folder and write this process's pid and host into its `.lock` file.

        Raises:
            RunFolderError: another process holds it (the message names that process).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunFolderError(f"run folder {self.folder} is in use by {describe_holder(self.file)}; "
                                     f"wait for that run to end or pick another run.name") from None
        self._fd = fd
        self.file.write_text(this_process())
        return self

    def release(self) -> None:
        if self._fd is not None:
            self.file.unlink(missing_ok=True)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
