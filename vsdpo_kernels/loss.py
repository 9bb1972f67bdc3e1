"""The public entry points: ``fused_linear_sdpo_loss`` (or ``fused_linear_sdpo_loss_from`` with one
``LossInputs``) and ``linear_logprobs``.

One ``autograd.Function`` wires every fused implementation through the ``Backend`` contract
(backend.py): a backend reduces the vocabulary to per-token statistics (``stats``) and, given the
per-token coefficients ``a = dL/dlogp`` and ``b = dL/dD`` (terms.py), produces the gradients w.r.t.
the hidden states and the weight (``grads``). The loss is the graph's last node, so by default the
gradients are computed in the forward pass and the backward only scales them (``grad_in_forward``);
the alternative recomputes them in the backward.
"""

from __future__ import annotations

import torch

from vsdpo_kernels.backend import Backend, FusedBackend, load_backend, resolve_impl
from vsdpo_kernels.config import SDPOLossConfig, SDPOLossOutput
from vsdpo_kernels.inputs import LossInputs, check_inputs
from vsdpo_kernels.reference import reference_sdpo_loss
from vsdpo_kernels.stats import Stats
from vsdpo_kernels.terms import Coefficients


class _FusedSDPOLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hs, weight, ht, targets, backend: Backend, coefficients, config, grad_in_forward):
        beta, temperature = config.beta, config.temperature
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        if needs_grad and grad_in_forward and isinstance(backend, FusedBackend):
            st, coeff, grad_hs, grad_w = backend.fused(
                hs, ht, weight, targets, coefficients, temperature=temperature, beta=beta
            )
        else:
            st = backend.stats(hs, ht, weight, targets, temperature=temperature, beta=beta)
            coeff = coefficients(st.logp, st.divergence)
            grad_hs = grad_w = None
            if needs_grad and grad_in_forward:
                grad_hs, grad_w = backend.grads(
                    hs, ht, weight, targets, st, coeff.a, coeff.b, temperature=temperature, beta=beta
                )
        loss = config.pg_weight * coeff.pg_loss + config.sd_weight * coeff.sd_loss
        if needs_grad:
            if grad_in_forward:
                ctx.save_for_backward(grad_hs, grad_w)
            else:
                ctx.save_for_backward(hs, weight, ht, targets, coeff.a, coeff.b)
                ctx.stats = st
            ctx.backend, ctx.config, ctx.grad_in_forward = backend, config, grad_in_forward
            ctx.dtypes = (hs.dtype, weight.dtype)
        extras = [
            coeff.pg_loss.detach(),
            coeff.sd_loss.detach(),
            coeff.clipped.detach(),
            st.logp,
            st.entropy,
            st.divergence if st.divergence is not None else torch.zeros_like(st.logp),
        ]
        ctx.mark_non_differentiable(*extras)
        return (loss, *extras)

    @staticmethod
    def backward(ctx, grad_loss, *unused):
        if ctx.grad_in_forward:
            grad_hs, grad_w = ctx.saved_tensors
        else:
            hs, weight, ht, targets, a, b = ctx.saved_tensors
            grad_hs, grad_w = ctx.backend.grads(
                hs,
                ht,
                weight,
                targets,
                ctx.stats,
                a,
                b,
                temperature=ctx.config.temperature,
                beta=ctx.config.beta,
            )
        hs_dtype, w_dtype = ctx.dtypes
        # The loss is usually the graph's last node (grad_loss == 1): skip a [V, D] copy then.
        scale = lambda g: g if torch.equal(grad_loss, torch.ones_like(grad_loss)) else g * grad_loss
        grad_hs = scale(grad_hs).to(hs_dtype) if ctx.needs_input_grad[0] else None
        grad_w = scale(grad_w).to(w_dtype) if ctx.needs_input_grad[1] else None
        return grad_hs, grad_w, None, None, None, None, None, None


def _scatter(values: torch.Tensor, valid: torch.Tensor, shape, all_valid: bool) -> torch.Tensor:
    if all_valid:
        return values.reshape(shape)
    out = values.new_zeros(shape[0] * shape[1])
    out[valid] = values
    return out.reshape(shape)


