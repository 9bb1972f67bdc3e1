"""Fused linear SDPO + GRPO loss kernels (torch and triton only; no transformers, no renderers)."""

__version__ = "0.1.0"
