"""Which precision a run says it trains in, and the warning for bf16 on a CPU that only emulates it."""

from __future__ import annotations

import pytest

from foldtrain import cpus

AMX = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n"
AVX512_BF16 = "flags\t\t: fpu avx2 avx512f avx512_bf16\nbugs\t\t: spectre_v1\n"
PLAIN = "flags\t\t: fpu avx2 avx512f\nmodel name\t: avx512_bf16-lookalike in the name, not a flag\n"


@pytest.mark.parametrize(("cpuinfo", "flag"), [(AMX, "amx_bf16"), (AVX512_BF16, "avx512_bf16"), (PLAIN, None),
                                               ("", None)])
def test_native_bf16_is_read_from_the_flags_line_only(cpuinfo: str, flag: str | None):
    assert cpus.native_bf16(cpuinfo) == flag


def test_the_precision_line_says_what_runs_and_warns_on_emulated_bf16(monkeypatch):
    assert cpus.precision_line("no", "cpu") == ("precision: fp32", False)
    monkeypatch.setattr(cpus, "native_bf16", lambda: "avx512_bf16")
    line, warn = cpus.precision_line("bf16", "cpu")
    assert not warn and "bf16 autocast on the CPU (avx512_bf16: native)" in line and "in fp32" in line
    monkeypatch.setattr(cpus, "native_bf16", lambda: None)
    line, warn = cpus.precision_line("bf16", "cpu")
    assert warn and "emulates it" in line and "launch/accelerate/cpu.yaml" in line
    assert cpus.precision_line("fp16", "cuda") == ("precision: fp16 autocast on cuda, weights and optimizer in fp32",
                                                   False)
