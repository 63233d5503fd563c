"""Launch recipes in launch/: Accelerate presets load, shell scripts parse and quote right, and the CPU preset
really starts 2 processes through the real `accelerate launch` CLI (no training anywhere here)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "launch" / "accelerate").glob("*.yaml"))
CONFIGS = [*PRESETS, REPO / "accelerate_config.yaml"]
SCRIPTS = sorted((REPO / "launch").glob("*.sh"))
SLURM = REPO / "launch" / "slurm_multinode.sh"
PIPELINE = REPO / "launch" / "pipeline.sh"
REQUIRED = ("distributed_type", "num_processes", "mixed_precision", "num_machines")

RANK_SCRIPT = """\
from accelerate import PartialState

state = PartialState(cpu=True)
print(f"RANK {state.process_index} OF {state.num_processes} BACKEND {state.backend}", flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_expected_recipes_exist():
    names = {p.name for p in PRESETS}
    assert {"cpu_2proc.yaml", "gpu_1.yaml", "gpu_n_bf16.yaml", "multinode.yaml"} <= names
    assert SLURM.is_file() and PIPELINE.is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads(path: Path):
    text = path.read_text()
    assert text.startswith("#"), "a preset starts with a comment saying when and how to use it"
    assert "accelerate launch --config_file" in text
    raw = yaml.safe_load(text)
    missing = [key for key in REQUIRED if key not in raw]
    assert not missing, f"{path.name} lacks {missing}"
    # YAML 1.1 reads a bare `no` / `NO` as false: these must stay strings.
    assert raw["mixed_precision"] in ("no", "fp16", "bf16", "fp8")
    assert isinstance(raw["distributed_type"], str)
    assert raw["num_processes"] >= 1 and raw["num_machines"] >= 1
    assert raw["num_processes"] % raw["num_machines"] == 0
    # Accelerate's own loader: rejects unknown keys and bad enum values.
    config = load_config_from_file(str(path))
    assert config.num_processes == raw["num_processes"]


def test_preset_contents():
    load = {p.name: yaml.safe_load(p.read_text()) for p in PRESETS}
    cpu = load["cpu_2proc.yaml"]
    assert (cpu["distributed_type"], cpu["num_processes"], cpu["use_cpu"], cpu["num_machines"]) == (
        "MULTI_GPU", 2, False, 1)
    assert (load["gpu_1.yaml"]["num_processes"], load["gpu_1.yaml"]["mixed_precision"]) == (1, "bf16")
    assert load["gpu_n_bf16.yaml"]["distributed_type"] == "MULTI_GPU"
    assert load["gpu_n_bf16.yaml"]["mixed_precision"] == "bf16"
    multi = load["multinode.yaml"]
    assert (multi["num_machines"], multi["num_processes"], multi["machine_rank"]) == (2, 16, 0)
    assert multi["rdzv_backend"] == "static" and multi["main_process_ip"]
    assert multi["mixed_precision"] == "bf16"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses_and_is_executable(path: Path):
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & stat.S_IXUSR, f"{path.name} is not executable"
    assert "set -euo pipefail" in path.read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_slurm_script_shape():
    text = SLURM.read_text()
    for needle in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                   "#SBATCH --cpus-per-task", "#SBATCH --time", "srun", "accelerate launch",
                   "--rdzv_backend c10d", "--multi_gpu", "--mixed_precision bf16", "scontrol show hostnames",
                   "foldtrain/main.py"):
        assert needle in text, needle


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


LOG_ARGS = 'printf "%s\\n" "CALL $(basename "$0") ${SLURM_PROCID:-}" "$@" >> "$STUB_LOG"\n'


def _calls(log: Path) -> list[list[str]]:
    calls: list[list[str]] = []
    for line in log.read_text().splitlines():
        if line.startswith("CALL "):
            calls.append([line])
        else:
            calls[-1].append(line)
    return calls


def test_slurm_script_expands_rank_per_task(tmp_path: Path):
    """Stub srun (runs its command as 2 tasks), scontrol and accelerate: each task must get its own rank."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "scontrol", 'printf "gpu-a01\\ngpu-a02\\n"\n')
    _stub(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done\n'
                           'for rank in 0 1; do SLURM_PROCID=$rank "$@" || exit 1; done\n')
    _stub(bin_dir, "accelerate", LOG_ARGS)
    log = tmp_path / "log"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", STUB_LOG=str(log),
               SLURM_JOB_ID="7", SLURM_NNODES="2", SLURM_JOB_NODELIST="gpu-a[01-02]",
               SLURM_SUBMIT_DIR=str(tmp_path), SLURM_PROCID="0")
    result = subprocess.run(["bash", str(SLURM), "run.name=a b", "cv.only=[0,2]"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    calls = _calls(log)
    assert len(calls) == 2
    for rank, call in enumerate(calls):
        args = call[1:]
        opt = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("--")
               and not args[i + 1].startswith("--")}
        assert args[0] == "launch"
        assert opt["--machine_rank"] == str(rank)
        assert (opt["--num_machines"], opt["--num_processes"]) == ("2", "16")
        assert (opt["--main_process_ip"], opt["--main_process_port"]) == ("gpu-a01", "29500")
        assert opt["--rdzv_backend"] == "c10d" and opt["--mixed_precision"] == "bf16"
        assert "--multi_gpu" in args
        assert args[-3:] == ["foldtrain/main.py", "run.name=a b", "cv.only=[0,2]"]


def test_pipeline_chains_the_three_steps(tmp_path: Path):
    """Stub python and accelerate: the steps run in order with the documented arguments, quoting intact."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "python", LOG_ARGS)
    _stub(bin_dir, "accelerate", LOG_ARGS)
    log = tmp_path / "log"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", STUB_LOG=str(log),
               RAW="/raw data", FACES="/faces", NAME="n1",
               ACCELERATE_ARGS="--config_file launch/accelerate/cpu_2proc.yaml --num_processes 2")
    result = subprocess.run(["bash", str(PIPELINE), "train.epochs=1", "run.tag=x y"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    crop, train, predict = _calls(log)
    assert crop[1:] == ["-m", "foldtrain.facecrop", "--src", "/raw data", "--dst", "/faces"]
    assert train[1:] == ["launch", "--config_file", "launch/accelerate/cpu_2proc.yaml", "--num_processes", "2",
                         str(REPO / "foldtrain" / "main.py"), "data.root=/faces", "run.dir=runs", "run.name=n1",
                         "train.epochs=1", "run.tag=x y"]
    assert predict[1:] == ["-m", "ensemble.predict", "--run", "runs/n1", "--data", "/faces/eval"]

    # No ACCELERATE_ARGS at all (set -u with an empty array) still works.
    log.unlink()
    del env["ACCELERATE_ARGS"]
    result = subprocess.run(["bash", str(PIPELINE)], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert _calls(log)[1][1:3] == ["launch", str(REPO / "foldtrain" / "main.py")]


def test_cpu_preset_starts_two_processes(tmp_path: Path):
    """The real check: `accelerate launch --config_file cpu_2proc.yaml` runs 2 gloo ranks on a CPU machine."""
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "launch" / "accelerate" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()),
           str(script)]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # Two processes share one stdout, so their lines may run together: match the records, not the lines.
    records = re.findall(r"RANK (\d+) OF (\d+) BACKEND ([a-z]+)", result.stdout)
    assert {int(rank) for rank, _, _ in records} == {0, 1}, result.stdout
    assert all(world == "2" and backend == "gloo" for _, world, backend in records), result.stdout
