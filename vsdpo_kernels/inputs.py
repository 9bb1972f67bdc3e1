"""Input validation and flattening shared by every implementation.

The implementations work on the valid (unmasked) tokens only, flattened to ``[n, D]``; this module
checks the user's tensors, names the argument at fault, and builds that compact view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


@dataclass
class LossInputs:
    """The user's tensors, checked. Per-token tensors are ``[B, T]``; ``valid`` indexes flat tokens."""

    student_hidden: torch.Tensor  # [B, T, D]
    weight: torch.Tensor  # [V, D]
    targets: torch.Tensor  # [B, T] int64, 0 where masked
    teacher_hidden: torch.Tensor | None
    advantages: torch.Tensor | None  # [B, T] float32 (broadcast from [B])
    old_logprobs: torch.Tensor | None
    ref_logprobs: torch.Tensor | None
    credit: torch.Tensor | None
    mask: torch.Tensor  # [B, T] bool
    num_items_in_batch: float | None

    def valid_index(self) -> torch.Tensor:
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


def check_inputs(
    student_hidden,
    weight,
    targets,
    *,
    teacher_hidden=None,
    advantages=None,
    old_logprobs=None,
    ref_logprobs=None,
    credit=None,
    mask=None,
    num_items_in_batch=None,
    kl_beta: float = 0.0,
) -> LossInputs:
    for name, t in (("student_hidden", student_hidden), ("weight", weight), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if student_hidden.dim() != 3:
        raise ValueError(f"student_hidden: expected [B, T, D], got {_describe(student_hidden)}")
    if student_hidden.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"student_hidden: expected dtype float32, bfloat16, float16 or float64, got {student_hidden.dtype}"
        )
    B, T, D = student_hidden.shape
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
    V = weight.shape[0]
    if teacher_hidden is not None:
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

    shape = (B, T)
    if mask is None:
        mask = torch.ones(shape, dtype=torch.bool, device=device)
    _check_per_token("mask", mask, shape, device)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask: expected dtype torch.bool, got {mask.dtype}")

    _check_per_token("targets", targets, shape, device)
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
    targets = torch.where(mask, targets, torch.zeros_like(targets))

    if advantages is not None:
        if not isinstance(advantages, torch.Tensor):
            raise TypeError(f"advantages: expected a torch.Tensor, got {type(advantages).__name__}")
        if advantages.dim() == 1:
            if advantages.shape[0] != B:
                raise ValueError(
                    f"advantages: expected [B]={B} or [B, T]={shape}, got {_describe(advantages)}"
                )
            if advantages.device != device:
                raise ValueError(f"advantages: expected device {device}, got {advantages.device}")
            advantages = advantages[:, None].expand(B, T)
        else:
            _check_per_token("advantages", advantages, shape, device)
    _check_per_token("old_logprobs", old_logprobs, shape, device)
    _check_per_token("ref_logprobs", ref_logprobs, shape, device)
    _check_per_token("credit", credit, shape, device)
    if kl_beta > 0 and advantages is not None and ref_logprobs is None:
        raise ValueError("ref_logprobs: required when config.kl_beta > 0, got None")

    def as_float(name, t):
        if t is None:
            return None
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating dtype, got {t.dtype}")
        t = t.detach().float()
        if not bool(torch.isfinite(t[mask]).all()):
            raise ValueError(f"{name}: expected finite values at unmasked positions, got NaN or inf")
        return t

    advantages = as_float("advantages", advantages)
    old_logprobs = as_float("old_logprobs", old_logprobs)
    ref_logprobs = as_float("ref_logprobs", ref_logprobs)
    credit = as_float("credit", credit)
    if credit is not None and bool((credit[mask] < 0).any()):
        raise ValueError("credit: expected weights >= 0, got a negative value")

    # Non-finite hidden states would silently poison every logit of the token.
    if not bool(torch.isfinite(student_hidden).all()):
        raise ValueError("student_hidden: expected finite values, got NaN or inf")
    if teacher_hidden is not None and not bool(torch.isfinite(teacher_hidden).all()):
        raise ValueError("teacher_hidden: expected finite values, got NaN or inf")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("weight: expected finite values, got NaN or inf")

    if num_items_in_batch is not None:
        num_items_in_batch = float(num_items_in_batch)
        if not num_items_in_batch > 0:
            raise ValueError(f"num_items_in_batch: expected > 0, got {num_items_in_batch}")

    return LossInputs(
        student_hidden=student_hidden,
        weight=weight,
        targets=targets,
        teacher_hidden=teacher_hidden,
        advantages=advantages,
        old_logprobs=old_logprobs,
        ref_logprobs=ref_logprobs,
        credit=credit,
        mask=mask,
        num_items_in_batch=num_items_in_batch,
    )
