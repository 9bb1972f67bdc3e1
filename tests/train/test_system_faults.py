"""A fault of the system is never trained on as the program's fault: classified from the real
renderer's results, retried once, then left out of rewards, advantages, distillation and credit."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.render.test_hostile_replies import FORGED_CHARTS, forge
from vsdpo.feedback.rewards import VisualReward
from vsdpo.render import RenderResult, render, render_retrying
from vsdpo.tasks import Task
from vsdpo.train.batch import GroupBatch, credit_matrix
from vsdpo.train.config import load_config
from vsdpo.train.generate import Rollout
from vsdpo.train.scoring import RenderPool, group_advantages, score_rollouts

SLOW = "import time\ntime.sleep(4)\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\n"


def _workers() -> list[int]:
    """This process's sandbox worker processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
        if parent == os.getpid() and "vsdpo.render.sandbox.worker" in command:
            found.append(int(entry.name))
    return found


def _killed_mid_job() -> RenderResult:
    """The real renderer, its worker killed while the job runs."""
    render("import matplotlib.pyplot as plt\nplt.plot([1])\n", "chart")  # the worker is up
    workers = _workers()
    assert workers, "no sandbox worker found"

    def kill() -> None:
        time.sleep(1.5)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    result = render(SLOW, "chart", timeout_s=20)
    killer.join()
    # A worker killed while idle can still look alive for a moment (its exit takes time); the retry
    # below is to find every killed worker gone, as the pool finds it when it next looks.
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and has not yet exited (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_worker_killed_mid_job_is_a_fault_of_the_system_and_is_retried():
    result = _killed_mid_job()
    assert not result.ok and result.error_kind == "sandbox" and result.fault == "system", result
    assert render_retrying(SLOW, "chart", timeout_s=20).ok  # once more, on a fresh worker


def test_a_forged_reply_is_a_fault_of_the_system():
    result = forge(FORGED_CHARTS["size mismatch"])
    assert result.error_kind == "invalid_reply" and result.fault == "system"


@pytest.mark.parametrize(
    ("program", "kind"),
    [
        ("raise ValueError('boom')", "program"),
        ("import os\nos._exit(7)", "exited"),
        ("while True:\n    pass", "timeout"),
    ],
)
def test_a_program_that_fails_is_the_programs_fault(program, kind):
    result = render(program, "chart", timeout_s=3)
    assert not result.ok and result.fault == "program", result
    assert result.error_kind == kind or (kind == "timeout" and result.error_kind == "cpu_limit")


def test_a_system_fault_contributes_nothing_to_the_loss(monkeypatch):
    """Four rollouts of one group, the third's render a real system fault (even after the retry):
    it is crashed, its group's advantages are those of the other three, its advantage is 0, its tokens
    are masked out of both terms and its teacher is told nothing."""
    fault = _killed_mid_job()
    assert fault.fault == "system"
    ran = RenderResult("chart", ok=True)

    def fake_render(code, kind, **options):
        return fault if code == "faulted" else ran

    monkeypatch.setattr("vsdpo.render.render_retrying", fake_render)
    monkeypatch.setattr(VisualReward, "assess", lambda self, result, code, *a, **k: _assessment(code))
    programs = ["0.2", "0.6", "faulted", "1.0"]
    rollouts = [
        Rollout(Task("t", "chart", "p"), 0, torch.tensor([1, 2]), torch.zeros(2), p, [(0, 1), (1, 2)], p)
        for p in programs
    ]
    config = load_config(None, {"rollout.num_generations": 4, "algorithm.credit_alpha": "1"})
    pool = RenderPool(workers=2, timeout_s=5)
    try:
        rollouts, crashed = pool.render_rollouts(rollouts)
        assert crashed == 1
        rollouts, failed = score_rollouts(rollouts, config, pool)
        assert failed == 0
    finally:
        pool.shutdown()
    assert [r.render_crashed for r in rollouts] == [False, False, True, False]
    expected = group_advantages([0.2, 0.6, 1.0], 3, "group").tolist()
    advantages = [r.advantage for r in rollouts]
    assert advantages[2] == 0.0 and advantages[:2] + advantages[3:] == pytest.approx(expected)
    batch = GroupBatch.build(rollouts, torch.ones(4, 2, dtype=torch.bool), config)
    assert batch.mask[2].sum() == 0 and batch.mask[[0, 1, 3]].all()
    assert credit_matrix(rollouts, 2, config).shape == (4, 2)

    from vsdpo.train.batch import build_group

    calls = []

    class Group:
        @staticmethod
        def from_text(processor, prompt, responses, feedbacks, **kwargs):
            calls.append(feedbacks)
            return Group()

    monkeypatch.setattr("vsdpo.train.batch.RolloutGroup", Group)
    monkeypatch.setattr("dataclasses.replace", lambda group, **kwargs: group)
    build_group(None, rollouts, None, config, with_feedback=True)
    assert calls[0][2] == "" and all(text for i, text in enumerate(calls[0]) if i != 2)


def _assessment(code):
    from vsdpo.feedback.rewards import Assessment

    return Assessment(float(code), differences=())


def test_advantages_over_the_valid_rollouts_only():
    rewards = [0.0, 1.0, 5.0, 0.5, 0.2, 0.4, 0.6, 0.8]
    valid = [True, True, False, True, True, True, True, True]
    advantages = group_advantages(rewards, 4, "group", valid)
    assert advantages[:4].tolist() == pytest.approx(
        [
            *group_advantages([0.0, 1.0, 0.5], 3, "group").tolist()[:2],
            0.0,
            group_advantages([0.0, 1.0, 0.5], 3, "group")[2].item(),
        ]
    )
    assert torch.equal(advantages[4:], group_advantages(rewards[4:], 4, "group"))
    assert torch.equal(
        group_advantages(rewards, 4, "group", [True] * 8), group_advantages(rewards, 4, "group")
    )
    batch = group_advantages(rewards, 4, "batch", valid)
    kept = torch.tensor([r for r, v in zip(rewards, valid, strict=True) if v])
    assert batch[2] == 0 and batch[0].item() == pytest.approx((0.0 - 0.5) / (kept.std().item() + 1e-4))


def test_the_trl_reward_gives_none_for_a_system_fault(monkeypatch):
    fault = RenderResult.failure("chart", "sandbox: the worker died", error_kind="sandbox")
    failed = RenderResult.failure("chart", "ValueError: boom", [1], error_kind="program")
    results = {"a": fault, "b": failed}
    monkeypatch.setattr("vsdpo.render.render_retrying", lambda code, kind, **k: results[code])
    rewards = VisualReward(kind="chart")(["p", "p"], ["a", "b"])
    assert rewards == [None, 0.0]
