"""How a training process lives and dies: its log format, its launcher's death, SIGTERM as an interruption."""

from __future__ import annotations

import logging
import os
import signal
import sys

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


def raise_on_signals() -> None:
    """Turn SIGTERM and SIGINT into `Interrupted` in the main thread, so a run ends its MLflow runs as KILLED and
    says how to resume, instead of dying mid-write or printing every thread's traceback."""
    def interrupt(number: int, _frame) -> None:
        raise Interrupted(number)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


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
