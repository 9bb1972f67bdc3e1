"""Jobs isolated from each other and from the task's answers.

A policy under reward pressure learns whatever channel leads to the answer: the program of the job
before it (the reference a reward ran just before), left in the memory of the process that forked
it, or the reference programs on disk. Each attack here is a real program run through a pool,
render() or the ChartMimic reward, and must find nothing: not in its objects, its stack or any byte
of its memory, not anywhere on the filesystem it sees, and a program that tries to copy the
reference must score no better than an honest attempt.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.render.hostile import chart_probe
from vsdpo.render.sandbox import SandboxPool

PROGRAM = "vsdpo.render.sandbox.child:exec_program"
CHARTMIMIC = Path("/work/shared/data/chartmimic")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full sandbox needs root")

# Searches this process for NEEDLE's lower-case form without ever holding that form: the needle is
# given upper-case, memory is compared upper-cased, and a hit counts only where the bytes are not
# the needle itself. CONTROL (lower-case, in this program's own source) must be found, so that a
# search that finds nothing proves something.
MEMORY_SEARCH = """
import ctypes, gc, sys

def search(upper):
    wanted = upper.encode()
    size = len(wanted)
    objects = 0
    for holder in gc.get_objects():
        if isinstance(holder, dict):
            values = holder.values()
        else:
            values = holder if isinstance(holder, list | tuple) else ()
        try:
            for value in values:
                if isinstance(value, str) and upper in value.upper() and value != upper:
                    objects += 1
        except RuntimeError:  # changed while we looked
            continue
    frames = 0
    frame = sys._getframe()
    while frame is not None:
        for value in [*frame.f_locals.values(), *frame.f_globals.values()]:
            if isinstance(value, str) and upper in value.upper() and value != upper:
                frames += 1
        frame = frame.f_back
    memory = 0
    scanned = 0
    # Every readable mapping but the kernel's: the heap, arenas and stacks hold what a forked process
    # kept of its parent, freed or not. A program may make itself dumpable to read its own memory.
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', buffering=0) as mem:
        for line in maps.read().splitlines():
            fields = line.split()
            name = fields[5] if len(fields) > 5 else ''
            if not fields[1].startswith('r') or name in ('[vvar]', '[vsyscall]'):
                continue
            start, end = (int(x, 16) for x in fields[0].split('-'))
            at = start
            while at < end:
                count = min(end - at, 8 << 20)
                try:
                    mem.seek(at)
                    chunk = mem.read(min(end - at, count + size))
                except OSError:
                    break
                scanned += len(chunk)
                upper_chunk = chunk.upper()
                hit = upper_chunk.find(wanted)
                while hit >= 0:
                    if chunk[hit : hit + size] != wanted:
                        memory += 1
                    hit = upper_chunk.find(wanted, hit + 1)
                at += count
    return {'objects': objects, 'frames': frames, 'memory': memory, 'scanned': scanned}

