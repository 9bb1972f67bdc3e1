"""The loss's inputs as one typed object, and their validation, shared by every implementation.

``LossInputs`` carries the user's tensors from the public function to the implementations;
``check_inputs`` checks them, names the argument at fault, and puts them in the form the
implementations work on (they then keep the valid tokens only, flattened to ``[n, D]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


@dataclass(frozen=True, eq=False)
class LossInputs:
    """The tensors of one loss call: ``B`` sequences of ``T`` response tokens, hidden size ``D``,
    vocabulary ``V``. Only the first three are required; what the others default to is noted.

    ``check_inputs`` returns a checked copy in the form the implementations use: ``mask`` filled in,
    ``targets`` int64 with 0 where masked, the per-token floats detached float32 ``[B, T]``
    (``advantages`` broadcast from ``[B]``) and ``num_items_in_batch`` a float.
    """

    student_hidden: torch.Tensor  # [B, T, D]; differentiable
    weight: torch.Tensor  # [V, D], the lm_head; differentiable
    targets: torch.Tensor  # [B, T] int: the sampled tokens (anything where masked)
    teacher_hidden: torch.Tensor | None = None  # [B, T, D] without grad; None: no distillation term
    advantages: torch.Tensor | None = None  # [B] or [B, T]; None: no policy term
    old_logprobs: torch.Tensor | None = None  # [B, T] behaviour log-probs; None: logp.detach()
    ref_logprobs: torch.Tensor | None = None  # [B, T]; required by the KL penalty (config.kl_beta > 0)
    credit: torch.Tensor | None = None  # [B, T] distillation weights >= 0; None: 1
    mask: torch.Tensor | None = None  # [B, T] bool; None: every token
    num_items_in_batch: float | torch.Tensor | None = None  # dapo normaliser; None: the valid tokens

    def valid_index(self) -> torch.Tensor:
        """Flat indices of the unmasked tokens (of checked inputs)."""
        return self.mask.reshape(-1).nonzero().squeeze(1)


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def _check_per_token(name: str, t: torch.Tensor | None, shape: tuple[int, int], device) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {shape}, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape} (batch, tokens), got {_describe(t)}")
    if t.device != device:
        raise ValueError(f"{name}: expected device {device} (that of student_hidden), got {t.device}")


def _check_hidden(student_hidden, weight, teacher_hidden) -> None:
    """The hidden states and the weight: shapes, dtypes, devices, the teacher stop-gradient."""
    if student_hidden.dim() != 3:
        raise ValueError(f"student_hidden: expected [B, T, D], got {_describe(student_hidden)}")
    if student_hidden.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"student_hidden: expected dtype float32, bfloat16, float16 or float64, got {student_hidden.dtype}"
        )
    D = student_hidden.shape[2]
    device = student_hidden.device
    if weight.dim() != 2 or weight.shape[1] != D:
        raise ValueError(f"weight: expected [V, D] with D={D} (from student_hidden), got {_describe(weight)}")
    if weight.device != device:
        raise ValueError(
            f"weight: expected device {device} (that of student_hidden), got {weight.device}; "
            "move both to the same device"
        )
    if weight.dtype != student_hidden.dtype:
        raise TypeError(
            f"weight: expected dtype {student_hidden.dtype} (that of student_hidden), got {weight.dtype}"
        )
    if teacher_hidden is None:
        return
    if not isinstance(teacher_hidden, torch.Tensor):
        raise TypeError(f"teacher_hidden: expected a torch.Tensor, got {type(teacher_hidden).__name__}")
    if teacher_hidden.shape != student_hidden.shape:
        raise ValueError(
            f"teacher_hidden: expected shape {tuple(student_hidden.shape)} (that of student_hidden), "
            f"got {_describe(teacher_hidden)}"
        )
    if teacher_hidden.device != device:
        raise ValueError(f"teacher_hidden: expected device {device}, got {teacher_hidden.device}")
    if teacher_hidden.dtype != student_hidden.dtype:
        raise TypeError(
            f"teacher_hidden: expected dtype {student_hidden.dtype} (that of student_hidden), "
            f"got {teacher_hidden.dtype}"
        )
    if teacher_hidden.requires_grad:
        raise ValueError(
            "teacher_hidden: expected a tensor without grad (the teacher is stop-gradient), got one that "
            "requires grad; pass teacher_hidden.detach() or compute it under torch.no_grad()"
        )


def _checked_targets(targets, mask, V: int) -> torch.Tensor:
    """``targets`` as int64, in ``[0, V)`` where unmasked and 0 where masked."""
    if targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"targets: expected an integer dtype (int64), got {targets.dtype}")
    targets = targets.long()
    in_range = (targets >= 0) & (targets < V)
    bad = mask & ~in_range
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"targets: expected token ids in [0, {V}) (vocabulary of weight) at unmasked positions, "
            f"got {int(targets[b, t])} at [{b}, {t}]"
        )
    return torch.where(mask, targets, torch.zeros_like(targets))


def _per_token_advantages(advantages, shape: tuple[int, int], device):
    """``advantages`` of shape ``[B, T]``, broadcast from ``[B]``."""
    if advantages is None:
        return None
    if not isinstance(advantages, torch.Tensor):
        raise TypeError(f"advantages: expected a torch.Tensor, got {type(advantages).__name__}")
    B, T = shape
    if advantages.dim() == 1:
        if advantages.shape[0] != B:
            raise ValueError(f"advantages: expected [B]={B} or [B, T]={shape}, got {_describe(advantages)}")
        if advantages.device != device:
            raise ValueError(f"advantages: expected device {device}, got {advantages.device}")
        return advantages[:, None].expand(B, T)
    _check_per_token("advantages", advantages, shape, device)
    return advantages


def _finite_float(name: str, t, mask) -> torch.Tensor | None:
    """A per-token float input, detached float32, finite where unmasked."""
    if t is None:
        return None
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype, got {t.dtype}")
    t = t.detach().float()
    if not bool(torch.isfinite(t[mask]).all()):
        raise ValueError(f"{name}: expected finite values at unmasked positions, got NaN or inf")
    return t


def check_inputs(inputs: LossInputs, *, kl_beta: float = 0.0) -> LossInputs:
    """``inputs`` checked and normalised (see ``LossInputs``); an error names the argument at fault,
    what it expected and what it got. ``kl_beta`` is the config's: ``ref_logprobs`` is required then."""
    if not isinstance(inputs, LossInputs):
        raise TypeError(f"inputs: expected a LossInputs, got {type(inputs).__name__}")
    for name in ("student_hidden", "weight", "targets"):
        if not isinstance(getattr(inputs, name), torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(getattr(inputs, name)).__name__}")
    student_hidden, weight, teacher_hidden = inputs.student_hidden, inputs.weight, inputs.teacher_hidden
    _check_hidden(student_hidden, weight, teacher_hidden)
    B, T, _ = student_hidden.shape
    shape, device = (B, T), student_hidden.device

    mask = inputs.mask
    if mask is None:
        mask = torch.ones(shape, dtype=torch.bool, device=device)
    _check_per_token("mask", mask, shape, device)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask: expected dtype torch.bool, got {mask.dtype}")
    _check_per_token("targets", inputs.targets, shape, device)
    targets = _checked_targets(inputs.targets, mask, weight.shape[0])

    advantages = _per_token_advantages(inputs.advantages, shape, device)
    for name in ("old_logprobs", "ref_logprobs", "credit"):
        _check_per_token(name, getattr(inputs, name), shape, device)
    if kl_beta > 0 and advantages is not None and inputs.ref_logprobs is None:
        raise ValueError("ref_logprobs: required when config.kl_beta > 0, got None")
    advantages = _finite_float("advantages", advantages, mask)
    old_logprobs = _finite_float("old_logprobs", inputs.old_logprobs, mask)
    ref_logprobs = _finite_float("ref_logprobs", inputs.ref_logprobs, mask)
    credit = _finite_float("credit", inputs.credit, mask)
    if credit is not None and bool((credit[mask] < 0).any()):
        raise ValueError("credit: expected weights >= 0, got a negative value")

    # Non-finite hidden states would silently poison every logit of the token.
    if not bool(torch.isfinite(student_hidden).all()):
        raise ValueError("student_hidden: expected finite values, got NaN or inf")
    if teacher_hidden is not None and not bool(torch.isfinite(teacher_hidden).all()):
        raise ValueError("teacher_hidden: expected finite values, got NaN or inf")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("weight: expected finite values, got NaN or inf")

    # The dapo normaliser divides every token's term: inf turns the loss into 0 and NaN into NaN,
    # both without an error, so it must be a finite count.
    num_items_in_batch = inputs.num_items_in_batch
    if num_items_in_batch is not None:
        given = num_items_in_batch
        try:
            num_items_in_batch = float(given)  # a 1-element tensor too
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"num_items_in_batch: expected a finite number > 0 (a float or a 1-element tensor), "
                f"got {given!r}"
            ) from None
        if not math.isfinite(num_items_in_batch) or not num_items_in_batch > 0:
            raise ValueError(f"num_items_in_batch: expected a finite number > 0, got {num_items_in_batch}")

    return replace(
        inputs,
        targets=targets,
        advantages=advantages,
        old_logprobs=old_logprobs,
        ref_logprobs=ref_logprobs,
        credit=credit,
        mask=mask,
        num_items_in_batch=num_items_in_batch,
    )
