"""Per-token loss algebra shared by the fused implementations.

Every fused implementation reduces the vocabulary to per-token statistics (``logp``, divergence
``D``, entropy) and needs back, per token, two gradient coefficients:

    a = dL/dlogp   (policy term)        b = dL/dD   (distillation term)

Both are cheap ``[n]`` computations done here in plain PyTorch, once, for all implementations.
Aggregation by ``loss_type`` is linear in the per-token term ``x``: ``L_x = sum_t w_t * x_t`` with
the weights ``w`` of :func:`aggregation_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vsdpo_kernels.config import SDPOLossConfig
from vsdpo_kernels.inputs import LossInputs


def aggregation_weights(inputs: LossInputs, config: SDPOLossConfig) -> torch.Tensor:
    """``w`` [B, T] float32 such that the aggregated loss of a per-token term ``x`` is ``sum(w * x)``.

    As TRL: ``grpo`` mean over sequences of per-sequence means; ``bnpo`` token mean over the batch;
    ``dr_grpo`` sum / (B * max_completion_length); ``dapo`` sum / num_items_in_batch (default: tokens).
    """
    mask = inputs.mask.float()
    B, T = mask.shape
    if config.loss_type == "grpo":
        return mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0) / B
    if config.loss_type == "bnpo":
        return mask / mask.sum().clamp(min=1.0)
    if config.loss_type == "dr_grpo":
        length = config.max_completion_length or T
        return mask / (B * length)
    # dapo
    normaliser = inputs.num_items_in_batch
    if normaliser is None:
        normaliser = float(mask.sum().clamp(min=1.0))
    return mask / normaliser


@dataclass
class PolicyTerm:
    loss: torch.Tensor  # per-token policy term x_pg
    dloss_dlogp: torch.Tensor  # its derivative w.r.t. logp
    clipped: torch.Tensor  # bool: the ratio was clipped (TRL's low | high clip)


def policy_term(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    ref_logprobs: torch.Tensor | None,
    config: SDPOLossConfig,
) -> PolicyTerm:
    """``-min(r*A, clamp(r, 1-eps_low, 1+eps_high)*A) + kl_beta * k3(ref, logp)`` and its derivative.

    The derivative follows autograd's conventions at ties (``torch.minimum`` and ``clamp``), so the
    fused gradients match the materialised reference bit for bit in exact arithmetic.
    """
    logp = logp.float()
    old = logp if old_logprobs is None else old_logprobs
    ratio = torch.exp(logp - old)
    low, high = 1.0 - config.epsilon_low, 1.0 + config.epsilon_high
    clamped = ratio.clamp(low, high)
    unclipped_objective = ratio * advantages
    clipped_objective = clamped * advantages
    loss = -torch.minimum(unclipped_objective, clipped_objective)
    # d/dlogp of -min(...): the unclipped branch is live when it is the smaller one or inside the clip range.
    live = (unclipped_objective < clipped_objective) | ((ratio >= low) & (ratio <= high))
    dloss = torch.where(live, -advantages * ratio, torch.zeros_like(ratio))
    if config.kl_beta > 0:
        delta = ref_logprobs - logp
        loss = loss + config.kl_beta * (torch.exp(delta) - delta - 1.0)
        dloss = dloss + config.kl_beta * (1.0 - torch.exp(delta))
    clipped = ((ratio < low) & (advantages < 0)) | ((ratio > high) & (advantages > 0))
    return PolicyTerm(loss=loss, dloss_dlogp=dloss, clipped=clipped)


@dataclass
class TokenCoefficients:
    """Per valid token: the gradient coefficients and the weighted loss contributions."""

    a: torch.Tensor  # dL/dlogp
    b: torch.Tensor  # dL/dD
    pg_loss: torch.Tensor  # scalar, aggregated policy term
    sd_loss: torch.Tensor  # scalar, aggregated distillation term
    clipped: torch.Tensor  # scalar: number of tokens whose ratio was clipped


class Coefficients:
    """Maps the valid tokens' statistics to their gradient coefficients; sliceable by token range,
    so chunked implementations can finish a chunk (gradients included) before seeing the next."""

    def __init__(self, inputs: LossInputs, config: SDPOLossConfig, valid: torch.Tensor):
        self.config = config
        flat = lambda t: None if t is None else t.reshape(-1)[valid]
        self.weight = flat(aggregation_weights(inputs, config))
        self.advantages = flat(inputs.advantages)
        self.old = flat(inputs.old_logprobs)
        self.ref = flat(inputs.ref_logprobs)
        self.credit = flat(inputs.credit)
        self.has_policy = inputs.advantages is not None
        self.has_teacher = inputs.teacher_hidden is not None

    def __call__(
        self, logp: torch.Tensor, divergence: torch.Tensor | None, start: int = 0, stop: int | None = None
    ) -> TokenCoefficients:
        config = self.config
        sl = slice(start, stop if stop is not None else start + logp.shape[0])
        w = self.weight[sl]
        zero = w.new_zeros(())
        if self.has_policy:
            term = policy_term(
                logp,
                self.advantages[sl],
                None if self.old is None else self.old[sl],
                None if self.ref is None else self.ref[sl],
                config,
            )
            a = config.pg_weight * w * term.dloss_dlogp
            pg_loss = (w * term.loss).sum()
            clip = term.clipped.float().sum()
        else:
            a, pg_loss, clip = torch.zeros_like(w), zero, zero
        if self.has_teacher:
            credit_w = w if self.credit is None else w * self.credit[sl]
            b = config.sd_weight * credit_w
            sd_loss = zero if divergence is None else (credit_w * divergence.float()).sum()
        else:
            b, sd_loss = torch.zeros_like(w), zero
        return TokenCoefficients(a=a, b=b, pg_loss=pg_loss, sd_loss=sd_loss, clipped=clip)
