"""Hostile programs in the sandbox: each fails cleanly, leaves no process or file behind, and the next job runs."""

import os
import time

import pytest

from vsdpo.render import render
from vsdpo.render.sandbox import SandboxLimits, SandboxPool, run_in_sandbox
from vsdpo.render.sandbox.worker import _processes_of

PROGRAM = "vsdpo.render.sandbox.child:exec_program"


@pytest.fixture(scope="module")
def sandbox_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sandbox-root")


@pytest.fixture(scope="module")
def pool(sandbox_root):
    with SandboxPool(workers=1, root=str(sandbox_root)) as pool:
        yield pool


def run(pool, code, **kw):
    return pool.run(PROGRAM, {"code": code}, **kw)


def assert_nothing_left(pool, sandbox_root, result):
    uid = result.extra.get("uid")
    if uid is not None:
        assert _processes_of(uid) == [], "processes of the job outlived it"
    assert list(sandbox_root.iterdir()) == [], "the job's working directory was left behind"
    after = run(pool, "result = 'still working'")
    assert after.ok and after.value == "still working"


def test_plain_data_round_trip(pool):
    result = run(
        pool, "import os\nresult = {'cwd': os.getcwd(), 'env': sorted(os.environ), 'x': [1, 2.5, b'b']}"
    )
    assert result.ok, result.error
    assert result.value["x"] == [1, 2.5, b"b"]
    assert "HOME" in result.value["env"] and not any(k.startswith("VSDPO") for k in result.value["env"])


def test_result_must_be_plain_data(pool):
    result = run(pool, "class Evil:\n    pass\nresult = Evil()")
    assert not result.ok and result.error_kind == "exception"
    assert "plain data" in result.error


def test_exception_carries_type_and_message(pool):
    result = run(pool, "raise KeyError('missing')")
    assert not result.ok and result.error_kind == "exception" and result.error.startswith("KeyError")


HOSTILE = {
    "infinite loop": ("while True:\n    pass", {"timeout_s": 2}, ("timeout", "cpu_limit")),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", {"timeout_s": 5}, ("exception", "timeout")),
    "50 GB allocation": ("block = bytearray(50 * 2**30)", {}, ("memory",)),
    "socket": ("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)", {}, ("exception",)),
    "kill parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", {}, ("exception",)),
    "print 1 GB": (
        "import sys\nfor _ in range(2**14):\n    sys.stdout.write('x' * 2**16)",
        {},
        ("output_limit",),
    ),
    "os._exit": (
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nimport os\nos._exit(3)",
        {},
        ("memory", "exited"),
    ),
    "SIGSEGV": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", {}, ("killed",)),
    "huge file": ("open('big', 'wb').write(b'x' * (128 << 20))", {}, ("file_size", "exception")),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_fails_cleanly(pool, sandbox_root, name):
    code, kw, kinds = HOSTILE[name]
    result = run(pool, code, **kw)
    assert not result.ok
    assert result.error_kind in kinds, (result.error_kind, result.error)
    assert result.error
    assert_nothing_left(pool, sandbox_root, result)


def test_writing_outside_the_working_directory_is_refused(pool, sandbox_root, tmp_path):
    target = tmp_path / "escaped.txt"
    result = run(pool, f"open({str(target)!r}, 'w').write('x')")
    assert not result.ok and result.error_kind == "exception"
    assert not target.exists()
    # Writing into the job's own directory (and its private /tmp) is fine, and gone afterwards.
    result = run(pool, "open('mine.txt', 'w').write('x')\nopen('/tmp/t.txt', 'w').write('y')\nresult = 1")
    assert result.ok, result.error
    assert_nothing_left(pool, sandbox_root, result)


def test_killing_the_pool_process_is_refused(pool):
    # Another uid's process, and (inside the job's PID namespace) not even one the job can name.
    result = run(pool, f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)")
    assert not result.ok and ("not permitted" in result.error or "No such process" in result.error)


def test_parallel_jobs_in_order(sandbox_root):
    with SandboxPool(workers=2, root=str(sandbox_root)) as pool:
        results = pool.map(PROGRAM, [{"code": f"result = {i} * 2"} for i in range(4)])
    assert [r.value for r in results] == [0, 2, 4, 6]


def test_limits_are_validated(pool):
    with pytest.raises(ValueError, match="timeout_s"):
        pool.run(PROGRAM, {"code": ""}, timeout_s=0)
    small = SandboxLimits(memory_bytes=2 << 30)
    assert not run(pool, "b = bytearray(3 * 2**30)", limits=small).ok


