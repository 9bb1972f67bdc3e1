"""Loss benchmark: time (forward+backward) and peak extra memory of each implementation, as ratios
against ``reference`` and against the matmul floor measured in the same run.

CPU: B=4, T=512, D=512, V=32000, float32. GPU (when present): B=8, T=1024, D=4096, V=151936, bf16,
and a sweep over T. Each contender's memory is measured in a fresh process (peak RSS, or the CUDA
allocator's peak, above the inputs).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from sdpo_runners import make_inputs, make_runner

HERE = Path(__file__).parent
CPU_SHAPE = dict(B=4, T=512, D=512, V=32000)
GPU_SHAPE = dict(B=8, T=1024, D=4096, V=151936)
GPU_SWEEP_T = (256, 512, 2048)
_RESULTS: dict[tuple, dict] = {}


def _memory(name, shape, dtype, device) -> int | None:
    cmd = [
        sys.executable,
        str(HERE / "sdpo_runners.py"),
        name,
        *(str(shape[k]) for k in "BTDV"),
        dtype,
        device,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra_bytes"]


def _time(run, device, rounds) -> list[float]:
    times = []
    for _ in range(rounds):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    return times


def _measure(benchmark, name, shape, dtype, device, rounds):
    inputs = make_inputs(**shape, dtype=getattr(torch, dtype), device=device)
    run = make_runner(name, inputs)
    try:
        run()  # warm-up (compilation, allocator)
    except Exception as error:  # a contender that cannot run here is recorded, not fatal
        pytest.skip(f"{name} cannot run: {type(error).__name__}: {error}")
    benchmark.pedantic(run, rounds=1, iterations=1)  # registers the contender with pytest-benchmark
    times = _time(run, device, rounds)
    result = {
        "median_s": statistics.median(times),
        "times_s": times,
        "peak_extra_bytes": _memory(name, shape, dtype, device),
    }
    _RESULTS[(device, tuple(shape.values()), dtype, name)] = result
    return result


CPU_CONTENDERS = ["floor", "reference", "torch", "cpu", "liger"]


@pytest.mark.parametrize("name", CPU_CONTENDERS)
def test_cpu_loss(benchmark, bench_record, name):
    result = _measure(benchmark, name, CPU_SHAPE, "float32", "cpu", rounds=3)
    bench_record(f"sdpo_loss/cpu/{name}", device="cpu", dtype="float32", shape=CPU_SHAPE, **result)


def _summary(device, shape, dtype, names):
    rows = {n: _RESULTS.get((device, tuple(shape.values()), dtype, n)) for n in names}
    ref, floor = rows.get("reference"), rows.get("floor")
    summary = {}
    for n, r in rows.items():
        if r is None:
            continue
        entry = {"median_s": r["median_s"], "peak_extra_bytes": r["peak_extra_bytes"]}
        if floor:
            entry["time_vs_floor"] = r["median_s"] / floor["median_s"]
        if ref:
            entry["time_vs_reference"] = r["median_s"] / ref["median_s"]
            if r["peak_extra_bytes"] is not None and ref["peak_extra_bytes"]:
                entry["memory_vs_reference"] = r["peak_extra_bytes"] / ref["peak_extra_bytes"]
        summary[n] = entry
    return summary


def test_cpu_summary(bench_record):
    summary = _summary("cpu", CPU_SHAPE, "float32", CPU_CONTENDERS)
    if "reference" not in summary:
        pytest.skip("the CPU contenders did not run")
    N = CPU_SHAPE["B"] * CPU_SHAPE["T"]
    bench_record(
        "sdpo_loss/cpu/summary",
        device="cpu",
        dtype="float32",
        shape=CPU_SHAPE,
        floor_flops=8 * N * CPU_SHAPE["V"] * CPU_SHAPE["D"],
        contenders=summary,
    )
    for name, entry in summary.items():
        print(f"{name:>10}: {entry}")


GPU_CONTENDERS = ["floor", "reference", "torch", "triton", "liger"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("T", [GPU_SHAPE["T"], *GPU_SWEEP_T])
@pytest.mark.parametrize("name", GPU_CONTENDERS)
def test_gpu_loss(benchmark, bench_record, name, T):
    shape = {**GPU_SHAPE, "T": T}
    result = _measure(benchmark, name, shape, "bfloat16", "cuda", rounds=10)
    bench_record(
        f"sdpo_loss/gpu/{name}", device=torch.cuda.get_device_name(), dtype="bfloat16", shape=shape, **result
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_summary(bench_record):
    for T in [GPU_SHAPE["T"], *GPU_SWEEP_T]:
        shape = {**GPU_SHAPE, "T": T}
        bench_record(
            "sdpo_loss/gpu/summary",
            device=torch.cuda.get_device_name(),
            dtype="bfloat16",
            shape=shape,
            contenders=_summary("cuda", shape, "bfloat16", GPU_CONTENDERS),
        )
