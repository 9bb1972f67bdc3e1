"""The plain PyTorch loss on materialised logits: the test oracle and the benchmarks' baseline.

It holds the whole ``[tokens x vocab]`` logits (and autograd's copies of them) in float32, or in
float64 when given float64 inputs. Written straight from the formulas, as TRL writes them, and
independent of the fused algebra in ``terms.py``.
"""

from __future__ import annotations

import torch

from vsdpo_kernels.config import SDPOLossConfig
from vsdpo_kernels.inputs import LossInputs


def generalized_jsd(student_logp: torch.Tensor, teacher_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token generalized JSD over the last dim, TRL's ``generalized_jsd_loss`` convention."""
    kl = lambda p_log, q_log: (p_log.exp() * (p_log - q_log)).sum(-1)  # KL(p || q)
    if beta == 0:
        return kl(teacher_logp, student_logp)
    if beta == 1:
        return kl(student_logp, teacher_logp)
    mixture = torch.logsumexp(
        torch.stack(
            [student_logp + torch.log1p(torch.tensor(-beta)), teacher_logp + torch.log(torch.tensor(beta))]
        ),
        dim=0,
    )
    return beta * kl(teacher_logp, mixture) + (1 - beta) * kl(student_logp, mixture)


def _aggregate(
    x: torch.Tensor, mask: torch.Tensor, config: SDPOLossConfig, num_items_in_batch
) -> torch.Tensor:
    m = mask.to(x.dtype)
    B, T = m.shape
    if config.loss_type == "grpo":
        return ((x * m).sum(-1) / m.sum(-1).clamp(min=1.0)).sum() / max(B, 1)  # an empty batch: 0
    if config.loss_type == "bnpo":
        return (x * m).sum() / m.sum().clamp(min=1.0)
    if config.loss_type == "dr_grpo":
        return (x * m).sum() / max(B * (config.max_completion_length or T), 1)
    normaliser = m.sum().clamp(min=1.0) if num_items_in_batch is None else num_items_in_batch
    return (x * m).sum() / normaliser


def reference_sdpo_loss(inputs: LossInputs, config: SDPOLossConfig = SDPOLossConfig()):
    """Returns ``(loss, pg_loss, sd_loss, logprobs, divergence, entropy, clip_fraction)`` with autograd.

    ``inputs`` need not be checked (the tests give it float64 tensors, which checking would round to
    float32); ``targets`` must be valid token ids where unmasked.
    """
    student_hidden, teacher_hidden, credit = inputs.student_hidden, inputs.teacher_hidden, inputs.credit
    compute = torch.float64 if student_hidden.dtype == torch.float64 else torch.float32
    B, T, _ = student_hidden.shape
    mask = inputs.mask
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=student_hidden.device)
    targets = torch.where(mask, inputs.targets, torch.zeros_like(inputs.targets))
    w = inputs.weight.to(compute)
    student_logp_all = torch.log_softmax((student_hidden.to(compute) @ w.T) / config.temperature, dim=-1)
    logp = student_logp_all.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(student_logp_all.exp() * student_logp_all).sum(-1)
    zero = logp.new_zeros(())

    if teacher_hidden is not None:
        teacher_logp_all = torch.log_softmax((teacher_hidden.to(compute) @ w.T) / config.temperature, dim=-1)
        divergence = generalized_jsd(student_logp_all, teacher_logp_all.detach(), config.beta)
        weighted = divergence if credit is None else divergence * credit.to(compute)
        sd_loss = _aggregate(weighted, mask, config, inputs.num_items_in_batch)
    else:
        divergence = torch.zeros_like(logp)
        sd_loss = zero

    clip_fraction = zero
    if inputs.advantages is not None:
        adv = inputs.advantages.to(compute)
        if adv.dim() == 1:
            adv = adv[:, None]
        old = logp.detach() if inputs.old_logprobs is None else inputs.old_logprobs.to(compute)
        ratio = torch.exp(logp - old)
        low, high = 1 - config.epsilon_low, 1 + config.epsilon_high
        per_token = -torch.min(ratio * adv, torch.clamp(ratio, low, high) * adv)
        if config.kl_beta > 0:
            delta = inputs.ref_logprobs.to(compute) - logp
            per_token = per_token + config.kl_beta * (torch.exp(delta) - delta - 1)
        pg_loss = _aggregate(per_token, mask, config, inputs.num_items_in_batch)
        clipped = ((ratio < low) & (adv < 0)) | ((ratio > high) & (adv > 0))
        clip_fraction = (clipped & mask).sum() / mask.sum().clamp(min=1)
    else:
        pg_loss = zero

    loss = config.pg_weight * pg_loss + config.sd_weight * sd_loss
    keep = lambda t: torch.where(mask, t, torch.zeros_like(t)).detach()
    return (
        loss,
        pg_loss.detach(),
        sd_loss.detach(),
        keep(logp),
        keep(divergence),
        keep(entropy),
        clip_fraction.detach().to(compute),
    )
