"""How a training process lives and dies: its log format, its launcher's death, SIGTERM as an interruption."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%H:%M:%S"


class Interrupted(BaseException):  # noqa: N818 - reads as what happened, like KeyboardInterrupt
    """SIGTERM (a cancelled job, a peer process that failed) or SIGINT (Ctrl-C) stopped the run."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.exit_code = 128 + signal_number


def setup_logging(is_main: bool) -> None:
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, format=LOG_FORMAT, datefmt=LOG_DATEFMT,
                        force=True)
    logging.getLogger("accelerate").setLevel(logging.WARNING)


_deferred: list[int] = []  # signals that arrived inside `uninterrupted()`
_depth = [0]


def raise_on_signals() -> None:
    """Turn SIGTERM and SIGINT into `Interrupted` in the main thread, so a run ends its MLflow runs as KILLED and
    says how to resume, instead of dying mid-write or printing every thread's traceback."""
    def interrupt(number: int, _frame) -> None:
        if _depth[0]:
            _deferred.append(number)
            return
        raise Interrupted(number)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold an interruption until the block is done: saving an epoch's state and recording that it is saved
    happen together, so the line an interruption prints names the epoch a resume really continues after."""
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        if not _depth[0] and _deferred:
            raise Interrupted(_deferred.pop())


def die_with_launcher() -> None:
    """Ask Linux to send SIGTERM when the launcher dies (e.g. `kill -9` of `accelerate launch`).

    Without it, a killed launcher leaves its workers training on as orphans, racing a resumed run for the same
    files. A no-op off Linux and in a process no launcher started (`python foldtrain/main.py` under nohup must
    outlive its shell).
    """
    launched = "TORCHELASTIC_RUN_ID" in os.environ or any(k.startswith("ACCELERATE_") for k in os.environ)
    if not sys.platform.startswith("linux") or not launched:
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the launcher died before the request took effect
        raise Interrupted(signal.SIGTERM)
