"""Hostile chart programs against the sandbox's layers: files and privileges, IPC, namespaces, the
environment, the disk, and the caller killed mid-job. Each attack is a real program run through
render() (or a pool); each must find nothing of the host and leave nothing behind."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.render.hostile import LocalServers, chart_probe
from vsdpo.render.sandbox import SandboxLimits, SandboxPool
from vsdpo.render.sandbox.child import LAYERS, SANDBOX_ROOT

PROGRAM = "vsdpo.render.sandbox.child:exec_program"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full sandbox needs root")


def test_every_layer_is_in_place():
    status = chart_probe(
        "fields = ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp')\n"
        "found = ' '.join(line.replace(':', '=').replace('\\t', '') for line in open('/proc/self/status')"
        " .read().splitlines() if line.split(':')[0] in fields)"
    )
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert f"{name}=0000000000000000" in status, status
    assert "NoNewPrivs=1" in status and "Seccomp=2" in status, status
    with SandboxPool(preload=()) as pool:
        result = pool.run(PROGRAM, {"code": "result = 1"})
    assert result.ok and set(LAYERS) <= set(result.extra["layers"])


def test_root_only_files_stay_unreadable():
    assert "PermissionError" in chart_probe("found = open('/etc/shadow').read()")
    # /root (mode 700) shows only the Python installation the job imports from, if that lies there.
    listing = ast.literal_eval(
        chart_probe("import os\nfound = os.listdir('/root') if os.path.isdir('/root') else []")
    )
    installation = {Path(p).parts[2] for p in map(os.path.realpath, sys.path) if p.startswith("/root/")}
    assert set(listing) <= installation


def test_open_by_handle_and_namespaces_are_refused():
    handle = chart_probe(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        # open_by_handle_at(AT_FDCWD, a handle of inode 2, O_RDONLY): the host's root, past any mount.
        raw = (ctypes.c_char * 16)(*b"\\x08\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
        fd = libc.syscall(304, -100, raw, 0)
        found = (fd, os.strerror(ctypes.get_errno()))
        """
    )
    assert "-1" in handle and "Operation not permitted" in handle
    userns = chart_probe(
        "import subprocess\n"
        "found = subprocess.run(['unshare', '-Ur', 'id'], capture_output=True, text=True).stderr"
    )
    assert "Operation not permitted" in userns
    trace = chart_probe(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "found = (libc.ptrace(16, 1, 0, 0), os.strerror(ctypes.get_errno()))"  # PTRACE_ATTACH init
    )
    assert "Operation not permitted" in trace
    mount = chart_probe(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "found = (libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None), os.strerror(ctypes.get_errno()))"
    )
    assert "Operation not permitted" in mount


