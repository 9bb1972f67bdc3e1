"""The two terms agree with the peers' formulas, written here on materialised logits as TRL writes
them (TRL is not a dependency): ``generalized_jsd_loss`` and GRPOTrainer's per-token loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsdpo_kernels import SDPOLossConfig, fused_linear_sdpo_loss

from .cases import make_case


def trl_generalized_jsd(student_logits, teacher_logits, beta, temperature):
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
    else:
        beta_t = torch.tensor(beta, dtype=student_log_probs.dtype)
        mixture = torch.logsumexp(
            torch.stack([student_log_probs + torch.log(1 - beta_t), teacher_log_probs + torch.log(beta_t)]),
            dim=0,
        )
        kl_teacher = F.kl_div(mixture, teacher_log_probs, reduction="none", log_target=True)
        kl_student = F.kl_div(mixture, student_log_probs, reduction="none", log_target=True)
        jsd = beta_t * kl_teacher + (1 - beta_t) * kl_student
    return jsd.sum(-1)


def trl_grpo_loss(per_token_logps, old_per_token_logps, ref_per_token_logps, advantages, mask, cfg, T):
    coef_1 = torch.exp(per_token_logps - old_per_token_logps)
    coef_2 = torch.clamp(coef_1, 1 - cfg.epsilon_low, 1 + cfg.epsilon_high)
    per_token_loss1 = coef_1 * advantages.unsqueeze(1)
    per_token_loss2 = coef_2 * advantages.unsqueeze(1)
    per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
    if cfg.kl_beta != 0.0:
        per_token_kl = (
            torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1
        )
        per_token_loss = per_token_loss + cfg.kl_beta * per_token_kl
    m = mask.to(per_token_loss.dtype)
    if cfg.loss_type == "grpo":
        return ((per_token_loss * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    if cfg.loss_type == "bnpo":
        return (per_token_loss * m).sum() / m.sum().clamp(min=1.0)
    if cfg.loss_type == "dr_grpo":
        return (per_token_loss * m).sum() / (per_token_loss.size(0) * (cfg.max_completion_length or T))
    return (per_token_loss * m).sum() / m.sum().clamp(min=1.0)


@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("impl", ["cpu", "torch"])
def test_divergence_is_trl_generalized_jsd(beta, impl):
    case = make_case(seed=31, advantages=None, credit=False, mask=False)
    config = SDPOLossConfig(beta=beta, temperature=0.9)
    out = fused_linear_sdpo_loss(**case, config=config, impl=impl)
    w = case["weight"].double()
    expected = trl_generalized_jsd(
        case["student_hidden"].double() @ w.T, case["teacher_hidden"].double() @ w.T, beta, 0.9
    )
    assert torch.allclose(out.divergence.double(), expected, rtol=1e-4, atol=1e-6)
    assert float(out.sd_loss) == pytest.approx(float(expected.mean()), rel=1e-4)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("impl", ["cpu", "torch"])
def test_policy_term_is_trl_grpo_loss(loss_type, impl):
    case = make_case(seed=32, teacher=False, credit=False)
    config = SDPOLossConfig(loss_type=loss_type, kl_beta=0.04, epsilon_high=0.28, max_completion_length=12)
    out = fused_linear_sdpo_loss(**case, config=config, impl=impl)
    w = case["weight"].double()
    targets = case["targets"].clamp(min=0)
    logps = (
        torch.log_softmax(case["student_hidden"].double() @ w.T, -1)
        .gather(-1, targets[..., None])
        .squeeze(-1)
    )
    T = targets.shape[1]
    expected = trl_grpo_loss(
        logps, case["old_logprobs"], case["ref_logprobs"], case["advantages"], case["mask"], config, T
    )
    assert float(out.pg_loss) == pytest.approx(float(expected), rel=1e-4, abs=1e-7)
