"""The job's view of the filesystem, made in the job's own mount namespace before its job arrives.

- Every mount of the host is read-only and nosuid (one recursive ``mount_setattr``): a job writes
  nowhere on the host, whatever the permissions of a file say.
- One tmpfs, as large as the job's disk quota, backs every folder anyone may write to: ``/tmp`` (the
  job's working directory), ``/var/tmp``, ``/dev/shm`` and ``/run`` (with ``/run/lock``; the rest of
  ``/run``, sockets included, is hidden). Nothing written there outlives the job's processes.
- The Python installation the job imports from stays reachable: where it lies under a folder a
  fresh uid cannot enter (``/root``, mode 700) or under one of the covered folders, an empty
  read-only tmpfs covers that folder and only the installation shows through it, read-only.
- ``/proc`` is mounted afresh by a process inside the job's PID namespace (``mount_proc``), so that
  it lists the job's processes only.
- No pseudo-terminal of the host is reachable (``_no_host_ptys``): an empty read-only tmpfs covers
  ``/dev/pts``, and ``/dev/ptmx`` is a file nobody may open. Opening the host's ``/dev/ptmx`` would
  allocate a pty in the host's devpts instance, and ``/dev/pts`` would list the host's terminals.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import stat
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
SYS_MOUNT_SETATTR = 442  # the same number on every architecture that has it
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