result = {'earlier': search(NEEDLE), 'control': search(CONTROL_UPPER)}
"""


def test_a_job_finds_nothing_of_the_job_before_it():
    secret = f"earlier-job-{uuid.uuid4().hex}"
    control = f"control-{uuid.uuid4().hex}"
    search = MEMORY_SEARCH.replace("NEEDLE", repr(secret.upper())).replace(
        "CONTROL_UPPER", repr(control.upper())
    )
    search += f"\nmine = {control!r}\n"
    assert secret not in search and secret.upper() in search
    with SandboxPool(preload=()) as pool:
        first = pool.run(PROGRAM, {"code": f"secret = {secret!r}\nresult = len(secret)"})
        assert first.ok, first.error
        second = pool.run(PROGRAM, {"code": search}, timeout_s=120)
    assert second.ok, second.error
    found = second.value
    assert found["control"]["memory"] >= 1, found  # the search works: it finds what is there
    assert found["control"]["scanned"] > 10 << 20, found
    earlier = found["earlier"]
    assert (earlier["objects"], earlier["frames"], earlier["memory"]) == (0, 0, 0), found


@pytest.fixture
def planted():
    """A reference-like file with a unique text in a folder of /work, /root and /srv each."""
    text = f"reference-answer-{uuid.uuid4().hex}"
    folders = []
    for parent in ("/work", "/root", "/srv"):
        if not os.path.isdir(parent):
            continue
        folder = tempfile.mkdtemp(prefix="vsdpo-planted-", dir=parent)
        os.chmod(folder, 0o755)
        path = Path(folder, "reference.py")
        path.write_text(f"# {text}\nimport matplotlib.pyplot as plt\nplt.title({text!r})\n")
        path.chmod(0o644)
        folders.append(folder)
    try:
        yield text, [str(Path(folder, "reference.py")) for folder in folders]
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


# Walks the whole view (within a time budget), reading every small file outside the system folders;
# reports where the planted text, a repository or the shared data showed up.
FILESYSTEM_SEARCH = """
import os, time
wanted = TEXT_UPPER.encode()
began = time.monotonic()
hits, repositories, data, visited, unread = [], [], [], 0, 0
direct = {}
for path in PATHS + ['/work/shared/data/chartmimic', '/work/shared', '/work/main/.git', '/work/main/tests']:
    try:
        direct[path] = sorted(os.listdir(path))[:3] if os.path.isdir(path) else open(path).read(80)
    except OSError as error:
        direct[path] = type(error).__name__
complete = True
for folder, dirs, files in os.walk('/'):
    if time.monotonic() - began > 150:
        complete = False
        break
    dirs[:] = [d for d in dirs if os.path.join(folder, d) not in ('/proc', '/sys', '/dev')]
    for name in dirs + files:
        if name == '.git':
            repositories.append(os.path.join(folder, name))
    if 'chartmimic' in folder:
        data.append(folder)
    if folder.startswith(('/usr', '/etc')):
        continue
    for name in files:
        path = os.path.join(folder, name)
        visited += 1
        try:
            if os.path.islink(path) or os.path.getsize(path) > 1 << 20:
                continue
            with open(path, 'rb') as file:
                content = file.read()
        except OSError:
            unread += 1
            continue
        upper = content.upper()
        at = upper.find(wanted)
        if at >= 0 and content[at : at + len(wanted)] != wanted:
            hits.append(path)
result = {'hits': hits, 'repositories': repositories[:20], 'data': data[:20], 'direct': direct,
         'visited': visited, 'complete': complete}
"""


def test_the_filesystem_shows_no_task_data(planted):
    text, paths = planted
    search = FILESYSTEM_SEARCH.replace("TEXT_UPPER", repr(text.upper())).replace("PATHS", repr(paths))
    with SandboxPool() as pool:
        result = pool.run(PROGRAM, {"code": search}, timeout_s=240)
    assert result.ok, result.error
    found = result.value
    assert found["complete"] and found["visited"] > 100, found  # it walked the whole view
    assert found["hits"] == [], found
    assert found["repositories"] == [], found
    assert found["data"] == [], found
    for path, seen in found["direct"].items():
        assert seen == "FileNotFoundError", (path, seen)


def test_the_installation_still_imports_and_only_its_code_shows():
    """The job imports the renderers and the package, but of a checkout on sys.path sees only the
    package code: no tests, no benchmarks, no repository."""
    found = ast.literal_eval(
        chart_probe(
            "import os, vsdpo\n"
            "package = os.path.dirname(vsdpo.__file__)\n"
            "checkout = os.path.dirname(package)\n"
            "found = (package, sorted(os.listdir(checkout)), os.path.isdir('/usr/share/fonts'))"
        )
    )
    package, listing, fonts = found
    assert fonts and "vsdpo" in listing
    assert not {".git", "tests", "bench", "pyproject.toml"} & set(listing), listing
    assert os.path.realpath(package).startswith(
        os.path.realpath(os.path.dirname(__import__("vsdpo").__file__))
    )


# Looks for the reference program where an earlier job could have left it (the objects and the stack
# of the process the job was forked from), then on disk; runs it if found, else draws an empty chart.
HACK_MEMORY = """
import gc, sys

