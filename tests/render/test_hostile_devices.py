"""Hostile chart programs against the host's devices: no pseudo-terminal of the host is reachable.

Opening the host's ``/dev/ptmx`` would allocate a terminal in the host's devpts instance, and
``/dev/pts`` would list the terminals of the host's sessions. The job gets neither."""

from __future__ import annotations

import ast
import os

import pytest

from tests.render.hostile import chart_probe

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full sandbox needs root")

PTY_PROBE = """
import os
try:
    fd = os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY)
    opened = 'opened'
    os.close(fd)
except OSError as error:
    opened = type(error).__name__
found = (opened, sorted(os.listdir('/dev/pts')) if os.path.isdir('/dev/pts') else [])
"""


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="this host has no /dev/ptmx")
def test_no_host_pty_can_be_opened_or_listed():
    master, replica = os.openpty()  # a terminal of the host, while the job looks
    try:
        host_pty = os.path.basename(os.ttyname(replica))
        assert host_pty in os.listdir("/dev/pts")  # the caller does see it
        found = ast.literal_eval(chart_probe(PTY_PROBE))
    finally:
        os.close(master)
        os.close(replica)
    assert isinstance(found, tuple), found
    opened, listing = found
    assert opened == "PermissionError", found
    assert host_pty not in listing, found
    assert not [name for name in listing if name.isdigit()], found  # no terminal at all, host's or own
