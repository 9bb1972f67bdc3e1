"""The EMA teacher: a moving average of the policy after each step, or the base policy at rate 0."""

from __future__ import annotations

import pytest
import torch

from vsdpo.train.config import load_config
from vsdpo.train.teacher import Teacher


def moved(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The policy after an 'optimiser step': every parameter shifted by fresh noise."""
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(torch.randn_like(param))
    return {k: v.clone() for k, v in policy.state_dict().items()}


@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0])
def test_ema_teacher_follows_the_policy_at_its_rate(rate):
    torch.manual_seed(0)
    policy = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    base = {k: v.clone() for k, v in policy.state_dict().items()}
    config = load_config(None, {"algorithm.teacher": "ema", "algorithm.teacher_ema_rate": rate})
    teacher = Teacher.build(policy, config)
    assert not teacher.live and all(not p.requires_grad for p in teacher.model.parameters())
    after_one = moved(policy)
    teacher.update(policy)
    after_two = moved(policy)
    teacher.update(policy)
    for name, value in teacher.model.state_dict().items():
        once = (1 - rate) * base[name] + rate * after_one[name]
        expected = (1 - rate) * once + rate * after_two[name]
        torch.testing.assert_close(value, expected)
    if rate == 0:  # the base policy stays the teacher
        assert all(torch.equal(teacher.model.state_dict()[k], base[k]) for k in base)


def test_live_teacher_keeps_no_copy():
    policy = torch.nn.Linear(3, 2)
    teacher = Teacher.build(policy, load_config(None, {"algorithm.teacher": "live"}))
    assert teacher.live and teacher.model is None
    teacher.update(policy)  # nothing to move
