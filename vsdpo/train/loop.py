"""The training loop: one step of the algorithm per iteration, the stages in the order they run."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vsdpo.train import checkpoint, distributed, logs
from vsdpo.train.config import ConfigError, TrainConfig, save_config
from vsdpo.train.data import TaskSampler, prepare_tasks
from vsdpo.train.evaluate import Evaluator, eval_tasks
from vsdpo.train.model import load_policy, resolve_policy
from vsdpo.train.overlap import Producer, make_rollouts
from vsdpo.train.scoring import RenderPool, visual_reward
from vsdpo.train.teacher import Teacher
from vsdpo.train.timing import StepClock
from vsdpo.train.update import build_optimizer, policy_update
from vsdpo.train.warmstart import warm_start

log = logging.getLogger("vsdpo.train")


@dataclass
class LoopState:
    """The loop's counters, saved with every checkpoint."""

    step: int = 0
    bad_steps: int = 0  # skipped steps in a row
    render_crashes: int = 0  # crashed renders and rewards so far

    def check_crashes(self, config: TrainConfig) -> None:
        if self.render_crashes > config.run.max_render_crashes:
            raise RuntimeError(
                f"aborting: {self.render_crashes} renders or rewards crashed "
                f"(run.max_render_crashes={config.run.max_render_crashes}); see the warnings above"
            )

    def count(self, step: int, update, config: TrainConfig) -> None:
        """Count a skipped update (a warning; too many in a row abort) or reset the count."""
        if not update.skipped:
            self.bad_steps = 0
            return
        self.bad_steps += 1
        log.warning("step %d skipped: %s (%d in a row)", step, update.reason, self.bad_steps)
        if self.bad_steps > config.run.max_bad_steps:
            raise RuntimeError(
                f"aborting: {self.bad_steps} steps in a row were skipped "
                f"(run.max_bad_steps={config.run.max_bad_steps}); last: {update.reason}"
            )


