"""Scoring: every rollout's program rendered in the sandbox, its reward (vsdpo.feedback.rewards plus any
user reward callables), and the group-normalised advantages of GRPO.

A render that fails by a fault of the system (``RenderResult.fault == "system"``: a lost worker, a
renderer fault, a reply that could not be trusted) is rendered once more; if it fails so again, or its
reward cannot be computed, the rollout is *crashed*: it has no reward, its group's advantages are
computed over the others, and the update leaves it out of both loss terms and of the teacher's
context. Crashes count against ``run.max_render_crashes``.
"""

from __future__ import annotations

import importlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from vsdpo.feedback.rewards import RewardConfig, VisualReward
from vsdpo.render import RenderResult, render_retrying
from vsdpo.train.generate import Rollout

log = logging.getLogger("vsdpo.train")


class RenderPool:
    """Renders programs on worker threads, each calling ``vsdpo.render.render`` (itself sandboxed)."""

    def __init__(self, workers: int, timeout_s: float):
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="render")
        self.timeout_s = timeout_s

    def submit(self, code: str, kind: str) -> Future:
        """Render ``code`` (a fault of the system is rendered once more, vsdpo.render.render_retrying)."""
        return self.executor.submit(render_retrying, code, kind, timeout_s=self.timeout_s)

    def map(self, function, items) -> list:
        """``function`` over ``items`` on the pool's threads (rewards run sandboxed metrics too)."""
        return list(self.executor.map(function, items))

    def render_rollouts(self, rollouts: list[Rollout]) -> int:
        """Fill ``rollout.render`` for each; returns the number of crashed renders: faults of the system
        (after one more try), never the program's own failures."""
        futures = [self.submit(rollout.program, rollout.task.kind) for rollout in rollouts]
        crashed = 0
        for rollout, future in zip(rollouts, futures, strict=True):
            try:
                rollout.render = future.result()
                if rollout.render.fault == "system":
                    crashed += 1
                    rollout.render_crashed = True
                    log.warning(
                        "render of task %s failed by a fault of the system (%s): %s; left out",
                        rollout.task.id,
                        rollout.render.error_kind,
                        rollout.render.error,
                    )
            except Exception as error:  # the renderer itself failed: the run goes on without this rollout
                crashed += 1
                rollout.render_crashed = True
                rollout.render = RenderResult.failure(
                    rollout.task.kind, f"render crashed: {type(error).__name__}: {error}"
                )
                log.warning(
                    "render crashed for task %s: %s: %s", rollout.task.id, type(error).__name__, error
                )
        return crashed

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def visual_reward(config) -> VisualReward:
    return VisualReward(
        RewardConfig(
            kind=config.data.kind,
            weights=dict(config.reward.weights),
            timeout_s=config.rollout.render_timeout_s,
        )
    )


def rollout_rewards(rollouts: list[Rollout], config, render_pool: RenderPool) -> list[float | None]:
    """Each rendered rollout's reward from vsdpo.feedback.rewards; None where it could not be computed (its
    sandbox died, say), which also marks the rollout crashed: a warning, and no loss on it."""
    reward = visual_reward(config)

    def score(rollout: Rollout) -> float | None:
        if rollout.render_crashed:
            return None
        try:
            assessment = reward.assess(
                rollout.render, rollout.program, rollout.task.reference, rollout.task.kind
            )
        except Exception as error:  # the run goes on without this rollout
            log.warning("reward failed for task %s: %s: %s", rollout.task.id, type(error).__name__, error)
            rollout.render_crashed = True
            return None
        rollout.differences = assessment.differences
        return assessment.reward

    return render_pool.map(score, rollouts)


def score_rollouts(rollouts: list[Rollout], config, render_pool: RenderPool) -> int:
    """Fill each rollout's reward and its group advantage; returns how many rewards failed.

    A crashed rollout (its render a fault of the system, or its reward failed) takes the mean reward of
    its group's other rollouts, for the logs only: its advantage is 0 and the others' are computed
    without it.
    """
    crashed_before = [rollout.render_crashed for rollout in rollouts]
    scored = rollout_rewards(rollouts, config, render_pool)
    failures = sum(
        r.render_crashed and not before for r, before in zip(rollouts, crashed_before, strict=True)
    )
    valid = [not rollout.render_crashed for rollout in rollouts]
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
    for rollout, value, advantage in zip(rollouts, values, advantages.tolist(), strict=True):
        rollout.reward, rollout.advantage = float(value), float(advantage)
    return failures


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
