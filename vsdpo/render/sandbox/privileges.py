"""What a job gives up before its program runs: root, every capability, new privileges, and syscalls.

- ``drop_to(uid)``: the capability bounding set emptied, no supplementary groups, real, effective and
  saved uid and gid all ``uid`` (a fresh one per job, far from any real account), so no capability is
  left in any set (CapEff, CapPrm, CapInh, CapAmb, CapBnd all 0);
- ``forbid_new_privileges()``: ``no_new_privs``, so no setuid binary or file capability gives any back;
- ``syscall_filter()``: a seccomp filter, built once per worker with libseccomp (``pyseccomp``) and
  loaded by each job, that refuses what no chart or deck needs and sandbox escapes start from:
  handles to inodes (``open_by_handle_at``), new namespaces and mounts, tracing other processes,
  SysV and POSIX message IPC, kernel keyrings, BPF, perf, io_uring, userfaultfd, modules, reboot, and
  terminal input injection. Forbidden calls fail with EPERM; ``clone3`` answers ENOSYS so that libc
  falls back to ``clone``, whose flags the filter can read. ``memfd_create`` and ``memfd_secret``
  answer ENOMEM: a memory file is shared memory that no limit of the job counts (not the address
  space while it is not mapped, not the tmpfs quota), so 86 of them once held 5.2 GiB of the host's
  memory; without them, a job's shared memory lives on its own quota-bound tmpfs (``/dev/shm``). No
  renderer needs them (the browser is not under this filter), and a program that asks gets "out of
  memory", which the job reports as error kind "memory".
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")

DENIED_SYSCALLS = (
    # files by handle, past every path check
    "open_by_handle_at",
    "name_to_handle_at",
    # namespaces, mounts, roots
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    # other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # SysV and POSIX message IPC
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    # kernel facilities
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "fanotify_init",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "syslog",
    "vhangup",
    "sethostname",
    "setdomainname",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "uselib",
    "nfsservctl",
)
# Memory files: shared memory outside every limit of the job (see the module's docstring).
MEMORY_FILE_SYSCALLS = ("memfd_create", "memfd_secret")
# clone() flags that make a namespace.
NAMESPACE_FLAGS = (
    0x00000080,  # CLONE_NEWTIME
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
TIOCSTI = 0x5412  # push bytes into a terminal's input
TIOCLINUX = 0x541C

_libc = ctypes.CDLL(None, use_errno=True)


def drop_to(uid: int) -> None:
    """Become ``uid`` (gid ``uid``) with no capability in any set. Must be called as root."""
    with open("/proc/sys/kernel/cap_last_cap") as last:
        for capability in range(int(last.read()) + 1):
            _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # without keep-caps, this clears the permitted and effective sets


def capabilities() -> dict[str, int]:
    """The capability sets of this process, from /proc/self/status."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in CAPABILITY_FIELDS:
                found[name] = int(value.strip(), 16)
    return found


def forbid_new_privileges() -> bool:
    return (
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
        and _libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    )


def die_with_parent(signal_number: int) -> None:
    """Cleared whenever credentials change, so set again after ``drop_to``."""
    _libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)


def syscall_filter() -> Any | None:
    """The job's seccomp filter (a pyseccomp SyscallFilter, loaded later); None where libseccomp is
    missing, which the job reports as a missing layer."""
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError, OSError):
        return None
    refused = seccomp.ERRNO(errno.EPERM)
    syscalls = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            syscalls.add_rule(refused, name)
        except (OSError, ValueError):
            continue  # a syscall this kernel or libseccomp does not know of cannot be made either
    syscalls.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for name in MEMORY_FILE_SYSCALLS:
        try:
            syscalls.add_rule(seccomp.ERRNO(errno.ENOMEM), name)
        except (OSError, ValueError):
            continue
    for flag in NAMESPACE_FLAGS:
        syscalls.add_rule(refused, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    for request in (TIOCSTI, TIOCLINUX):
        syscalls.add_rule(refused, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    return syscalls