def train(config: TrainConfig) -> dict:
    """Run ``config`` to ``run.max_steps``; returns the last step's metrics."""
    config = resolve_policy(config)  # a model that cannot load fails here; a text-only one sees no images
    device = distributed.init()
    run_dir = prepare_run_dir(config)
    if distributed.is_main():
        log.info(
            "run %s: %s on %s, tasks %s, in %s",
            config.run.name,
            config.algorithm.name,
            config.model.name,
            config.data.tasks,
            run_dir,
        )
    if config.run.cpu_threads and device.type == "cpu":
        torch.set_num_threads(config.run.cpu_threads)
    if config.rollout.max_lag and distributed.world_size() > 1:
        raise ConfigError(
            f"rollout.max_lag: expected 0 under torchrun ({distributed.world_size()} processes), "
            f"got {config.rollout.max_lag}: the behaviour copy is not sharded"
        )
    render_pool = RenderPool(
        config.rollout.render_workers,
        config.rollout.render_timeout_s,
        record_chartmimic=visual_reward(config).compares_charts,  # one run per chart program
    )
    producer = None
    try:
        tasks = prepare_tasks(config, render_pool)  # before the model: a bad task source fails fast
        held_out = eval_tasks(config, render_pool)
        model, processor = load_policy(config, device)
        if config.warmstart.steps:
            warm_start(
                model, processor, tasks, config, render_pool
            )  # the base policy, the same for every algorithm
        teacher = Teacher.build(model, config)  # live: the policy itself; ema: a moving-average copy
        model = distributed.prepare(model, teacher, config)
        optimizer, scheduler = build_optimizer(model, config)
        sampler = TaskSampler(len(tasks), config.run.seed)
        torch.manual_seed(config.run.seed + distributed.rank())  # each rank samples its own rollouts
        state = restore(config, run_dir, model, optimizer, scheduler, sampler, teacher)
        logger = logs.RunLogger(run_dir, config.logging.tensorboard, enabled=distributed.is_main())
        progress = logs.Progress(
            config.run.max_steps, start=state.step, enabled=config.logging.progress and distributed.is_main()
        )
        evaluator = None if held_out is None else Evaluator(held_out, config, render_pool, run_dir)
        if evaluator is not None and state.step == 0 and config.eval.at_start:
            logger.log_eval(evaluator.run(model, processor, step=0, teacher=teacher.model))  # the base policy
        metrics: dict = {}
        if config.rollout.max_lag:  # the next step's rollouts made while this one updates
            producer = Producer(model, processor, config, render_pool)

        def next_batch():
            picked = sampler.next_batch(
                config.rollout.prompts_per_step, distributed.rank(), distributed.world_size()
            )
            return tasks.pick(picked)

        sampler_state = sampler.state_dict()  # the task order as of the next step to train
        for step in range(state.step + 1, config.run.max_steps + 1):
            clock = StepClock()
            if producer is None:
                made = make_rollouts(model, processor, next_batch(), config, render_pool, clock, step - 1)
                sampler_state = sampler.state_dict()
            else:
                if producer.pending is None:  # the first step of this process: nothing made ahead
                    producer.start(model, next_batch(), step)
                with clock.stage("wait"):
                    made = producer.take()
                clock.background.update(made.seconds)
                sampler_state = sampler.state_dict()  # a resume makes the next step's rollouts again
                if step < config.run.max_steps:
                    producer.start(model, next_batch(), step)
            batch, rollouts = made.batch, made.rollouts
            state.render_crashes += made.crashed
            state.check_crashes(config)
            with clock.stage("update"):
                update = policy_update(
                    model, teacher, processor, rollouts, batch.images, optimizer, scheduler, config, clock
                )
            state.count(step, update, config)
            if not update.skipped:
                with clock.stage("teacher"):
                    teacher.update(model)
            held_out_result = None
            if evaluator is not None and evaluator.due(step):
                if producer is not None:  # the evaluation's seeded sampling must not interleave with it
                    with clock.stage("wait"):
                        producer.wait()
                with clock.stage("eval"):
                    held_out_result = evaluator.run(model, processor, step, teacher=teacher.model)
            last = step == config.run.max_steps
            samples = config.logging.num_sample_renders
            if distributed.is_main() and samples and (step % config.logging.sample_every == 0 or last):
                logs.save_samples(run_dir, step, rollouts, samples)
            metrics = logs.step_metrics(
                rollouts,
                update,
                **clock.metrics(),
                lr=scheduler.get_last_lr()[0],
                policy_lag=float(step - 1 - made.version),  # updates between sampling and this one
            )
            if step % config.logging.logging_steps == 0 or last:
                logger.log(step, metrics)
            if held_out_result is not None:
                logger.log_eval(held_out_result)
                metrics.update({f"eval_{k}": v for k, v in held_out_result.metrics().items()})
            if step % config.checkpoint.save_steps == 0 or last:
                state.step = step
                save(config, run_dir, state, model, optimizer, scheduler, sampler_state, teacher)
            progress.update(step, metrics)

        progress.close()
        logger.close()
    finally:
        if producer is not None:
            producer.close()
        render_pool.shutdown()
    if distributed.is_main():
        logs.write_plots(run_dir)
    return metrics


def restore(config: TrainConfig, run_dir: Path, model, optimizer, scheduler, sampler, teacher) -> LoopState:
    """The loop's state: from the newest complete checkpoint with ``run.resume``, else a fresh one."""
    state = LoopState()
    if config.run.resume:
        resumed = checkpoint.resume(run_dir, model=model, optimizer=optimizer, scheduler=scheduler)
        if resumed is None:
            log.warning("run.resume: no complete checkpoint in %s; training from step 0", run_dir)
        else:
            path, saved = resumed
            sampler.load_state_dict(saved.pop("sampler"))
            teacher.load_state_dict(saved.pop("teacher"))
            state = LoopState(**saved)
            log.info("resumed from %s at step %d", path, state.step)
    if distributed.is_main():  # records after the checkpoint are redone (all of them on a fresh start)
        logs.truncate_records(run_dir, state.step if state.step else -1)
    return state


def save(
    config: TrainConfig, run_dir: Path, state: LoopState, model, optimizer, scheduler, sampler_state, teacher
) -> None:
    trainer_state = {
        **dataclasses.asdict(state),
        "sampler": dict(sampler_state),
        "teacher": teacher.state_dict(),
    }
    checkpoint.save_checkpoint(
        run_dir,
        state.step,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        trainer_state=trainer_state,
        keep=config.checkpoint.save_total_limit,
    )


def prepare_run_dir(config: TrainConfig) -> Path:
    run_dir = Path(config.run.output_dir)
    if distributed.is_main():
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run_dir / "config.yaml")
        except OSError as error:
            raise ConfigError(f"run.output_dir: cannot write {run_dir}: {error.strerror or error}") from None
    return run_dir
