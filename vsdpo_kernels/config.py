"""Configuration and output types of the fused linear SDPO + GRPO loss."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# The one list of each: both trainers (vsdpo.train.config, vsdpo.integrations.trl) take their choices
# from here. ``loss_type`` names the token aggregation as TRL's GRPO; ``impl`` the implementation.
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
IMPLS = ("auto", "triton", "cpu", "torch", "reference")
_FLOAT_FIELDS = ("beta", "temperature", "sd_weight", "pg_weight", "epsilon_low", "epsilon_high", "kl_beta")


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except (TypeError, ValueError):  # not a number at all (None, a string, a tensor of several values)
        return False


@dataclass(frozen=True)
class SDPOLossConfig:
    """Hyper-parameters of ``L = pg_weight * L_grpo + sd_weight * L_distill``.

    ``beta`` picks the generalized JSD as in TRL's ``generalized_jsd_loss``: 0 is forward
    KL(teacher || student), 1 is reverse KL(student || teacher), in between the mixture JSD.
    ``loss_type`` names the token aggregation of both terms, as TRL's GRPO.
    """

    beta: float = 0.5
    temperature: float = 1.0
    sd_weight: float = 1.0
    pg_weight: float = 1.0
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    kl_beta: float = 0.0
    loss_type: str = "dapo"
    max_completion_length: int | None = None

    def __post_init__(self):
        # Infinity passes every bound below (inf > 0, inf >= 0) and turns the loss into inf or NaN
        # without an error, so every float is checked to be finite first.
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if not _finite(value):
                raise ValueError(f"SDPOLossConfig.{name}: expected a finite number, got {value!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"SDPOLossConfig.beta: expected a float in [0, 1], got {self.beta!r}")
        if not self.temperature > 0:
            raise ValueError(f"SDPOLossConfig.temperature: expected > 0, got {self.temperature!r}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"SDPOLossConfig.loss_type: expected one of {LOSS_TYPES}, got {self.loss_type!r}"
            )
        for name in ("epsilon_low", "epsilon_high", "kl_beta", "sd_weight", "pg_weight"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"SDPOLossConfig.{name}: expected >= 0, got {value!r}")
        length = self.max_completion_length
        if length is not None and (not _finite(length) or length < 1):
            raise ValueError(
                f"SDPOLossConfig.max_completion_length: expected a positive int or None, "
                f"got {self.max_completion_length!r}"
            )


@dataclass
class SDPOLossOutput:
    """What the loss returns. Everything but ``loss`` is detached, for logging."""

    loss: torch.Tensor  # scalar, differentiable w.r.t. student_hidden and weight
    pg_loss: torch.Tensor  # scalar: the aggregated policy term (before pg_weight)
    sd_loss: torch.Tensor  # scalar: the aggregated, credit-weighted distillation term (before sd_weight)
    logprobs: torch.Tensor  # [B, T] log-prob of each target at the temperature (0 where masked)
    divergence: torch.Tensor  # [B, T] per-token divergence D, without credit (0 where masked or no teacher)
    entropy: torch.Tensor  # [B, T] student entropy at the temperature (0 where masked)
    clip_fraction: torch.Tensor  # scalar: share of valid tokens whose ratio was clipped