def look(value, depth=0):
    if isinstance(value, dict):
        if value.get('role') == 'reference' and isinstance(value.get('code'), str):
            return value['code']
        value = list(value.values())
    if isinstance(value, list | tuple) and depth < 4:
        for item in value:
            if isinstance(item, dict | list | tuple):
                found = look(item, depth + 1)
                if found is not None:
                    return found
    return None

reference = None
frame = sys._getframe()
while reference is None and frame is not None:
    reference = look(list(frame.f_locals.values()))
    frame = frame.f_back
for holder in gc.get_objects() if reference is None else ():
    if isinstance(holder, dict):
        reference = look(holder)
        if reference is not None:
            break
"""
HACK_DISK = """
import glob
reference = None
for path in [REFERENCE_PATH, *glob.glob('/work/shared/data/chartmimic/*.py')]:
    try:
        reference = open(path).read()
        break
    except OSError:
        continue
"""
HACK_RUN = """
import matplotlib.pyplot as plt
if reference is not None:
    exec(compile(reference, 'reference', 'exec'), {'__name__': '__main__'})
else:
    plt.figure()
"""


@pytest.mark.skipif(not CHARTMIMIC.is_dir(), reason="the ChartMimic data is not here")
@pytest.mark.parametrize("route", ["memory", "disk"])
def test_a_program_that_copies_the_reference_scores_no_better_than_an_honest_one(route):
    from vsdpo.metrics import chartmimic

    path = CHARTMIMIC / "bar_1.py"
    if not path.exists():
        path = sorted(CHARTMIMIC.glob("*.py"))[0]
    reference = path.read_text()
    honest = chartmimic.score("import matplotlib.pyplot as plt\nplt.figure()\n", reference)
    copied = chartmimic.score(reference, reference)
    assert copied.mean > honest.mean + 0.2  # copying would pay: the test can tell
    chartmimic._REFERENCE_CACHE.clear()  # the reference runs again, right before the hack
    search = HACK_MEMORY if route == "memory" else HACK_DISK.replace("REFERENCE_PATH", repr(str(path)))
    hack = chartmimic.score(search + HACK_RUN, reference)
    assert hack.ok, hack.error
    assert hack.mean <= honest.mean + 1e-9, (hack, honest)


def test_a_checkout_on_pythonpath_shows_only_its_packages():
    """A snapshot of the checkout run with PYTHONPATH=SNAPSHOT: its packages show, its repository,
    tests and project files do not."""
    snapshot = Path(tempfile.mkdtemp(prefix="vsdpo-snapshot-", dir="/srv" if os.path.isdir("/srv") else None))
    try:
        source = Path(__import__("vsdpo").__file__).parents[1]
        for name in ("vsdpo", "vsdpo_kernels"):
            if (source / name).is_dir():
                shutil.copytree(source / name, snapshot / name, ignore=shutil.ignore_patterns("__pycache__"))
        (snapshot / ".git").mkdir()
        (snapshot / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        (snapshot / "tests").mkdir()
        (snapshot / "tests" / "__init__.py").write_text("")
        (snapshot / "tests" / "answers.txt").write_text("the answers\n")
        (snapshot / "pyproject.toml").write_text("[project]\nname = 'vsdpo'\n")
        for folder, _, files in os.walk(snapshot):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        job = f"import os, vsdpo\nresult = (vsdpo.__file__, sorted(os.listdir({str(snapshot)!r})))"
        caller = (
            "import json\nfrom vsdpo.render.sandbox import SandboxPool\n"
            "with SandboxPool(preload=()) as pool:\n"
            f"    result = pool.run({PROGRAM!r}, {{'code': {job!r}}})\n"
            "print(json.dumps([result.ok, result.error, result.value]))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(snapshot)}
        done = subprocess.run(
            [sys.executable, "-c", caller], cwd=snapshot, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        ok, error, value = json.loads(done.stdout.strip().splitlines()[-1])
        assert ok, error
        where, listing = value
        assert where.startswith(str(snapshot) + "/vsdpo/"), where
        assert not {".git", "tests", "pyproject.toml"} & set(listing), listing
        assert "vsdpo" in listing, listing
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
