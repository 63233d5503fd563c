"""Shared fixtures: tiny synthetic data sets in the competition layout, and helpers to run the real CLIs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from foldtrain.demo import generate_demo

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """20 persons (140 photos) and their eval images, shared read-only by the tests of a session."""
    return generate_demo(tmp_path_factory.mktemp("demo") / "data", persons=20, seed=1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for CLI subprocesses: quiet, single-threaded BLAS per process, no GPU."""
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1",
                "CUDA_VISIBLE_DEVICES": "", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    env.update(extra)
    return env


def accelerate_launch(args: list[str], cwd: Path, processes: int = 1, timeout: int = 600,
                      **env: str) -> subprocess.CompletedProcess:
    """Run `accelerate launch [--multi_gpu --num_processes N] foldtrain/main.py ARGS` as a user would."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if processes > 1:
        launch += ["--multi_gpu", "--main_process_port", str(free_port())]
    return subprocess.run(launch + [str(REPO / "foldtrain" / "main.py"), *args], cwd=cwd, env=cli_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def run_module(module: str, args: list[str], cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS`."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=cli_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def run_main(args: list[str], cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """`python foldtrain/main.py ARGS`: a single-process run without the launcher, as the README documents."""
    return subprocess.run([sys.executable, str(REPO / "foldtrain" / "main.py"), *args], cwd=cwd, env=cli_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def no_traceback(result: subprocess.CompletedProcess) -> bool:
    """True when neither stream holds a Python traceback."""
    return "Traceback" not in result.stderr and "Traceback" not in result.stdout
