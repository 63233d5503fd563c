"""Two "machines" on one host: two real `accelerate launch` launchers meeting through c10d rendezvous (gloo), once
by hand and once through `launch/slurm_multinode.sh` with stand-in `srun` and `scontrol` that start the real
launcher once per node."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, cli_env, free_port

pytestmark = pytest.mark.slow

TINY = ["model.name=resnet10t", "data.image_size=32", "train.batch_size=16", "cv.folds=3", "train.epochs=2",
        "data.num_workers=0", "cv.only=[0]"]


def check_two_process_run(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["effective_batch_size"] == 32
    split, oof = pd.read_csv(run / "folds.csv"), pd.read_csv(run / "oof.csv")
    assert oof["path"].is_unique and set(oof["path"]) == set(split.loc[split["fold"] == 0, "path"])


def wait_for_listener(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    """Until something listens on 127.0.0.1:port: on one host every launcher would host the rendezvous store,
    so the second "machine" starts once the first one holds it, as on real machines."""
    deadline = time.time() + seconds
    while process.poll() is None and time.time() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)


def test_two_machines_through_c10d(demo_root: Path, tmp_path: Path):
    port = free_port()
    args = [f"data.root={demo_root}", *TINY, "run.name=nodes", f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"]
    launchers = []
    for rank in (0, 1):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
                   "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
                   "--main_process_port", str(port), "--rdzv_backend", "c10d", "--mixed_precision", "no",
                   "--dynamo_backend", "no", str(REPO / "foldtrain" / "main.py"), *args]
        launchers.append(subprocess.Popen(command, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, start_new_session=True))
        if rank == 0:
            wait_for_listener(port, launchers[0])
    try:
        outputs = [launcher.communicate(timeout=480)[0] for launcher in launchers]
    finally:
        for launcher in launchers:  # a launcher left waiting for its peer must not outlive the test
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
    assert [launcher.returncode for launcher in launchers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    check_two_process_run(tmp_path / "runs" / "nodes")


STAND_IN_SRUN = """#!/usr/bin/env bash
# srun for one host: run the task command once per node, each with its own SLURM_PROCID. Rank 0 goes first and
# the others start once it listens on the rendezvous port (on one host every node would try to host it).
while [[ "$1" == --* ]]; do shift; done
pids=()
for rank in $(seq 0 $((SLURM_NNODES - 1))); do
    SLURM_PROCID=$rank "$@" > "$SRUN_LOG.$rank" 2>&1 &
    pids+=($!)
    for _ in $(seq 600); do
        (echo > "/dev/tcp/127.0.0.1/$MAIN_PROCESS_PORT") 2>/dev/null && break
        sleep 0.2
    done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


def test_slurm_script_starts_the_real_launcher_per_node(demo_root: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(STAND_IN_SRUN)
    (bin_dir / "scontrol").write_text('#!/usr/bin/env bash\nprintf "127.0.0.1\\n127.0.0.1\\n"\n')
    for stand_in in bin_dir.iterdir():
        stand_in.chmod(0o755)
    env = cli_env(PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]),
                  SLURM_JOB_ID="7", SLURM_NNODES="2", SLURM_JOB_NODELIST="node[1-2]", SLURM_SUBMIT_DIR=str(REPO),
                  GPUS_PER_NODE="1", MAIN_PROCESS_PORT=str(free_port()), SRUN_LOG=str(tmp_path / "node"))
    job = subprocess.Popen(["bash", str(REPO / "launch" / "slurm_multinode.sh"), f"data.root={demo_root}", *TINY,
                            f"run.dir={tmp_path / 'runs'}", "run.name=slurm",
                            f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        out, err = job.communicate(timeout=480)
    finally:
        if job.poll() is None:  # the whole job, its launchers included
            os.killpg(job.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(job.args, job.returncode, out, err)
    logs = "".join((tmp_path / f"node.{r}").read_text()[-2500:] for r in (0, 1) if (tmp_path / f"node.{r}").exists())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + logs
    check_two_process_run(tmp_path / "runs" / "slurm")
    assert json.loads((tmp_path / "runs" / "slurm" / "summary.json").read_text())["mixed_precision"] == "bf16"