def test_sysv_ipc_is_refused():
    found = chart_probe(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        found = []
        for call, args in (("shmget", (0, 4096, 0o1666)), ("semget", (0, 1, 0o1666)), ("msgget", (0, 0o1666))):
            value = getattr(libc, call)(*args)
            found.append((call, value, os.strerror(ctypes.get_errno())))
        """
    )
    assert found.count("Operation not permitted") == 3, found


def test_writes_land_on_the_jobs_own_tmpfs_and_go_with_it():
    token = uuid.uuid4().hex
    places = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
    script = (
        "; ".join(f"echo x > {place}/{token}" for place in places)
        + f"; echo y > /etc/{token}; echo z > /{token}"
    )
    found = chart_probe(
        f"import subprocess\nfound = subprocess.run(['sh', '-c', {script!r}], capture_output=True, text=True).stderr"
    )
    assert found.count("Read-only file system") == 2, found
    for place in (*places, "/etc", ""):
        assert not Path(f"{place}/{token}").exists(), f"{place}/{token} outlived the job"


def test_the_caller_environment_stays_out(monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("VSDPO_TEST_TOKEN", secret)
    with SandboxPool(preload=()) as pool:  # started after the secret is set
        result = pool.run(
            PROGRAM,
            {
                "code": textwrap.dedent(
                    """
                    import os, subprocess
                    seen = [repr(dict(os.environ))]
                    seen.append(subprocess.run(['cat', '/proc/self/environ'], capture_output=True).stdout.decode())
                    for pid in os.listdir('/proc'):
                        if pid.isdigit():
                            try:
                                seen.append(open(f'/proc/{pid}/environ', 'rb').read().decode())
                            except OSError as error:
                                seen.append(type(error).__name__)
                    result = (seen, sorted(p for p in os.listdir('/proc') if p.isdigit()))
                    """
                )
            },
        )
    assert result.ok, result.error
    seen, pids = result.value
    assert not any(secret in text for text in seen)
    assert len(pids) <= 3  # the namespace's init, the job, and its `cat` at most


def test_network_and_hostname_stay_private():
    with LocalServers() as servers:
        found = chart_probe(
            f"import socket\nfound = socket.create_connection(('127.0.0.1', {servers.http_port}), timeout=2)"
        )
        assert "Error" in found and servers.hits == []
    assert "Operation not permitted" in chart_probe(
        "import socket\nsocket.sethostname('owned')\nfound = 'renamed'"
    )


def test_disk_quota_bounds_what_a_job_writes():
    with SandboxPool(preload=()) as pool:
        result = pool.run(
            PROGRAM,
            {
                "code": "import os\nwritten = 0\ntry:\n"
                "    for i in range(64):\n"
                "        with open(f'/tmp/block{i}', 'wb') as f:\n"
                "            f.write(b'x' * (4 << 20))\n"
                "        written += 4\n"
                "except OSError as error:\n"
                "    result = (written, error.errno)\n"
            },
            limits=SandboxLimits(disk_bytes=32 << 20),
        )
    assert result.ok, result.error
    written, errno_value = result.value
    assert written <= 32 and errno_value == 28  # ENOSPC


@pytest.mark.slow
def test_killing_the_caller_mid_job_ends_the_jobs_daemon(tmp_path):
    marker = f"{time.time_ns() % 10**9}.{os.getpid()}"
    folders_before = set(_job_folders())
    job = "\n".join(
        [
            "import os, time",
            "if os.fork() == 0:",
            "    os.setsid()",
            "    if os.fork() == 0:",
            f"        os.execvp('sleep', ['sleep', '{marker}'])",
            "    os._exit(0)",
            "time.sleep(60)",
        ]
    )
    caller = (
        "from vsdpo.render.sandbox import SandboxPool\n"
        "with SandboxPool(preload=()) as pool:\n"
        f"    pool.run({PROGRAM!r}, {{'code': {job!r}}}, timeout_s=120)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", caller], cwd=Path(__file__).parents[2])
    try:
        assert _wait_for(lambda: _sleepers(marker), 60), "the job's daemon never started"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert _wait_for(lambda: not _sleepers(marker), 20), "the job's daemon outlived its caller"
    assert set(_job_folders()) <= folders_before, "the job's folder outlived its caller"


def _sleepers(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if cmdline.read().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                    found.append(int(pid))
        except (OSError, ValueError):
            continue
    return found


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _job_folders() -> list[str]:
    """Working directories of this sandbox's jobs on the host (named job-WORKERPID-...)."""
    try:
        return [name for name in os.listdir(SANDBOX_ROOT) if re.match(r"job-\d+-", name)]
    except OSError:
        return []


def test_a_missing_layer_refuses_untrusted_code_unless_opted_in(tmp_path, monkeypatch):
    # A machine without libseccomp: the binding cannot be imported.
    (tmp_path / "pyseccomp.py").write_text("raise ImportError('libseccomp is not installed here')\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    with pytest.warns(RuntimeWarning, match="seccomp"), SandboxPool(preload=(), allow_weak=False) as pool:
        refused = pool.run(PROGRAM, {"code": "result = 'ran'"})
    assert not refused.ok and refused.error_kind == "sandbox" and "seccomp" in refused.error
    with pytest.warns(RuntimeWarning, match="anyway"), SandboxPool(preload=(), allow_weak=True) as pool:
        allowed = pool.run(PROGRAM, {"code": "result = 'ran'"})
    assert allowed.ok and allowed.value == "ran"
