"""Start Chromium for the web renderer with nothing a page could turn against the host.

Playwright runs ``python -m vsdpo.render.web.launcher ARGS...`` in place of the browser (through a
small script given as its executable_path). As root, the launcher

- moves into new network, mount and IPC namespaces: no interface but a loopback that is down, so no
  request of any kind (fetch, WebRTC's UDP, DNS) reaches any host, the caller's included;
- makes every mount read-only and nosuid, and covers /tmp, /var/tmp, /dev/shm and /run with one
  private tmpfs, through which only the browser's profile folder (writable) and the folder of pages
  (read-only) show (vsdpo.render.sandbox.filesystem);
- becomes an unprivileged uid of its own with no capabilities and no_new_privs,

then execs Chromium, whose own sandbox (user namespaces) works for it as for any user. Run by another
user, it maps that user's uid into a new user namespace to get the same namespaces.

Configuration comes in the environment: VSDPO_CHROMIUM (the browser), VSDPO_BROWSER_UID,
VSDPO_BROWSER_PAGES (the folder of pages) and VSDPO_BROWSER_ALLOW_WEAK. ``--probe`` prints, as
JSON, which layers this machine gives the browser, without starting it. A missing layer makes the
launcher exit 70 with one line on stderr, unless weak is allowed: then Chromium runs without it
(and with --no-sandbox where its own sandbox cannot start).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from vsdpo.render.sandbox import filesystem, privileges

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
LAYERS = ("network_namespace", "private_filesystem", "uid", "no_new_privs", "chromium_sandbox")
EXIT_REFUSED = 70
PR_SET_DUMPABLE = 4
PRIVATE_BYTES = 2 << 30  # the private tmpfs: Chromium's shared memory and scratch files

_libc = ctypes.CDLL(None, use_errno=True)


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def _user_data_dir(args: list[str]) -> str | None:
    for arg in args:
        if arg.startswith("--user-data-dir="):
            return os.path.realpath(arg.partition("=")[2])
    return None


def _chown_tree(root: str, uid: int) -> None:
    os.chown(root, uid, uid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, uid)


def _userns_works() -> bool:
    """Can this process make a user namespace and map its uid there (what Chromium's own sandbox
    needs)? Tried in a child."""
    pid = os.fork()
    if pid == 0:
        uid = os.getuid()
        _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # as the exec of Chromium will make it
        try:
            if _libc.unshare(CLONE_NEWUSER) != 0:
                os._exit(1)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def isolate(args: list[str]) -> tuple[set[str], dict[str, str]]:
    """Set up this process for Chromium (see the module's docstring); the layers got, and notes."""
    layers: set[str] = set()
    notes: dict[str, str] = {}
    uid = int(os.environ.get("VSDPO_BROWSER_UID") or 0)
    root = os.geteuid() == 0
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC
    if root:
        made = _libc.unshare(flags) == 0
    else:
        own_uid, own_gid = os.getuid(), os.getgid()
        made = _libc.unshare(CLONE_NEWUSER | flags) == 0
        if made:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{own_uid} {own_uid} 1")
            _write("/proc/self/gid_map", f"{own_gid} {own_gid} 1")
    if not made:
        notes["network_namespace"] = os.strerror(ctypes.get_errno())
    else:
        layers.add("network_namespace")
        profile = _user_data_dir(args)
        pages = os.environ.get("VSDPO_BROWSER_PAGES")
        keep = [os.path.realpath(pages)] if pages and os.path.isdir(pages) else []
        writable = [profile] if profile and os.path.isdir(profile) else []
        try:
            if root and uid and writable:
                _chown_tree(writable[0], uid)
            filesystem.prepare(PRIVATE_BYTES, keep=keep, writable=writable)
            filesystem.writable_proc()
            home = "/tmp/browser-home"
            os.makedirs(home, mode=0o700, exist_ok=True)
            if root and uid:
                os.chown(home, uid, uid)
            os.environ["HOME"] = home
            layers.add("private_filesystem")
        except OSError as error:
            notes["private_filesystem"] = str(error)
    if root and uid:
        privileges.drop_to(uid)
        layers.add("uid")
    elif not root:
        layers.add("uid")  # an ordinary user already
    # Cleared by the change of uid; kept across the exec: the browser dies with the driver.
    privileges.die_with_parent(signal.SIGKILL)
    if privileges.forbid_new_privileges():
        layers.add("no_new_privs")
    if _userns_works():
        layers.add("chromium_sandbox")
    else:
        notes["chromium_sandbox"] = "no user namespaces for an unprivileged user here"
    return layers, notes


def main(args: list[str]) -> None:
    probe = args[:1] == ["--probe"]
    layers, notes = isolate([] if probe else args)
    missing = [layer for layer in LAYERS if layer not in layers]
    if probe:
        print(json.dumps({"layers": sorted(layers), "missing": missing, "notes": notes}))
        sys.exit(0)
    if missing and os.environ.get("VSDPO_BROWSER_ALLOW_WEAK", "") in ("", "0"):
        print(
            f"vsdpo browser launcher: refusing to start Chromium without {', '.join(missing)}",
            file=sys.stderr,
        )
        sys.exit(EXIT_REFUSED)
    if "chromium_sandbox" not in layers:
        args = ["--no-sandbox", *args]
    chromium = os.environ.get("VSDPO_CHROMIUM", "/usr/bin/chromium")
    os.execv(chromium, [chromium, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
