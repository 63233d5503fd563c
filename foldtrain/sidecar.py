"""A helper process, forked at start-up, that runs calls in order beside the training process.

The training process forks it before importing torch. What it is handed (MLflow's start-up and logging, loading
matplotlib and drawing the report pictures) then runs on a core that training leaves idle while it imports, and a
slow tracking server or picture can delay the sidecar but never a training step. Calls run one at a time, in the
order they were sent; `call` waits for a result, `submit` does not, `close` waits for everything sent before it.

Handed functions must be importable module-level functions (they travel pickled, by name). An exception in a
submitted call is logged there with its traceback; the calls after it still run.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from foldtrain.process import LOG_DATEFMT, LOG_FORMAT

log = logging.getLogger(__name__)


class SidecarError(RuntimeError):
    """A call sent to the sidecar raised there, or the sidecar is gone."""


class Sidecar:
    """The handle the training process keeps on its helper process."""

    @classmethod
    def start(cls) -> Sidecar | None:
        """A new sidecar, or None where processes cannot fork (Windows): the caller then works in-process."""
        return cls() if "fork" in multiprocessing.get_all_start_methods() else None

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")  # before torch, threads or CUDA exist: a cheap, safe fork
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_end, self._conn), name="foldtrain-sidecar",
                                        daemon=True)
        self._process.start()
        child_end.close()
        # Writes are short and serialised; a `call` also holds its own lock while it waits for the answer, so the
        # SIGTERM thread can still send (and close) while the main thread waits on a slow call.
        self._send_lock = threading.Lock()
        self._call_lock = threading.Lock()
        self._wait_lock = threading.Lock()
        self.alive = True  # accepts calls
        self.closing = False  # told to close (by any thread): it exits once what came before has run

    def submit(self, fn: Callable, *args: Any, **kwargs: Any) -> bool:
        """Queue `fn(*args, **kwargs)` behind everything sent before; False when the sidecar is gone."""
        return self._send(("submit", fn, args, kwargs))

    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` behind everything sent before and return its result.

        Raises:
            SidecarError: `fn` raised there (the message names the error), or the sidecar is gone.
        """
        with self._call_lock:
            if not self._send(("call", fn, args, kwargs)):
                raise SidecarError("the sidecar process is gone")
            try:
                ok, value = self._conn.recv()
            except (OSError, EOFError) as err:
                self._lost(err)
                raise SidecarError("the sidecar process is gone") from err
        if not ok:
            raise SidecarError(value)
        return value

    def at_orphan(self, fn: Callable, *args: Any) -> None:
        """Have the sidecar run `fn(*args)` if the training process dies without closing it (e.g. SIGKILL)."""
        self.submit(_add_orphan_handler, fn, args)

    def close(self, timeout: float | None = None) -> bool:
        """Wait (at most `timeout` seconds) for every call sent so far, then stop the sidecar; True if it finished.

        A sidecar that does not finish in time is killed, and whatever it was still doing is lost.
        """
        with self._send_lock:
            if self.alive and self._send_now(("close", None, (), {})):
                self.closing = True
            self.alive = False
        # Whichever thread sent "close", the sidecar exits once everything before it has run: wait for that (the
        # SIGTERM thread may close while the main thread already is), but not for a sidecar that is already lost.
        # One thread waits at a time: two joining at once race to reap the process and misread it as alive.
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._wait_lock.acquire(timeout=-1 if timeout is None else timeout):
            self._process.kill()
            return False
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._process.join(left if self.closing else 0)
            finished = self.closing and not self._process.is_alive()
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._conn.close()
            return finished
        finally:
            self._wait_lock.release()

    def _send(self, message: tuple) -> bool:
        with self._send_lock:
            return self.alive and self._send_now(message)

    def _send_now(self, message: tuple) -> bool:
        try:
            self._conn.send(message)
            return True
        except (OSError, EOFError) as err:
            self._lost(err)
            return False

    def _lost(self, err: BaseException) -> None:
        self.alive = False
        log.warning("the sidecar process is gone (%s: %s)", type(err).__name__, err)


_orphan_handlers: list[tuple[Callable, tuple]] = []


def _add_orphan_handler(fn: Callable, args: tuple) -> None:
    _orphan_handlers.append((fn, args))


def _serve(conn: Connection, parent_end: Connection) -> None:
    """The sidecar's loop: run what arrives on `conn` until told to close or the training process is gone."""
    parent_end.close()  # keep only our end, so the pipe reads EOF once the training process is gone
    # Ctrl-C, and torchrun's SIGTERM to the whole process group when a peer fails, are for the training process:
    # it then ends its runs through us and closes us. Dying at once would leave those runs RUNNING.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Our own stderr handler, whatever handlers the parent had installed before forking.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT, force=True)
    gc.enable()  # forked while the training process held its collector off; heavy loaders here hold it off again
    while True:
        try:
            kind, fn, args, kwargs = conn.recv()
        except EOFError:  # the training process died without closing us: run what it asked for that case
            for handler, handler_args in _orphan_handlers:
                _run(handler, handler_args, {})
            return
        if kind == "close":
            return
        ok, value = _run(fn, args, kwargs)
        if kind == "call":
            conn.send((ok, value))


def _run(fn: Callable, args: tuple, kwargs: dict) -> tuple[bool, Any]:
    try:
        return True, fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - one failed call must not stop the calls queued behind it
        log.exception("sidecar: %s failed", getattr(fn, "__qualname__", fn))
        return False, f"{getattr(fn, '__qualname__', fn)} failed: {type(err).__name__}: {err}"
