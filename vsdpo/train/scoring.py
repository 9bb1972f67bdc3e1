"""Scoring: every rollout's program rendered in the sandbox, its reward (vsdpo.rewards plus any
user reward callables), and the group-normalised advantages of GRPO."""

from __future__ import annotations

import importlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from vsdpo.render import RenderResult, render
from vsdpo.rewards import RewardConfig, VisualReward
from vsdpo.train.generate import Rollout

log = logging.getLogger("vsdpo.train")


class RenderPool:
    """Renders programs on worker threads, each calling ``vsdpo.render.render`` (itself sandboxed)."""

    def __init__(self, workers: int, timeout_s: float):
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="render")
        self.timeout_s = timeout_s

    def submit(self, code: str, kind: str) -> Future:
        return self.executor.submit(render, code, kind, timeout_s=self.timeout_s)

    def map(self, function, items) -> list:
        """``function`` over ``items`` on the pool's threads (rewards run sandboxed metrics too)."""
        return list(self.executor.map(function, items))

    def render_rollouts(self, rollouts: list[Rollout]) -> int:
        """Fill ``rollout.render`` for each; returns the number of crashed renders (not program errors)."""
        futures = [self.submit(rollout.program, rollout.task.kind) for rollout in rollouts]
        crashed = 0
        for rollout, future in zip(rollouts, futures, strict=True):
            try:
                rollout.render = future.result()
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
    """Each rendered rollout's reward from vsdpo.rewards; None where it could not be computed (its
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

    A failed reward takes the mean reward of its group's other rollouts, so it moves no one's advantage.
    """
    crashed_before = [rollout.render_crashed for rollout in rollouts]
    scored = rollout_rewards(rollouts, config, render_pool)
    failures = sum(
        r.render_crashed and not before for r, before in zip(rollouts, crashed_before, strict=True)
    )
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
    advantages = group_advantages(values, config.rollout.num_generations, config.reward.scale_rewards)
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


def group_advantages(rewards, group_size: int, scale_rewards: str) -> torch.Tensor:
    """GRPO advantages: reward minus its group's mean, divided by the group's (or the batch's) std."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    grouped = rewards.view(-1, group_size)
    advantages = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    if scale_rewards == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    elif scale_rewards == "batch":
        std = rewards.std().expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    else:
        return advantages
    return advantages / (std + 1e-4)