def test_hostile_chart_gives_failed_render_result_and_next_render_works():
    result = render(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nwhile True:\n    pass\n", "chart", timeout_s=2
    )
    assert not result.ok and "timeout" in result.error
    result = render("import os\nos._exit(0)\n", "chart")
    assert not result.ok and result.error
    assert render("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n", "chart").ok


def test_the_default_pool_runs_a_job():
    assert run_in_sandbox(PROGRAM, {"code": "result = 6 * 7"}).value == 42


def test_code_installed_under_tmp_stays_readable_and_read_only(tmp_path, monkeypatch):
    """The job's private /tmp must not hide an installation that lives under /tmp (a checkout or a
    virtual environment there), and must not make it writable."""
    if not str(tmp_path.resolve()).startswith("/tmp/"):
        pytest.skip("the test's temporary directory is not under /tmp")
    package = tmp_path / "site"
    package.mkdir()
    (package / "data.txt").write_text("visible")
    (package / "probe_entry.py").write_text(
        "import os\n"
        "HERE = os.path.dirname(os.path.abspath(__file__))\n"
        "def read(payload):\n"
        "    with open(os.path.join(HERE, 'data.txt')) as f:\n"
        "        text = f.read()\n"
        "    try:\n"
        "        with open(os.path.join(HERE, 'written.txt'), 'w') as f:\n"
        "            f.write('x')\n"
        "        wrote = True\n"
        "    except OSError:\n"
        "        wrote = False\n"
        "    return {'text': text, 'wrote': wrote}\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(package), os.environ.get("PYTHONPATH", "")]))
    with SandboxPool(workers=1, root=str(tmp_path / "jobs")) as pool:
        result = pool.run("probe_entry:read", {})
    assert result.ok, result.error
    assert result.value == {"text": "visible", "wrote": False}
    assert not (package / "written.txt").exists()


def test_the_worker_keeps_no_descriptors_of_finished_jobs(sandbox_root):
    """Each job's pipes are closed: a worker that kept them ran out of descriptors after ~330 jobs.
    Counted from the host, in the worker and in the template it forks jobs from (a job's own idea of
    its parent is a process of its PID namespace)."""

    def descriptors(pool) -> int:
        assert run(pool, "result = 0").value == 0
        time.sleep(0.3)  # let the worker settle (it asks for the next job's processes after replying)
        worker = pool._idle.queue[0].process.pid
        family = [worker] + [
            int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _parent(int(pid)) == worker
        ]
        return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in family if os.path.isdir(f"/proc/{pid}/fd"))

    with SandboxPool(workers=1, root=str(sandbox_root)) as pool:
        before = descriptors(pool)
        for i in range(40):
            assert run(pool, f"result = {i}").value == i
        after = descriptors(pool)
    assert after <= before + 4, f"the worker went from {before} to {after} open descriptors in 41 jobs"


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            return int(next(line for line in status if line.startswith("PPid:")).split()[1])
    except (OSError, StopIteration, ValueError):
        return None


def test_a_pool_grows_to_the_workers_asked_and_never_shrinks(sandbox_root):
    with SandboxPool(workers=1, root=str(sandbox_root)) as grown:
        assert grown._idle.qsize() == 1
        grown.grow_to(3)
        assert grown.size == 3 and grown._idle.qsize() == 3  # three slots: three jobs at once
        grown.grow_to(2)
        assert grown.size == 3 and grown._idle.qsize() == 3
        results = grown.map(
            "vsdpo.render.sandbox.child:exec_program", [{"code": f"result = {n}"} for n in range(3)]
        )
        assert [r.value for r in results] == [0, 1, 2]
    with pytest.raises(ValueError, match="workers: expected >= 1, got 0"):
        SandboxPool(workers=1).grow_to(0)


def test_a_render_pool_gives_each_of_its_threads_a_sandbox_worker(monkeypatch):
    from vsdpo.feedback.rendering import RenderPool
    from vsdpo.render.sandbox import pool as sandbox_pool

    fresh = SandboxPool(workers=1)
    monkeypatch.setattr(sandbox_pool, "_default_pool", fresh)
    renderers = RenderPool(3, 10.0)
    try:
        assert sandbox_pool.default_pool() is fresh and fresh.size == 3
    finally:
        renderers.shutdown()
        fresh.shutdown()
