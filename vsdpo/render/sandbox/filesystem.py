"""The job's view of the filesystem, made in the job's own mount namespace before its job arrives.

Jobs of the pool (``isolate``) see an allow-list, nothing else: a fresh, read-only tmpfs becomes
their root (``pivot_root``), and only what the renderers need is bound into it, read-only
(``job_view``):

- the system's programs, libraries and configuration: ``/usr`` (with the ``/bin``, ``/sbin``,
  ``/lib*`` links to it), ``/etc``, the fontconfig cache and ``/sys/devices/system/cpu`` (how many
  processors there are), so that matplotlib, LibreOffice and poppler run as on the host;
- the Python installation the worker imports from (``python_paths``): its prefixes (the interpreter,
  the standard library, the virtual environment with its site-packages) and, of every other folder
  on ``sys.path``, the packages the worker imported from it and their distributions' other
  packages. A folder that is a source tree (a repository or a project, like the checkout an editable
  install points into, or a snapshot on PYTHONPATH) shows those packages only: no ``.git``, tests,
  benchmarks or data. A plain folder of modules on PYTHONPATH shows whole. Repositories (``.git``)
  inside anything shown are covered;
- a ``/dev`` of ``null``, ``zero``, ``full``, ``random`` and ``urandom`` only, with no terminal: an
  empty ``/dev/pts`` and a ``/dev/ptmx`` of mode 000, so no pseudo-terminal of the host is reachable
  (opening the host's ``/dev/ptmx`` would allocate one in the host's devpts instance);
- ``/proc``, mounted afresh for the job's PID namespace (the host's, read-only, where there is none);
- one tmpfs, as large as the job's disk quota, behind ``/tmp`` (the job's working directory),
  ``/var/tmp``, ``/dev/shm`` and ``/run`` (with ``/run/lock``). Nothing written there outlives the
  job's processes.

So task data (the reference programs of a benchmark), repositories, other checkouts, home folders
and whatever else lies on the host are not in the job's filesystem at all: not hidden by
permissions, absent. The host's root is detached from the job's mount namespace.

The browser's launcher (vsdpo.render.web.launcher) uses ``prepare``: every mount of the host
read-only and nosuid, the same private tmpfs, and the folders it names (the pages, the profile)
shown through; where a kept folder lies under a folder a fresh uid cannot enter (``/root``, mode
700) or under a covered place, an empty read-only tmpfs covers that folder and only the kept
folder shows through it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import os
import platform
import stat
import sys
import time

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
SYS_MOUNT_SETATTR = 442  # the same number on every architecture that has it
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
# What the renderers need of the system besides Python, shown read-only (links kept as links).
SYSTEM_PATHS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/var/cache/fontconfig",
    "/sys/devices/system/cpu",
)
DEVICES = ("null", "zero", "full", "random", "urandom")
# Marks of a source tree: of such a folder on sys.path, only its packages are shown.
SOURCE_TREE_MARKS = (".git", ".hg", ".svn", "pyproject.toml", "setup.py", "setup.cfg")
REPOSITORY_MARKS = (".git", ".hg", ".svn")
# The search for repositories inside shown Python folders stops after this long (a worker's start).
REPOSITORY_SEARCH_S = 5.0
# Where the job's root is built, in the job's mount namespace only (the host's /tmp is left alone).
STAGE = "/tmp"
# Folders that anyone may write to on a usual Linux host; each gets a private one backed by the job's tmpfs.
PRIVATE_PLACES = ("/tmp", "/var/tmp", "/dev/shm", "/run")
# Inodes of the private tmpfs: a job cannot spend the host's memory on millions of empty files.
MAX_INODES = 65536

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda text: text.encode() if text is not None else None
    if _libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {source or fstype} on {target}: {os.strerror(error)}")


def _read_only_host() -> None:
    """Every mount read-only and nosuid, in one call where the kernel has mount_setattr (5.12+)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    done = _libc.syscall(
        SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    if done == 0:
        return
    # Older kernels: remount each mount point, keeping its nodev/noexec.
    with open("/proc/self/mountinfo") as table:
        mounts = [line.split() for line in table]
    for fields in mounts:
        target = fields[4].encode().decode("unicode_escape")
        options = set(fields[5].split(","))
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        flags |= (MS_NODEV if "nodev" in options else 0) | (MS_NOEXEC if "noexec" in options else 0)
        with contextlib.suppress(OSError):
            _mount(None, target, None, flags)


def installation_paths() -> list[str]:
    """Folders the job imports from: the interpreter's prefixes, sys.path and this package."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *(p for p in sys.path if p)}
    spec = importlib.util.find_spec("vsdpo")
    if spec is not None and spec.submodule_search_locations:
        paths.update(spec.submodule_search_locations)
    real = {os.path.realpath(path) for path in paths if os.path.isdir(path)}
    # A folder that holds a private place (a working directory of /tmp or /) would bring the host's back.
    places = [os.path.realpath(place) + "/" for place in PRIVATE_PLACES]
    real = sorted(p for p in real if not any(place.startswith(p.rstrip("/") + "/") for place in places))
    # A folder inside another kept folder comes along with it.
    return [p for p in real if not any(p != q and p.startswith(q + "/") for q in real)]


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _is_source_tree(folder: str) -> bool:
    """A repository or a project folder, or a folder inside a repository."""
    if any(os.path.lexists(os.path.join(folder, mark)) for mark in SOURCE_TREE_MARKS):
        return True
    parent = os.path.dirname(folder)
    while parent != folder:
        if any(os.path.lexists(os.path.join(parent, mark)) for mark in REPOSITORY_MARKS):
            return True
        folder, parent = parent, os.path.dirname(parent)
    return False


def _locations(module) -> list[str]:
    """Where a top-level module lives: its package folders, or its file."""
    paths = getattr(module, "__path__", None)
    if paths is not None:
        try:
            return [os.path.realpath(p) for p in paths if isinstance(p, str) and os.path.isdir(p)]
        except TypeError:
            return []
    where = getattr(module, "__file__", None)
    return [os.path.realpath(where)] if isinstance(where, str) and os.path.isfile(where) else []


def _siblings(names: set[str]) -> set[str]:
    """The top-level names of the distributions that provide ``names`` (``vsdpo`` brings
    ``vsdpo_kernels``)."""
    try:
        import importlib.metadata

        provided = importlib.metadata.packages_distributions()
    except Exception:  # noqa: BLE001 - broken metadata only loses the siblings
        return set()
    distributions = {dist for name in names for dist in provided.get(name, ())}
    return {name for name, dists in provided.items() if distributions & set(dists)}


def python_paths() -> list[str]:
    """The folders and files of the Python installation that jobs import from (see the module's
    docstring): the interpreter's prefixes, whole folders of sys.path outside source trees, and the
    packages the worker imported (with their distributions' other packages) wherever they lie."""
    prefixes = {
        os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    # A prefix that holds a private place (``/``) would show the host; its parts come from sys.path.
    places = [os.path.realpath(place) for place in PRIVATE_PLACES]
    shown = {p for p in prefixes if os.path.isdir(p) and not any(_within(q, p) for q in places)}
    shown.update(p for p in SYSTEM_PATHS if os.path.isdir(p) and not os.path.islink(p))
    trees: set[str] = set()
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if not real or any(_within(real, p) for p in shown):
            continue
        if os.path.isfile(real):  # a zip archive of modules
            shown.add(real)
        elif os.path.isdir(real):
            if _is_source_tree(real) or any(_within(q, real) for q in places):
                trees.add(real)
            else:
                shown.add(real)
    imported = {}
    for name, module in list(sys.modules.items()):
        if "." not in name and name != "__main__" and module is not None:
            imported[name] = _locations(module)
    outside = {name for name, where in imported.items() if any(not _within_any(w, shown) for w in where)}
    for name in _siblings(outside) - set(imported):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            imported[name] = [
                os.path.realpath(p) for p in spec.submodule_search_locations if os.path.isdir(p)
            ]
        elif spec is not None and isinstance(spec.origin, str) and os.path.isfile(spec.origin):
            imported[name] = [os.path.realpath(spec.origin)]
    code = {w for where in imported.values() for w in where if not _within_any(w, shown)}
    # A module file directly in a source tree shows alone; a package folder shows whole.
    result = sorted(shown | code)
    # A folder inside another shown folder comes along with it.
    return [p for p in result if not any(p != q and _within(p, q) for q in result)]


def _within_any(path: str, folders) -> bool:
    return any(_within(path, folder) for folder in folders)


def _repositories(folders: list[str], prefixes: set[str], budget_s: float = REPOSITORY_SEARCH_S) -> list[str]:
    """Repository folders (``.git``, ``.hg``, ``.svn``) inside ``folders``, searched within a time
    budget. The system's folders are not searched (what Debian installs holds none), nor all of an
    installation prefix: installers put repositories at its top or under its ``src`` (``pip install
    -e git+...``), never among installed packages."""
    found: list[str] = []
    stop = time.monotonic() + budget_s
    for top in folders:
        if os.path.isfile(top) or _within_any(top, ("/usr", "/sys", "/etc")):
            if os.path.isdir(top):
                found.extend(
                    os.path.join(top, m) for m in REPOSITORY_MARKS if os.path.lexists(os.path.join(top, m))
                )
            continue
        if top in prefixes:
            candidates = [top]
            with contextlib.suppress(OSError):
                candidates += [entry.path for entry in os.scandir(os.path.join(top, "src")) if entry.is_dir()]
            for folder in candidates:
                found.extend(
                    os.path.join(folder, m)
                    for m in REPOSITORY_MARKS
                    if os.path.lexists(os.path.join(folder, m))
                )
            continue
        for folder, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                if name in REPOSITORY_MARKS:
                    found.append(os.path.join(folder, name))
            dirs[:] = [d for d in dirs if d not in REPOSITORY_MARKS and d != "__pycache__"]
            if time.monotonic() > stop:
                return found
    return found


@functools.cache
def job_view() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(paths shown read-only, repositories covered inside them) of a pool job's filesystem.

    Computed once per worker, after its imports, so that every job of the worker gets the same view
    without paying for the search.
    """
    shown = [p for p in SYSTEM_PATHS if os.path.lexists(p)]
    python = [p for p in python_paths() if not _within_any(p, [q for q in shown if not os.path.islink(q)])]
    shown += python
    prefixes = {
        os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    covered = _repositories([p for p in shown if not os.path.islink(p)], prefixes)
    return tuple(shown), tuple(covered)


def _set_read_only(path: str, nodev: bool = True) -> None:
    """The mount at ``path`` and every mount below it read-only and nosuid (and nodev)."""
    flags = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | (MOUNT_ATTR_NODEV if nodev else 0)
    attr = _MountAttr(flags, 0, 0, 0)
    done = _libc.syscall(
        SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    if done != 0:  # older kernels: the mount itself only
        extra = MS_NODEV if nodev else 0
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | extra)


def _bind(source: str, target: str, *, directory: bool, nodev: bool = True) -> None:
    """``source`` bound at ``target`` (made first, as a folder or an empty file), read-only."""
    if directory:
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    _mount(source, target, None, MS_BIND | MS_REC)
    _set_read_only(target, nodev=nodev)


def _pivot_root(root: str) -> None:
    """Make ``root`` (a mount point) this mount namespace's root and detach the old one."""
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(0, f"pivot_root: no syscall number known for {platform.machine()}")
    os.chdir(root)
    if _libc.syscall(number, b".", b".") != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"pivot_root to {root}: {os.strerror(error)}")
    # The old root now lies over the new one at "/": detached, it is unreachable.
    if _libc.umount2(b".", MNT_DETACH) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"detaching the host's root: {os.strerror(error)}")
    os.chdir("/")


def isolate(
    quota_bytes: int, *, fresh_proc: bool, view: tuple[tuple[str, ...], tuple[str, ...]] | None = None
) -> None:
    """Give this freshly unshared mount namespace the job's allow-listed root (the module's
    docstring): ``view`` (default ``job_view()``) shown read-only, a tmpfs of ``quota_bytes`` behind
    the private places, and ``/proc`` mounted afresh when ``fresh_proc`` (the caller is the first
    process of a new PID namespace), else the host's, read-only."""
    shown, covered = job_view() if view is None else view
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    places = tuple(os.path.realpath(p) for p in PRIVATE_PLACES)
    binds: list[tuple[str, str]] = []  # (target in the new root, source on the host)
    links: dict[str, str] = {}
    for path in shown:
        absolute = os.path.abspath(path)
        if os.path.islink(absolute) and os.path.dirname(absolute) == "/":
            links[absolute] = os.readlink(absolute)
            continue
        real = os.path.realpath(absolute)
        if not os.path.exists(real):
            continue
        binds.append((real, real))
        if absolute != real:
            binds.append((absolute, real))
    sources = {source for _, source in binds} | {
        f"/dev/{name}" for name in DEVICES if os.path.exists(f"/dev/{name}")
    }
    if not fresh_proc:
        sources.add("/proc")
    # Opened (and told apart) before anything is covered: a source under the host's /tmp is still there.
    handles = {source: os.open(source, os.O_PATH | os.O_CLOEXEC) for source in sources}
    folders = {source for source in sources if os.path.isdir(source)}
    try:
        _mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=16384,mode=0755")
        root = STAGE
        later, bound = [], []
        for target, source in sorted(binds):
            if _within_any(target, bound):
                continue  # already shown with a folder above it
            bound.append(target)
            if _within_any(target, places):
                later.append((target, source))  # shown through the private tmpfs, made below
                continue
            _bind(f"/proc/self/fd/{handles[source]}", root + target, directory=source in folders)
        for link, destination in links.items():
            os.symlink(destination, root + link)
        _devices(root, handles)
        os.makedirs(root + "/proc", mode=0o555, exist_ok=True)
        if fresh_proc:
            _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        else:
            _mount(f"/proc/self/fd/{handles['/proc']}", root + "/proc", None, MS_BIND | MS_REC)
            _set_read_only(root + "/proc")
        _private_places_in(root, places, quota_bytes)
        for target, source in later:
            _bind(f"/proc/self/fd/{handles[source]}", root + target, directory=source in folders)
        empty = root + "/dev/.empty"  # what a repository's .git file (a work tree's) shows
        for repository in covered:
            target = root + repository
            if os.path.isdir(target):
                _mount(
                    "tmpfs",
                    target,
                    "tmpfs",
                    MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                    "size=4k,nr_inodes=2,mode=0755",
                )
            elif os.path.lexists(target):
                if not os.path.exists(empty):
                    os.close(os.open(empty, os.O_CREAT | os.O_WRONLY, 0))
                _mount(empty, target, None, MS_BIND)
                _set_read_only(target)
        _mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        _pivot_root(root)
    finally:
        for handle in handles.values():
            os.close(handle)


def _devices(root: str, handles: dict[str, int]) -> None:
    """``/dev`` of the new root: the harmless devices, links to this process's descriptors, an empty
    ``pts`` and a ``ptmx`` nobody may open (see ``_no_host_ptys``)."""
    dev = root + "/dev"
    os.makedirs(dev, mode=0o755, exist_ok=True)
    for name in DEVICES:
        source = f"/dev/{name}"
        if source in handles:
            _bind(f"/proc/self/fd/{handles[source]}", f"{dev}/{name}", directory=False, nodev=False)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts", 0o755)
    os.mkdir(f"{dev}/shm", 0o1777)
    os.close(os.open(f"{dev}/ptmx", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0))
    os.chmod(f"{dev}/ptmx", 0)


def _private_places_in(root: str, places: tuple[str, ...], quota_bytes: int) -> None:
    """One tmpfs of ``quota_bytes`` behind every private place of the new root; its own root (where
    the places are staged) is left unreachable, under the job's ``/tmp``."""
    quota = root + "/tmp"
    os.makedirs(quota, mode=0o755, exist_ok=True)
    _mount(
        "tmpfs", quota, "tmpfs", MS_NOSUID | MS_NODEV, f"size={quota_bytes},nr_inodes={MAX_INODES},mode=0755"
    )
    staged = {place: f"{quota}/{place.strip('/').replace('/', '-')}" for place in places}
    for place, inside in staged.items():
        mode = 0o755 if place == "/run" else 0o1777
        os.mkdir(inside, mode)
        os.chmod(inside, mode)  # past the umask
    if "/run" in staged:
        os.mkdir(staged["/run"] + "/lock", 0o1777)
        os.chmod(staged["/run"] + "/lock", 0o1777)
        os.symlink("/dev/shm", staged["/run"] + "/shm")
    # /tmp last: its bind covers the tmpfs root, where the other places were staged.
    for place in sorted(staged, key=lambda p: p == "/tmp"):
        os.makedirs(root + place, mode=0o755, exist_ok=True)
        _mount(staged[place], root + place, None, MS_BIND)


def _veiled_ancestor(path: str, covered: tuple[str, ...]) -> str | None:
    """The outermost folder above ``path`` that hides it from a fresh uid: a covered place or a
    folder others may not enter; None when nothing does."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        folder = "/" + "/".join(parts[:depth])
        if folder in covered:
            return folder
        if folder != path and not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def prepare(quota_bytes: int, keep: list[str] | None = None, writable: list[str] = ()) -> None:
    """Build the job's view (see the module's docstring) in the current, freshly unshared mount namespace.

    ``keep``: folders that must stay reachable, read-only (default: ``installation_paths()``);
    ``writable``: folders that stay reachable and writable (the browser's profile).
    """
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    covered = tuple(os.path.realpath(p) for p in PRIVATE_PLACES if os.path.isdir(p))
    keep = installation_paths() if keep is None else keep
    veils: dict[str, list[str]] = {}
    for path in [*keep, *writable]:
        folder = _veiled_ancestor(path, covered)
        if folder is not None:
            veils.setdefault(folder, []).append(path)
        elif path in writable:  # in plain sight, but read-only like the rest: bound over itself, writable
            veils.setdefault(path, []).append(path)
    handles = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for paths in veils.values() for path in paths}
    try:
        _read_only_host()
        for folder, paths in veils.items():
            if folder not in covered and paths != [folder]:
                _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        _private_places(covered, quota_bytes)
        _no_host_ptys()
        for folder, paths in veils.items():
            for path in paths:
                os.makedirs(path, mode=0o755, exist_ok=True)
                _mount(f"/proc/self/fd/{handles[path]}", path, None, MS_BIND | MS_REC)
                read_only = 0 if path in writable else MS_RDONLY
                _mount(None, path, None, MS_REMOUNT | MS_BIND | read_only | MS_NOSUID | MS_NODEV)
            if folder not in covered and paths != [folder]:
                _mount(None, folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    finally:
        for handle in handles.values():
            os.close(handle)


def _no_host_ptys(pts: str = "/dev/pts", ptmx: str = "/dev/ptmx") -> None:
    """Hide the host's pseudo-terminals: an empty, read-only tmpfs over ``pts``, holding only a file
    ``ptmx`` of mode 000, which is also bound over ``ptmx`` (where that is a device node; a symbolic
    link ``ptmx -> pts/ptmx``, as containers have, leads to the same file).

    A private devpts instance would work too, but would let the job make terminals, and with them
    reach the kernel's tty line disciplines; no chart, deck or page needs a terminal, so none is
    given. The job's fresh uid has no capability, so it cannot open a file of mode 000.
    """
    if not os.path.isdir(pts):
        return  # no devpts on this host: there is nothing to reach
    _mount("tmpfs", pts, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=4,mode=0755")
    placeholder = os.path.join(pts, "ptmx")
    os.close(os.open(placeholder, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0))
    os.chmod(placeholder, 0)  # past the umask
    if os.path.lexists(ptmx) and not os.path.islink(ptmx):
        _mount(placeholder, ptmx, None, MS_BIND)
        _mount(None, ptmx, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount(None, pts, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755")


def _private_places(covered: tuple[str, ...], quota_bytes: int) -> None:
    """One tmpfs of ``quota_bytes`` behind every covered place; its own root is left unreachable."""
    _mount(
        "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={quota_bytes},nr_inodes={MAX_INODES},mode=0755"
    )
    staged = {place: "/tmp/" + place.strip("/").replace("/", "-") for place in covered}
    for place, inside in staged.items():
        os.mkdir(inside, 0o755 if place == "/run" else 0o1777)
        os.chmod(inside, 0o755 if place == "/run" else 0o1777)  # past the umask
    if "/run" in staged:
        os.mkdir(staged["/run"] + "/lock", 0o1777)
        os.chmod(staged["/run"] + "/lock", 0o1777)
        os.symlink("/dev/shm", staged["/run"] + "/shm")
    # /tmp last: its bind covers the tmpfs root, where the other places were staged.
    for place in sorted(staged, key=lambda p: p == "/tmp"):
        _mount(staged[place], place, None, MS_BIND)


def set_quota(quota_bytes: int) -> None:
    """Resize the job's tmpfs (made in standby with the default quota) to this job's quota."""
    _mount(None, "/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV, f"size={quota_bytes}")


def writable_proc() -> None:
    """The host's /proc writable again (as its own permissions allow): a process that makes user
    namespaces, as Chromium's sandbox does, writes its uid maps there."""
    _mount(None, "/proc", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_proc() -> None:
    """A /proc of the caller's PID namespace, over the host's."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
