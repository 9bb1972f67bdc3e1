"""The trainer: one module per stage of a step, and a loop that reads as the algorithm.

    python -m vsdpo.train                                  # the embedded default: tiny Qwen3-VL, built-in charts, CPU
    vsdpo train --config qwen3vl_8b_chart --run.max_steps 200
    torchrun --nproc_per_node 8 -m vsdpo.train --config qwen3vl_8b_chart

One step of ``algorithm: vsdpo`` (``sdpo`` drops the credit weights, ``grpo`` the distillation), by module:

- ``data``: the tasks, their target images, the seeded order (``TaskSet``, ``TaskSampler``);
- ``generate``: G sampled responses per prompt with their behaviour log-probs (``Rollout``);
- ``scoring``: renders in the sandbox, rewards, group advantages;
- ``batch``: per group, the teacher's feedback and the loss's per-token inputs (``GroupBatch``);
- ``teacher``: student and teacher hidden states sharing the prompt's KV cache (vsdpo.sharing);
- ``loss``: the fused loss (vsdpo_kernels) on the output layer's weight, with its config (``LossHead``);
- ``update``: the loss per group, backward, clipping, the optimiser (``UpdateResult``);
- ``logs``, ``checkpoint``: metrics, plots, samples; atomic checkpoints that resume exactly;
- ``model``, ``warmstart``, ``distributed``: the policy, its supervised warm-start, FSDP2;
- ``loop``: ``train(config)``; ``config``: the nested, validated configuration; ``cli``: the command.
"""

from __future__ import annotations

from vsdpo.train.cli import add_parser, main

__all__ = ["add_parser", "main", "train"]


def __getattr__(name: str):
    if name == "train":  # the loop pulls in torch and transformers: only when asked for
        from vsdpo.train.loop import train

        return train
    raise AttributeError(f"module 'vsdpo.train' has no attribute {name!r}")
