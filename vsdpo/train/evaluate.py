"""Held-out evaluation: the policy's reward on tasks it never trains on, and the teacher gain.

At step 0, every ``eval.every`` steps and at the end, each held-out task gets ``eval.samples`` first
attempts, sampled from a fixed seed (the training's random state is saved and restored around it, so
evaluating never changes the run). Each attempt is rendered in the sandbox and scored with the task
kind's visual reward (vsdpo.feedback.rewards; the user's ``reward.funcs`` are left out: this is the task's own
measure). With ``eval.teacher_gain``, every first attempt's feedback (vsdpo.feedback.builder, exactly
the teacher's context in training) is appended to its prompt and a second attempt is sampled from
the teacher's own weights (the moving average with ``algorithm.teacher ema``, else the policy): the
mean reward of the second attempts minus that of the first is the *teacher gain*, the precondition
of self-distillation (a teacher that does no better given the feedback has nothing to teach). It is
also split three ways by the first attempt: it failed to run; it ran with a difference from the
target or a defect (``flawed``); it ran and matched (``matched``: the teacher should keep it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vsdpo.feedback.builder import feedback_context
from vsdpo.tasks import load_tasks
from vsdpo.train import distributed
from vsdpo.train.config import ConfigError
from vsdpo.train.data import TaskSet, with_target_images
from vsdpo.train.generate import feedback_options, sample_programs, seeded
from vsdpo.train.scoring import visual_reward

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from vsdpo.tasks import Task
    from vsdpo.train.config import TrainConfig
    from vsdpo.train.model import Processor
    from vsdpo.train.scoring import RenderPool

log = logging.getLogger("vsdpo.train")


@dataclass(frozen=True)
class EvalResult:
    """One evaluation's means over every held-out attempt (all ranks)."""

    step: int
    reward: float
    execution_rate: float
    defect_rate: float  # share of the attempts that ran whose render has a defect
    reward_se: float | None = None  # standard error of ``reward`` over the tasks (their mean per task)
    second_reward: float | None = None  # the second attempts', given the feedback on the first
    second_execution_rate: float | None = None
    teacher_gain: float | None = None  # second_reward - reward
    teacher_gain_failed: float | None = None  # the same over the first attempts that did not run
    teacher_gain_ran: float | None = None  # ... and over those that ran
    teacher_gain_flawed: float | None = None  # ... those that ran with a difference or a defect
    teacher_gain_matched: float | None = None  # ... those that ran with neither

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "step" and v is not None}


@dataclass
class Attempt:
    prompt: str  # the user's text, feedback included for a second attempt
    target: object = None  # the target image shown with the prompt (PIL), if any
    feedback_images: list = field(default_factory=list)  # the feedback's render, for a second attempt
    program: str = ""
    render: object = None
    reward: float = 0.0
    differences: tuple | None = None  # how the render differs from the target (None: not compared)
    task_id: str = ""

    @property
    def ran(self) -> bool:
        return self.render is not None and self.render.ok

    @property
    def outcome(self) -> str:
        """``failed``, ``flawed`` (ran, with a difference from the target or a defect) or ``matched``."""
        if not self.ran:
            return "failed"
        return "flawed" if self.differences or self.render.defects else "matched"

    def record(self) -> dict:
        render = self.render
        return {
            "program": self.program,
            "reward": self.reward,
            "ran": self.ran,
            "error": None if render is None else render.error,
            "defects": [] if render is None else [f"{d.kind} lines {d.lines}" for d in render.defects],
            "differences": None if self.differences is None else [d.message for d in self.differences],
        }


def eval_tasks(config: TrainConfig, render_pool: RenderPool) -> TaskSet | None:
    """The held-out tasks ``eval.tasks`` names (None when there are none), with their target images."""
    source, data = config.eval.tasks, config.data
    if source == "none":
        return None
    if source == "auto":
        if data.tasks != "builtin:charts":
            log.warning(
                "eval.tasks: 'auto' has no held-out split for %s; name a second task source to evaluate",
                data.tasks,
            )
            return None
        source = data.tasks
    try:
        tasks = load_tasks(source, kind=data.kind, count=config.eval.num_tasks, seed=data.seed, split="eval")
    except (OSError, ValueError) as error:
        raise ConfigError(f"eval.tasks: {error}") from None
    tasks = tasks[: config.eval.num_tasks]
    if not tasks:
        raise ConfigError(f"eval.tasks: no tasks of kind {data.kind!r} in {source}")
    return with_target_images(tasks, config, render_pool)


