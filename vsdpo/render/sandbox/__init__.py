"""Run untrusted programs in a pool of pre-warmed workers that fork one sandboxed child per job.

    from vsdpo.render.sandbox import run_in_sandbox
    result = run_in_sandbox("vsdpo.render.chart.child:render_chart_job", {"code": code}, timeout_s=20)
    result.ok, result.value, result.error, result.error_kind

- ``pool``: the caller's side (``SandboxPool``, ``run_in_sandbox``, ``run_many``, limits, results);
- ``worker``: the pre-warmed process, ``python -m vsdpo.render.sandbox.worker MODULE...``, and its
  template, from which every job's processes are forked clean of any earlier job;
- ``child``: what the forked processes of a job do before and around the untrusted call;
- ``filesystem``: the job's view of the filesystem (an allow-listed, read-only root: the system,
  the Python installation and the package's code; a private tmpfs; no task data);
- ``privileges``: the uid, capabilities, no_new_privs and seccomp filter a job runs with;
- ``channel``: the messages between a pool and its workers, and the frame of a job's reply.
"""

from __future__ import annotations

from vsdpo.render.sandbox.pool import (
    DEFAULT_PRELOAD,
    SandboxLimits,
    SandboxPool,
    SandboxResult,
    default_pool,
    run_in_sandbox,
    run_many,
)

__all__ = [
    "DEFAULT_PRELOAD",
    "SandboxLimits",
    "SandboxPool",
    "SandboxResult",
    "default_pool",
    "run_in_sandbox",
    "run_many",
]
