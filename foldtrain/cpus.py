"""The CPU budget of one process: how many cores it may use, and how many torch threads to run."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cores_per_process(local_processes: int | None = None) -> int:
    """This process's share of the cores, when `local_processes` (default: torchrun's LOCAL_WORLD_SIZE) share them."""
    local = local_processes or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, available_cores() // max(1, local))


def torch_threads(local_processes: int | None = None) -> int | None:
    """Intra-op threads to set for CPU work, or None to keep what the user chose.

    `accelerate launch` sets OMP_NUM_THREADS=1 unless told otherwise (`--num_cpu_threads_per_process`), which
    halved training speed on a 2-core machine with one process; so 1 (or unset) means "the process's share of the
    cores", and a value above 1 is the user's choice and kept.
    """
    if os.environ.get("OMP_NUM_THREADS", "1") != "1":
        return None
    return cores_per_process(local_processes)


def use_all_cores(device_type: str) -> None:
    """On CPU, run torch with this process's share of the cores (see `torch_threads`)."""
    threads = torch_threads() if device_type == "cpu" else None
    if threads:
        import torch

        torch.set_num_threads(threads)


def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks for reuse instead of handing them back to the kernel; True when applied.

    By default glibc serves every block above 128 KB-32 MB with a fresh `mmap`, returns it on `free` and trims the
    heap top, so each training step's activation tensors land on new pages the kernel must zero-fill. Raising both
    thresholds keeps those pages for the next step, as jemalloc or tcmalloc would (resnet10t at 96 px on 2 cores:
    an epoch 3.0 s -> 2.6 s); resident memory then stays at its peak. A no-op without glibc.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no glibc (macOS, musl, Windows)
        return False
    m_trim_threshold, m_mmap_threshold, keep_below = -1, -3, 1 << 30  # mallopt(3) parameters from malloc.h
    return bool(mallopt(m_mmap_threshold, keep_below)) and bool(mallopt(m_trim_threshold, keep_below))


NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def native_bf16(cpuinfo: str | None = None) -> str | None:
    """The CPU flag that makes bf16 arithmetic native here (AMX or AVX512-BF16), or None where the CPU lacks both
    (PyTorch then emulates bf16, usually slower than fp32) or the flags cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = open("/proc/cpuinfo").read()  # noqa: SIM115 - read at once
        except OSError:
            return None
    flags = {word for line in cpuinfo.splitlines() if line.startswith("flags") for word in line.split()}
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


def precision_line(mixed_precision: str, device_type: str) -> tuple[str, bool]:
    """One line saying which precision the run trains in, and whether it deserves a warning (bf16 on a CPU that
    emulates it)."""
    if mixed_precision == "no":
        return "precision: fp32", False
    if device_type != "cpu":
        return f"precision: {mixed_precision} autocast on {device_type}, weights and optimizer in fp32", False
    flag = native_bf16()
    if flag:
        return (f"precision: {mixed_precision} autocast on the CPU ({flag}: native), weights, optimizer, loss and "
                f"metrics in fp32", False)
    return (f"precision: {mixed_precision} autocast on a CPU without native bf16 (no {' or '.join(NATIVE_BF16_FLAGS)}"
            f" here): PyTorch emulates it, usually slower than fp32; launch with launch/accelerate/cpu.yaml for "
            f"fp32", True)
