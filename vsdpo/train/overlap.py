"""Rollouts made while the policy updates (``rollout.max_lag: 1``).

Synchronous, a step samples its rollouts, renders and scores them, then updates the policy: the model
waits for the renderers and the renderers for the model. With ``max_lag: 1`` the next step's rollouts
are made on a thread of their own while this step updates, as asynchronous RL trainers do:

- they are sampled by the *behaviour* policy, a copy of the policy that the loop sets to the policy's
  weights as each step begins, so the rollouts a step trains on were sampled one update before it
  (the first step's by the base itself);
- the loss weighs them against the log-probs generate gave (the importance ratio's denominator is
  the behaviour policy's, vsdpo.train.batch), and the step logs ``policy_lag``: the updates between
  the weights that sampled its rollouts and the weights it updates (0 on the first step, 1 after);
- the copy has its own tokenizer, so that the two threads never share one.

The next step's rollouts are made from the task order as the synchronous loop draws it, so a run
trains on the same tasks in the same order either way. Before a held-out evaluation, and before the
loop ends, the thread's work is waited for: evaluations sample under a seed of their own
(vsdpo.train.generate.seeded), which must not interleave with the thread's sampling.
"""

from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from vsdpo.train.data import TaskSet
from vsdpo.train.scoring import generate_and_render, score_rollouts
from vsdpo.train.timing import BACKGROUND, StepClock


@dataclass
class Made:
    """One step's rollouts, made: rendered and scored, with what it cost and who sampled them."""

    batch: TaskSet
    rollouts: list
    crashed: int  # renders and rewards that failed by a fault of the system
    version: int  # the step whose update the behaviour weights had seen last
    seconds: dict[str, float] = field(default_factory=dict)  # of each BACKGROUND stage, when made there


def make_rollouts(
    model, processor, batch: TaskSet, config, render_pool, clock: StepClock, version: int
) -> Made:
    """Sample ``batch``'s rollouts from ``model``, render and score them: the step's first three stages."""
    with clock.stage("generate"):  # renders start as each generate call ends
        rollouts, renders = generate_and_render(
            model, processor, batch.tasks, batch.images, config, render_pool
        )
    with clock.stage("render"):  # what is left of them
        rollouts, crashed = render_pool.render_rollouts(rollouts, renders)
    with clock.stage("score"):  # rewards and group advantages
        rollouts, failed = score_rollouts(rollouts, config, render_pool)
    return Made(batch, rollouts, crashed + failed, version)


class Producer:
    """The behaviour policy and the thread that makes the next step's rollouts with it."""

    def __init__(self, model, processor, config, render_pool):
        self.behaviour = copy.deepcopy(model)
        self.behaviour.requires_grad_(False)
        self.processor = copy.deepcopy(processor)
        self.config, self.render_pool = config, render_pool
        self.version = 0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="vsdpo-rollouts")
        self.pending: Future | None = None

    def start(self, model, batch: TaskSet, step: int) -> None:
        """Set the behaviour policy to ``model``'s weights (those after ``step - 1`` updates) and make
        ``batch``'s rollouts with it in the background."""
        self.wait()
        self.behaviour.load_state_dict(model.state_dict())
        self.version = step - 1
        self.pending = self.executor.submit(self._make, batch, self.version)

    def _make(self, batch: TaskSet, version: int) -> Made:
        clock = StepClock()
        made = make_rollouts(
            self.behaviour, self.processor, batch, self.config, self.render_pool, clock, version
        )
        made.seconds = {stage: clock.seconds[stage] for stage in BACKGROUND}
        return made

    def take(self) -> Made:
        """The rollouts started last (waiting for them); an error of the thread is raised here."""
        if self.pending is None:
            raise RuntimeError("Producer.take: no rollouts were started")
        pending, self.pending = self.pending, None
        return pending.result()

    def wait(self) -> None:
        """Let the rollouts in flight finish, keeping them for ``take``."""
        if self.pending is not None:
            self.pending.exception()  # waits; the error, if any, is raised by take

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
