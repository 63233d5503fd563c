#!/usr/bin/env bash
# Multi-node training under SLURM: N nodes x 8 GPUs, one `accelerate launch` per node, c10d rendezvous.
#
#   cd /path/to/foldtrain && sbatch launch/slurm_multinode.sh [key=value ...]
#   e.g. sbatch --nodes=4 launch/slurm_multinode.sh data.root=/data/faces run.name=effb0-4n train.epochs=15
#
# Submit from the repository root (the job runs foldtrain/main.py relative to the submit folder) with the
# Python environment that has foldtrain + accelerate active (srun passes the environment on to the tasks).
# Arguments after the script name go straight to foldtrain/main.py as config overrides.
# Set GPUS_PER_NODE if the nodes have a different count (and change --gpus-per-node below to match).
#
#SBATCH --job-name=foldtrain
#SBATCH --nodes=2                 # machines; every one runs one launcher
#SBATCH --ntasks-per-node=1       # ONE task per node: that task is accelerate launch, which forks 1 process/GPU
#SBATCH --gpus-per-node=8         # keep equal to GPUS_PER_NODE
#SBATCH --cpus-per-task=64        # all the node's cores to the launcher: 8 ranks x (data loader workers + 1)
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out

set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-.}"

# GPUs on each node; accelerate's --num_processes is the TOTAL over all nodes.
export GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
# The rendezvous host: the first node of the allocation (every node computes the same name).
# sed reads the whole list: `head -n1` would close the pipe early, and under pipefail scontrol's SIGPIPE
# (exit 141) would abort the job.
HEAD_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)"
export HEAD_NODE
# Rendezvous port on the head node: must be free there and reachable from the other nodes.
export MAIN_PROCESS_PORT="${MAIN_PROCESS_PORT:-29500}"
# Optional NCCL knobs, by cluster: export NCCL_SOCKET_IFNAME=ib0 (the fabric interface), NCCL_DEBUG=WARN.

echo "job ${SLURM_JOB_ID}: ${SLURM_NNODES} nodes x ${GPUS_PER_NODE} GPUs, rendezvous ${HEAD_NODE}:${MAIN_PROCESS_PORT}"
echo "overrides: $*"

# srun starts one task per node (--ntasks-per-node=1). The command is in SINGLE quotes so that
# $SLURM_PROCID (0..nnodes-1, this node's rank) is expanded by each task's own shell, not here where it
# would be the batch script's value on every node. The overrides travel as positional arguments
# ("bash -c CMD bash ARGS" makes ARGS "$@" inside CMD), so spaces and quotes in them survive.
#   --num_machines / --num_processes  world layout (total processes = nodes x GPUs per node)
#   --machine_rank                    this node's rank; with c10d the group rendezvous assigns global
#                                     ranks, but accelerate still wants a rank per machine
#   --rdzv_backend c10d               torch's TCP-store rendezvous at HEAD:PORT: nodes may start in
#                                     any order and wait for each other (static would need exact ranks
#                                     and MASTER_ADDR; c10d also gives a clear timeout if a node is missing)
#   no --same_network                 so accelerate hands torchrun --rdzv_endpoint HEAD:PORT (c10d needs it)
#   --multi_gpu --mixed_precision bf16  DDP over NCCL with bf16 autocast (fp16 on pre-Ampere GPUs)
# No --config_file: every setting is on the command line. A default config in
# ~/.cache/huggingface/accelerate/ still fills unset keys; keep it free of same_network: true.
# --kill-on-bad-exit: if one node's launcher dies, stop the others instead of hanging in a collective.
# shellcheck disable=SC2016  # single quotes on purpose: expanded by each task, see above
srun --kill-on-bad-exit=1 bash -c '
    exec accelerate launch \
        --num_machines "$SLURM_NNODES" \
        --num_processes "$((SLURM_NNODES * GPUS_PER_NODE))" \
        --machine_rank "$SLURM_PROCID" \
        --main_process_ip "$HEAD_NODE" \
        --main_process_port "$MAIN_PROCESS_PORT" \
        --rdzv_backend c10d \
        --multi_gpu \
        --mixed_precision bf16 \
        --dynamo_backend no \
        foldtrain/main.py "$@"
' bash "$@"
