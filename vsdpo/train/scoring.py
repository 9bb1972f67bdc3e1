"""Scoring: every rollout's program rendered in the sandbox, its reward (vsdpo.feedback.rewards plus any
user reward callables), and the group-normalised advantages of GRPO.

Renders go through the render pool both trainers share (vsdpo.feedback.rendering.RenderPool): a render
that fails by a fault of the system (``RenderResult.fault == "system"``: a lost worker, a renderer
fault, a reply that could not be trusted) is rendered once more. If it fails so again the rollout's
render has *crashed* (``Rollout.render_crashed``); if its reward cannot be computed, its reward has
*failed* (``Rollout.reward_failed``). Either way the rollout is *left out* (``Rollout.left_out``): it
has no reward, its group's advantages are computed over the others, and the update leaves it out of
both loss terms and of the teacher's context. Both count against ``run.max_render_crashes``.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from concurrent.futures import Future

import torch

from vsdpo.feedback import rendering
from vsdpo.feedback.rewards import RewardConfig, VisualReward
from vsdpo.tasks import Task
from vsdpo.train.config import TrainConfig
from vsdpo.train.generate import Rollout, generate_rollouts

log = logging.getLogger("vsdpo.train")


class RenderPool(rendering.RenderPool):
    """The shared render pool (vsdpo.feedback.rendering), which also renders a step's rollouts."""

    def start(self, rollouts: list[Rollout]) -> list[Future]:
        """Start rendering ``rollouts``; :meth:`render_rollouts` with the futures collects them."""
        return [self.submit(rollout.program, rollout.task.kind) for rollout in rollouts]

    def render_rollouts(
        self, rollouts: list[Rollout], futures: list[Future] | None = None
    ) -> tuple[list[Rollout], int]:
        """``rollouts`` with their renders (from ``futures`` of :meth:`start` where given), and the
        number of crashed renders: faults of the system (after one more try), never the program's own
        failures."""
        futures = self.start(rollouts) if futures is None else futures
        if len(futures) != len(rollouts):
            raise ValueError(f"futures: expected {len(rollouts)} (one per rollout), got {len(futures)}")
        rendered = [
            dataclasses.replace(rollout, render=rendering.resolved(future, rollout.task.kind))
            for rollout, future in zip(rollouts, futures, strict=True)
        ]
        for rollout in rendered:
            if rollout.render_crashed:
                log.warning(
                    "render of task %s failed by a fault of the system (%s): %s; left out",
                    rollout.task.id,
                    rollout.render.error_kind,
                    rollout.render.error,
                )
        return rendered, sum(rollout.render_crashed for rollout in rendered)


def generate_and_render(
    model, processor, tasks: list[Task], target_images: list, config: TrainConfig, render_pool: RenderPool
) -> tuple[list[Rollout], list[Future]]:
    """The step's rollouts, their renders started: with ``rollout.groups_per_generate`` n > 0, the
    groups are sampled n at a time and each call's renders run while the next call samples; with 0,
    every group in one call, then the renders (the synchronous step). Collect the renders with
    ``render_pool.render_rollouts(rollouts, futures)``."""
    per_call = config.rollout.groups_per_generate or len(tasks)
    rollouts: list[Rollout] = []
    futures: list[Future] = []
    for first in range(0, len(tasks), per_call):
        end = first + per_call
        part = generate_rollouts(model, processor, tasks[first:end], target_images[first:end], config, first)
        futures += render_pool.start(part)
        rollouts += part
    return rollouts, futures


def visual_reward(config: TrainConfig) -> VisualReward:
    return VisualReward(
        RewardConfig(
            kind=config.data.kind,
            weights=dict(config.reward.weights),
            timeout_s=config.rollout.render_timeout_s,
        )
    )


def rollout_rewards(
    rollouts: list[Rollout], config: TrainConfig, render_pool: RenderPool
) -> list[tuple[Rollout, float | None]]:
    """Each rendered rollout, with its differences from the target, and its reward from
    vsdpo.feedback.rewards; None where its render crashed, or where the reward could not be computed
    (its sandbox died, say), which marks ``reward_failed``: a warning, and no loss on it."""
    reward = visual_reward(config)

    def score(rollout: Rollout) -> tuple[Rollout, float | None]:
        if rollout.left_out:
            return rollout, None
        try:
            assessment = reward.assess(
                rollout.render, rollout.program, rollout.task.reference, rollout.task.kind
            )
        except Exception as error:  # the run goes on without this rollout
            log.warning("reward failed for task %s: %s: %s", rollout.task.id, type(error).__name__, error)
            return dataclasses.replace(rollout, reward_failed=True), None
        return dataclasses.replace(rollout, differences=assessment.differences), assessment.reward

    return render_pool.map(score, rollouts)


