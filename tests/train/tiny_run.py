"""The smallest run of the trainer: the tiny Qwen3-VL, 4 built-in tasks, 1 group of 2, 3 steps."""

from __future__ import annotations

from vsdpo.train.config import TrainConfig, load_config


def length_reward(prompts, completions, **columns):
    """A reward with spread even before any program runs, so every algorithm gets a gradient."""
    return [len(c) / 100.0 for c in completions]


def tiny_config(run_dir, cache_dir, **overrides) -> TrainConfig:
    """The embedded default made tiny; ``overrides`` take dotted keys (``{"run.max_steps": 2}``)."""
    values = {
        "run.output_dir": str(run_dir),
        "run.cache_dir": str(cache_dir),
        "run.max_steps": 3,
        "run.cpu_threads": 1,
        "warmstart.steps": 0,
        "data.num_builtin_tasks": 4,
        "model.tiny_hidden_size": 32,
        "rollout.prompts_per_step": 1,
        "rollout.num_generations": 2,
        "rollout.max_new_tokens": 12,
        "rollout.render_workers": 1,
        "checkpoint.save_steps": 2,
        "logging.sample_every": 3,
        "logging.num_sample_renders": 2,
        "logging.progress": False,
        "optimizer.learning_rate": 1e-2,
        "optimizer.warmup_steps": 0,
        "reward.funcs": [f"{__name__}:length_reward"],
        "eval.num_tasks": 2,
        "eval.samples": 1,
        "eval.every": 2,
    }
    values.update(overrides)
    return load_config(None, values)