class Evaluator:
    """Runs the held-out evaluation for the loop; this rank takes its share of the tasks."""

    def __init__(
        self, tasks: TaskSet, config: TrainConfig, render_pool: RenderPool, run_dir: Path | None = None
    ):
        rank, world = distributed.rank(), distributed.world_size()
        usable = len(tasks) - len(tasks) % world  # every rank samples as many batches (generate syncs them)
        if usable < len(tasks):
            log.warning(
                "eval: %d held-out tasks left out to share the rest over %d ranks", len(tasks) - usable, world
            )
        self.tasks = tasks.pick(list(range(rank, usable, world)))
        self.config, self.render_pool = config, render_pool
        self.reward = visual_reward(config)
        self.out_dir = None if run_dir is None else Path(run_dir) / "eval"

    def due(self, step: int) -> bool:
        every = self.config.eval.every
        return step == 0 or step == self.config.run.max_steps or (every > 0 and step % every == 0)

    def _attempts(
        self, model: PreTrainedModel, processor: Processor, attempts: list[Attempt], tasks: list[Task]
    ) -> None:
        """Sample, render and score ``attempts`` in place, in chunks of one training step's size."""
        chunk = self.config.rollout.prompts_per_step * self.config.rollout.num_generations
        requests = [(a.prompt, a.target, a.feedback_images) for a in attempts]
        for attempt, program in zip(
            attempts, sample_programs(model, processor, requests, self.config.rollout, chunk), strict=True
        ):
            attempt.program = program
        futures = [
            self.render_pool.submit(a.program, task.kind) for a, task in zip(attempts, tasks, strict=True)
        ]

        def score(job) -> None:
            attempt, task, future = job
            attempt.render = future.result()
            try:
                assessment = self.reward.assess(attempt.render, attempt.program, task.reference, task.kind)
                attempt.reward, attempt.differences = assessment.reward, assessment.differences
            except Exception as error:  # a reward that cannot be computed counts as a failed attempt
                log.warning("eval: reward failed for task %s: %s: %s", task.id, type(error).__name__, error)
                attempt.reward = 0.0

        # The renders are queued first: a score, on the same threads, waits only on its own render.
        self.render_pool.map(score, zip(attempts, tasks, futures, strict=True))

    def run(
        self,
        model: PreTrainedModel,
        processor: Processor,
        step: int,
        teacher: PreTrainedModel | None = None,
    ) -> EvalResult:
        """First attempts from ``model``; second attempts from ``teacher`` (the EMA teacher's weights),
        or from ``model`` when None (a live teacher is the policy itself)."""
        samples = self.config.eval.samples
        tasks = [task for task in self.tasks.tasks for _ in range(samples)]
        show_target = self.config.data.prompt_image and all(image is not None for image in self.tasks.images)
        targets = [image if show_target else None for image in self.tasks.images for _ in range(samples)]
        with seeded(self.config.eval.seed + distributed.rank()):
            first = [
                Attempt(task.prompt, image, task_id=task.id)
                for task, image in zip(tasks, targets, strict=True)
            ]
            self._attempts(model, processor, first, tasks)
            second = []
            if self.config.eval.teacher_gain:
                options = feedback_options(self.config)
                for attempt in first:
                    context = feedback_context(
                        attempt.render, attempt.program, differences=attempt.differences, options=options
                    )
                    second.append(
                        Attempt(
                            attempt.prompt + context.text,
                            attempt.target,
                            context.images,
                            task_id=attempt.task_id,
                        )
                    )
                self._attempts(model if teacher is None else teacher, processor, second, tasks)
        if self.out_dir is not None:
            self.save(step, tasks, first, second)
        return summarise(step, first, second)

    def save(self, step: int, tasks: list[Task], first: list[Attempt], second: list[Attempt]) -> None:
        """Every attempt of this evaluation, for reading: ``eval/step-NNNN[-rank].jsonl``."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        suffix = f"-rank{distributed.rank()}" if distributed.is_distributed() else ""
        lines = []
        for index, (task, attempt) in enumerate(zip(tasks, first, strict=True)):
            record = {"task": task.id, "prompt": task.prompt, **attempt.record()}
            if second:
                record["second"] = second[index].record()
            lines.append(json.dumps(record))
        (self.out_dir / f"step-{step:04d}{suffix}.jsonl").write_text(
            "\n".join(lines) + "\n", encoding="utf-8"
        )


def standard_error(attempts: list[Attempt]) -> float | None:
    """The standard error of the mean reward, the tasks as the sampling unit: the samples of one task
    are not independent draws, so their mean per task counts once (all ranks; None below two tasks)."""
    per_task: dict[str, list[float]] = {}
    for attempt in attempts:
        per_task.setdefault(attempt.task_id, []).append(attempt.reward)
    means = [sum(rewards) / len(rewards) for rewards in per_task.values()]
    count = distributed.all_reduce_sum(len(means))
    total = distributed.all_reduce_sum(sum(means))
    squares = distributed.all_reduce_sum(sum(m * m for m in means))
    if count < 2:
        return None
    variance = max(squares - total * total / count, 0.0) / (count - 1)
    return (variance / count) ** 0.5


def summarise(step: int, first: list[Attempt], second: list[Attempt]) -> EvalResult:
    """Means over every rank's attempts."""

    def totals(attempts):
        ran = [a for a in attempts if a.ran]
        return [
            len(attempts),
            sum(a.reward for a in attempts),
            len(ran),
            sum(bool(a.render.defects) for a in ran),
        ]

    n, reward, ran, defective = (distributed.all_reduce_sum(v) for v in totals(first))
    means: dict[str, float | None] = {  # the collectives in the same order on every rank
        "reward": reward / max(n, 1),
        "execution_rate": ran / max(n, 1),
        "defect_rate": defective / max(ran, 1),
        "reward_se": standard_error(first),
    }
    if second:
        n2, reward2, ran2, _ = (distributed.all_reduce_sum(v) for v in totals(second))
        means["second_reward"] = reward2 / max(n2, 1)
        means["second_execution_rate"] = ran2 / max(n2, 1)
        means["teacher_gain"] = means["second_reward"] - means["reward"]
        splits = {
            "teacher_gain_failed": lambda a: not a.ran,
            "teacher_gain_ran": lambda a: a.ran,
            "teacher_gain_flawed": lambda a: a.outcome == "flawed",
            "teacher_gain_matched": lambda a: a.outcome == "matched",
        }
        for field_name, belongs in splits.items():
            gains = [b.reward - a.reward for a, b in zip(first, second, strict=True) if belongs(a)]
            count = distributed.all_reduce_sum(len(gains))
            if count:
                means[field_name] = distributed.all_reduce_sum(sum(gains)) / count
    return EvalResult(step, **means)
