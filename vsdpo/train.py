"""The trainer: rollouts, renders, rewards, teacher context, the fused loss, the optimiser, logs.

    python -m vsdpo.train                                 # the embedded default: tiny Qwen3-VL, built-in charts, CPU
    vsdpo train --config configs/qwen3vl_8b_chart.yaml --max_steps 200
    torchrun --nproc_per_node 8 -m vsdpo.train --config configs/qwen3vl_8b_chart.yaml

One step of ``algorithm: vsdpo`` (``sdpo`` drops the credit weights, ``grpo`` the distillation):
sample prompts; G rollouts each (vsdpo.rollout); render them in the sandbox (vsdpo.render); rewards
and group advantages (vsdpo.rewards); per group, the teacher's feedback (vsdpo.teacher_context), the
student and teacher hidden states sharing the prompt's KV cache (vsdpo.sharing), token credit
(vsdpo.credit) and the fused loss (vsdpo_kernels), backward; then one optimiser step. The keys of the
configuration are documented in vsdpo.config and docs/training.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time

log = logging.getLogger("vsdpo.train")


def train(config) -> dict:
    """Run ``config`` to ``max_steps``; returns the last step's metrics."""
    import torch

    from vsdpo import checkpoint, distributed, logs, rollout
    from vsdpo.policy import build_optimizer, load_policy, prepare_tasks, warm_start
    from vsdpo.update import TaskSampler, Teacher, policy_update, score_rollouts, step_metrics

    device = distributed.init()
    run_dir = prepare_run_dir(config)
    if config.cpu_threads and device.type == "cpu":
        torch.set_num_threads(config.cpu_threads)
    model, processor = load_policy(config, device)
    render_pool = rollout.RenderPool(config.render_workers, config.render_timeout_s)
    tasks, target_images = prepare_tasks(config, render_pool)
    if config.warmstart_steps:
        warm_start(model, processor, tasks, target_images, config)
    teacher = Teacher.build(model, config)  # live: the policy itself; ema: a moving-average copy
    model = distributed.prepare(model, teacher, config)
    optimizer, scheduler = build_optimizer(model, config)
    sampler = TaskSampler(len(tasks), config.seed)
    torch.manual_seed(config.seed + distributed.rank())  # each rank samples its own rollouts
    state = {"step": 0, "bad_steps": 0, "render_crashes": 0}
    if config.resume and (latest := checkpoint.latest_checkpoint(run_dir)):
        state = checkpoint.load_checkpoint(latest, model=model, optimizer=optimizer, scheduler=scheduler)
        sampler.load_state_dict(state.pop("sampler"))
        teacher.load_state_dict(state.pop("teacher"))
        log.info("resumed from %s at step %d", latest, state["step"])
        if distributed.is_main():
            logs.truncate_metrics(run_dir, state["step"])  # the steps after the checkpoint are redone
    logger = logs.RunLogger(run_dir, config.tensorboard, enabled=distributed.is_main())
    progress = logs.Progress(
        config.max_steps, start=state["step"], enabled=config.progress and distributed.is_main()
    )
    metrics: dict = {}

    for step in range(state["step"] + 1, config.max_steps + 1):
        t0 = time.perf_counter()
        batch = sampler.next_batch(config.prompts_per_step, distributed.rank(), distributed.world_size())
        batch_images = [target_images[i] for i in batch]
        rollouts = rollout.generate_rollouts(
            model, processor, [tasks[i] for i in batch], batch_images, config
        )
        t_generate = time.perf_counter() - t0
        state["render_crashes"] += render_pool.render_rollouts(rollouts)
        state["render_crashes"] += score_rollouts(rollouts, config)  # rewards and group advantages
        if state["render_crashes"] > config.max_render_crashes:
            raise RuntimeError(
                f"aborting: {state['render_crashes']} renders or rewards crashed "
                f"(max_render_crashes={config.max_render_crashes}); see the warnings above"
            )
        update = policy_update(
            model, teacher, processor, rollouts, batch_images, optimizer, scheduler, config
        )
        if update["skipped"]:
            state["bad_steps"] += 1
            log.warning("step %d skipped: %s (%d in a row)", step, update["reason"], state["bad_steps"])
            if state["bad_steps"] > config.max_bad_steps:
                raise RuntimeError(
                    f"aborting: {state['bad_steps']} steps in a row were skipped (max_bad_steps={config.max_bad_steps}); last: {update['reason']}"
                )
        else:
            state["bad_steps"] = 0
            teacher.update(model)
        metrics = step_metrics(
            rollouts,
            update,
            generate_s=t_generate,
            step_s=time.perf_counter() - t0,
            lr=scheduler.get_last_lr()[0],
        )
        if step % config.logging_steps == 0 or step == config.max_steps:
            logger.log(step, metrics)
        if (
            distributed.is_main()
            and config.num_sample_renders
            and (step % config.sample_every == 0 or step == config.max_steps)
        ):
            logs.save_samples(run_dir, step, rollouts, config.num_sample_renders)
        if step % config.save_steps == 0 or step == config.max_steps:
            trainer_state = {
                **state,
                "step": step,
                "sampler": sampler.state_dict(),
                "teacher": teacher.state_dict(),
            }
            checkpoint.save_checkpoint(
                run_dir,
                step,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                trainer_state=trainer_state,
                keep=config.save_total_limit,
            )
        progress.update(step, metrics)

    progress.close()
    logger.close()
    render_pool.shutdown()
    if distributed.is_main():
        logs.write_plots(run_dir)
    return metrics


def prepare_run_dir(config):
    from pathlib import Path

    from vsdpo import distributed
    from vsdpo.config import save_config

    run_dir = Path(config.output_dir)
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    return run_dir


# --------------------------------------------------------------------------------------- command line


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``vsdpo train``: ``--config FILE`` and one ``--key value`` flag per config key."""
    import dataclasses

    from vsdpo.config import TrainConfig

    parser = subparsers.add_parser(
        "train",
        help="train a policy with vsdpo / sdpo / grpo",
        description="Train a code-writing policy from visual feedback. Without --config: the embedded tiny default.",
    )
    parser.add_argument("--config", default=None, help="YAML config file (default: configs/tiny_chart.yaml)")
    for field in dataclasses.fields(TrainConfig):
        flag = (
            dict(nargs="?", const="true") if field.type in ("bool", bool) else {}
        )  # a bare --resume means true
        parser.add_argument(f"--{field.name}", default=argparse.SUPPRESS, metavar="VALUE", **flag)
    parser.set_defaults(func=run_from_args)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    from vsdpo.config import ConfigError, load_config

    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command")}
    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        print(f"vsdpo train: config error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = train(config)
    if metrics:
        print(
            f"done: {config.output_dir} (last step reward {metrics.get('reward', math.nan):.3f}, loss {metrics.get('loss', math.nan):.4f})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vsdpo.train")
    subparsers = parser.add_subparsers(dest="command")
    add_parser(subparsers)
    return run_from_args(parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
