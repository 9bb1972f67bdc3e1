"""The distillation weights of a group: vsdpo's credit, sdpo's ones, and ``distill_on: flawed``."""

from __future__ import annotations

import torch

from vsdpo.render.types import Defect, RenderResult
from vsdpo.tasks import builtin_chart_tasks
from vsdpo.train.batch import GroupBatch, credit_matrix
from vsdpo.train.config import load_config
from vsdpo.train.generate import Rollout

PROGRAM = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.title('t')\n"


def rollout(render: RenderResult, advantage: float) -> Rollout:
    lines = PROGRAM.splitlines(keepends=True)
    offsets, start = [], 0
    for line in lines:
        offsets.append((start, start + len(line)))
        start += len(line)
    return Rollout(
        task=builtin_chart_tasks(1, seed=0)[0],
        group=0,
        response_ids=torch.arange(len(lines)),
        behaviour_logprobs=torch.full((len(lines),), -0.5),
        text=PROGRAM,
        token_offsets=offsets,
        program=PROGRAM,
        render=render,
        reward=0.5,
        advantage=advantage,
    )


def group() -> list[Rollout]:
    clean = RenderResult("chart", ok=True)
    defect = Defect("overlap", 0.8, ["text:0"], [3], "the title overlaps the line")
    defective = RenderResult("chart", ok=True, defects=[defect])
    failed = RenderResult("chart", ok=False, error="NameError: name 'plot' is not defined", error_lines=[2])
    return [rollout(clean, 1.0), rollout(defective, 0.2), rollout(failed, -1.2)]


def weights(**overrides) -> torch.Tensor:
    config = load_config(None, {"data.prompt_image": "false", **overrides})
    rollouts = group()
    mask = torch.ones(3, 4, dtype=torch.bool)  # one column wider than the responses: padding
    batch = GroupBatch.build(rollouts, mask, config)
    assert batch.credit is None or torch.equal(batch.credit, credit_matrix(rollouts, 4, config))
    return batch.credit


def test_vsdpo_credits_the_lines_behind_a_defect():
    credit = weights()
    assert torch.equal(credit[0], torch.ones(4)) and credit[1, 2] > 1.0 and credit[2, 1] > 1.0
    assert torch.equal(credit[1, :2], torch.ones(2)) and credit[2, 0] == 1.0


def test_sdpo_and_grpo_need_no_weights():
    assert weights(algorithm="sdpo") is None and weights(algorithm="grpo") is None


def test_distill_on_flawed_leaves_out_the_clean_rollout_only():
    credit = weights(**{"algorithm.distill_on": "flawed"})
    assert torch.equal(credit[0, :3], torch.zeros(3))  # ran, no defect: nothing for the teacher to add
    # The defect's line and the error's line keep their credit.
    assert credit[1, 2] > 1.0 and credit[2, 1] > 1.0
    plain = weights(algorithm="sdpo", **{"algorithm.distill_on": "flawed"})
    assert torch.equal(plain[:, :3], torch.tensor([[0.0] * 3, [1.0] * 3, [1.0] * 3]))
    assert weights(algorithm="grpo", **{"algorithm.distill_on": "flawed"}) is None  # no distillation
    failed_only = weights(**{"algorithm.distill_on": "failed"})
    assert torch.equal(failed_only[:2, :3], torch.zeros(2, 3)) and failed_only[2, 1] > 1.0