def score_rollouts(
    rollouts: list[Rollout], config: TrainConfig, render_pool: RenderPool
) -> tuple[list[Rollout], int]:
    """``rollouts`` with their rewards and group advantages, and how many rewards failed.

    A left-out rollout (its render crashed, or its reward failed) takes the mean reward of its group's
    other rollouts, for the logs only: its advantage is 0 and the others' are computed without it.
    """
    failed_before = sum(rollout.reward_failed for rollout in rollouts)
    pairs = rollout_rewards(rollouts, config, render_pool)
    rollouts, scored = [rollout for rollout, _ in pairs], [value for _, value in pairs]
    failures = sum(rollout.reward_failed for rollout in rollouts) - failed_before
    valid = [not rollout.left_out for rollout in rollouts]
    values = fill_missing(scored, config.rollout.num_generations)
    for spec in config.reward.funcs:  # user reward callables, TRL's signature
        module_name, _, function_name = spec.partition(":")
        function = getattr(importlib.import_module(module_name), function_name)
        extra = function(
            prompts=[r.task.prompt for r in rollouts],
            completions=[r.text for r in rollouts],
            render_results=[r.render for r in rollouts],
            reference=[r.task.reference for r in rollouts],
            kind=[r.task.kind for r in rollouts],
        )
        if len(extra) != len(values):
            raise ValueError(
                f"reward.funcs: {spec} returned {len(extra)} rewards for {len(values)} completions"
            )
        values = [v + (e or 0.0) for v, e in zip(values, extra, strict=True)]
    advantages = group_advantages(values, config.rollout.num_generations, config.reward.scale_rewards, valid)
    scored_rollouts = [
        dataclasses.replace(rollout, reward=float(value), advantage=float(advantage))
        for rollout, value, advantage in zip(rollouts, values, advantages.tolist(), strict=True)
    ]
    return scored_rollouts, failures


def fill_missing(values: list[float | None], group_size: int) -> list[float]:
    """Missing rewards take their group's mean of the others (0 when the whole group is missing)."""
    filled = []
    for start in range(0, len(values), group_size):
        group = values[start : start + group_size]
        present = [v for v in group if v is not None]
        mean = sum(present) / len(present) if present else 0.0
        filled += [mean if v is None else v for v in group]
    return filled


def group_advantages(rewards, group_size: int, scale_rewards: str, valid=None) -> torch.Tensor:
    """GRPO advantages: reward minus its group's mean, divided by the group's (or the batch's) std.

    ``valid`` (one bool per rollout; default all) leaves rollouts out: the means and stds are those of
    the valid rollouts alone, and a left-out rollout's advantage is 0.
    """
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if valid is not None and not all(valid):
        return _advantages_of_valid(
            rewards, group_size, scale_rewards, torch.as_tensor(valid, dtype=torch.bool)
        )
    grouped = rewards.view(-1, group_size)
    advantages = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    if scale_rewards == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    elif scale_rewards == "batch":
        std = rewards.std().expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    else:
        return advantages
    return advantages / (std + 1e-4)


def _advantages_of_valid(rewards, group_size: int, scale_rewards: str, keep: torch.Tensor) -> torch.Tensor:
    """``group_advantages`` over the rollouts ``keep`` marks; 0 for the others."""
    advantages = torch.zeros_like(rewards)
    for start in range(0, len(rewards), group_size):
        members = [i for i in range(start, start + group_size) if keep[i]]
        if not members:
            continue
        group = rewards[members]
        advantages[members] = group - group.mean()
        if scale_rewards == "group":
            std = group.std() if len(members) > 1 else torch.tensor(0.0)
            advantages[members] /= std + 1e-4
    if scale_rewards == "batch":
        kept = rewards[keep]
        advantages /= (kept.std() if kept.numel() > 1 else torch.tensor(0.0)) + 1e-4
    return advantages