def fused_linear_sdpo_loss(
    student_hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    teacher_hidden: torch.Tensor | None = None,
    advantages: torch.Tensor | None = None,
    old_logprobs: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    credit: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    num_items_in_batch: float | torch.Tensor | None = None,
    config: SDPOLossConfig = SDPOLossConfig(),
    impl: str = "auto",
    grad_in_forward: bool = True,
) -> SDPOLossOutput:
    """Credit-weighted self-distillation plus GRPO, from hidden states and the lm_head weight.

    ``student_hidden[b, t]`` predicts ``targets[b, t]``. ``teacher_hidden=None`` turns the
    distillation term off, ``advantages=None`` the policy term. ``num_items_in_batch`` is the dapo
    normaliser: the valid-token count of the whole accumulated batch (over all ranks, divided by the
    number of ranks when the data-parallel wrapper averages gradients). ``impl``: "auto" picks
    "triton" on CUDA and "cpu" on CPU tensors; only "reference" materialises the logits.
    ``grad_in_forward=False`` recomputes the gradients in the backward instead of holding them from
    the forward (no float32 [V, D] buffer between the two passes; more compute). See
    ``SDPOLossConfig`` for the maths and ``LossInputs`` for the shapes and defaults of the tensors.
    """
    inputs = LossInputs(
        student_hidden,
        weight,
        targets,
        teacher_hidden=teacher_hidden,
        advantages=advantages,
        old_logprobs=old_logprobs,
        ref_logprobs=ref_logprobs,
        credit=credit,
        mask=mask,
        num_items_in_batch=num_items_in_batch,
    )
    return fused_linear_sdpo_loss_from(inputs, config=config, impl=impl, grad_in_forward=grad_in_forward)


def fused_linear_sdpo_loss_from(
    inputs: LossInputs,
    *,
    config: SDPOLossConfig = SDPOLossConfig(),
    impl: str = "auto",
    grad_in_forward: bool = True,
) -> SDPOLossOutput:
    """``fused_linear_sdpo_loss`` with its tensors in one ``LossInputs``."""
    if not isinstance(config, SDPOLossConfig):
        raise TypeError(f"config: expected an SDPOLossConfig, got {type(config).__name__}")
    inputs = check_inputs(inputs, kl_beta=config.kl_beta)
    student_hidden, weight = inputs.student_hidden, inputs.weight
    impl = resolve_impl(impl, student_hidden.device)
    if impl == "reference":
        return SDPOLossOutput(*reference_sdpo_loss(inputs, config))

    B, T = student_hidden.shape[:2]
    valid = inputs.valid_index()
    n_valid = valid.numel()
    if n_valid == 0:
        zero = (student_hidden.sum() * 0.0 + weight.sum() * 0.0).float()
        z = student_hidden.new_zeros((B, T), dtype=torch.float32)
        return SDPOLossOutput(zero, zero.detach(), zero.detach(), z, z.clone(), z.clone(), zero.detach())
    all_valid = n_valid == B * T
    flat = lambda t: t.reshape(B * T, -1) if all_valid else t.reshape(B * T, -1)[valid]
    ht = None if inputs.teacher_hidden is None else flat(inputs.teacher_hidden).contiguous()
    y = inputs.targets.reshape(-1) if all_valid else inputs.targets.reshape(-1)[valid]
    loss, pg, sd, clipped, logp, entropy, divergence = _FusedSDPOLoss.apply(
        flat(student_hidden).contiguous(),
        weight,
        ht,
        y.contiguous(),
        load_backend(impl),
        Coefficients(inputs, config, valid),
        config,
        grad_in_forward,
    )
    return SDPOLossOutput(
        loss=loss,
        pg_loss=pg,
        sd_loss=sd,
        logprobs=_scatter(logp, valid, (B, T), all_valid),
        divergence=_scatter(divergence, valid, (B, T), all_valid),
        entropy=_scatter(entropy, valid, (B, T), all_valid),
        clip_fraction=clipped / n_valid,
    )


class _LinearLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hs, weight, targets, backend: Backend, temperature):
        st: Stats = backend.stats(hs, None, weight, targets, temperature=temperature, beta=0.0)
        ctx.save_for_backward(hs, weight, targets, st.lse_s)
        ctx.backend, ctx.temperature = backend, temperature
        ctx.mark_non_differentiable(st.entropy)
        return st.logp, st.entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        hs, weight, targets, lse_s = ctx.saved_tensors
        st = Stats(logp=None, entropy=None, lse_s=lse_s)
        grad_hs, grad_w = ctx.backend.grads(
            hs,
            None,
            weight,
            targets,
            st,
            grad_logp.float(),
            torch.zeros_like(lse_s),
            temperature=ctx.temperature,
            beta=0.0,
        )
        return grad_hs.to(hs.dtype), grad_w.to(weight.dtype), None, None, None


def linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(targets), entropy)``, each ``[B, T]`` float32, at ``temperature``, without logits.

    The log-probs are differentiable w.r.t. ``hidden`` and ``weight`` (recomputed in the backward);
    the entropy is detached.
    """
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature!r}")
    inputs = check_inputs(LossInputs(hidden, weight, targets))
    impl = resolve_impl(impl, hidden.device)
    B, T, D = hidden.shape
    if impl == "reference":
        compute = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        logits = (hidden.to(compute) @ weight.to(compute).T) / temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, inputs.targets[..., None]).squeeze(-1)
        return logp, -(logp_all.exp() * logp_all).sum(-1).detach()
    logp, entropy = _LinearLogprobs.apply(
        hidden.reshape(B * T, D).contiguous(),
        weight,
        inputs.targets.reshape(-1),
        load_backend(impl),
        float(temperature),
    )
    return logp.reshape(B, T), entropy.reshape(B, T)
