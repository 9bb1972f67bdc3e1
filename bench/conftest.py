"""Shared benchmark plumbing: every benchmark records its numbers through ``bench_record``, and the
session writes them, with the machine, to one JSON file under bench/results/ per run.

A record holds the benchmark's name, the shapes, the device, timings (seconds, medians over rounds)
and peak extra memory (bytes) per implementation, and ratios against the run's own baseline.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
from pathlib import Path

import pytest

RESULTS_DIR = Path(__file__).parent / "results"
_RECORDS: list[dict] = []


def machine_info() -> dict:
    info = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
            info["cuda"] = torch.version.cuda
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            pass
    except ImportError:
        pass
    return info


@pytest.fixture(scope="session")
def bench_record():
    """Call ``bench_record(name, **fields)`` to add one record to this run's results file."""

    def record(name: str, **fields) -> dict:
        entry = {"name": name, **fields}
        _RECORDS.append(entry)
        return entry

    return record


def pytest_sessionfinish(session, exitstatus):
    if not _RECORDS:
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    info = machine_info()
    tag = "gpu" if "gpu" in info else "cpu"
    path = RESULTS_DIR / f"{stamp}-{tag}.json"
    payload = {"created": stamp, "machine": info, "records": _RECORDS}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    session.config._vsdpo_results_path = path


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    path = getattr(config, "_vsdpo_results_path", None)
    if path is not None:
        terminalreporter.write_line(f"benchmark results written to {path}")
