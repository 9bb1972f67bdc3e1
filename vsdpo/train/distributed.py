"""Several processes through ``torchrun``, the model sharded with FSDP2 (``fully_shard``).

    torchrun --nproc_per_node 8 -m vsdpo.train --config qwen3vl_8b_chart

Each rank samples its own prompts (the step's batch is split across ranks), generates and renders its
rollouts, and computes its part of the loss; the dapo normaliser (``num_items_in_batch``) is the
response-token count summed over all ranks, so the gradient equals the single-process one. NCCL on
GPUs, gloo on CPUs. A single process (no ``torchrun``) uses none of this.

The fused loss reads the ``lm_head`` weight directly instead of calling ``lm_head`` on hidden states,
so it must run inside a module's forward for FSDP2 to gather that weight and reduce its gradient:
``LossHead`` replaces the model's output layer with a Linear whose forward, given loss inputs, returns
the fused loss, and plain logits otherwise (as generate needs).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import fully_shard

from vsdpo_kernels import SDPOLossConfig, fused_linear_sdpo_loss_from


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init() -> torch.device:
    """Join the process group when launched by torchrun; returns this rank's device."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group(backend=backend)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shutdown() -> None:
    if is_distributed():
        torch.distributed.destroy_process_group()


def all_reduce_sum(value: float | torch.Tensor) -> float:
    tensor = torch.as_tensor(value, dtype=torch.float64)
    if is_distributed():
        if torch.distributed.get_backend() == "nccl":
            tensor = tensor.cuda()
        torch.distributed.all_reduce(tensor)
    return float(tensor)


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any) -> Any:
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


class LossHead(nn.Linear):
    """The model's output layer, which can also compute the fused SDPO loss from hidden states.

    ``head(hidden)`` returns logits as the original layer did. ``head(hidden, batch, config=...,
    impl=...)`` returns ``(loss, output)`` of ``vsdpo_kernels.fused_linear_sdpo_loss_from`` on
    ``batch.loss_inputs(hidden, self.weight)`` (a ``vsdpo.train.batch.GroupBatch``), inside this
    module's forward so that FSDP gathers the weight and reduces its gradient.
    """

    @classmethod
    def replace(cls, model: nn.Module) -> LossHead:
        old = model.get_output_embeddings()
        if isinstance(old, LossHead):
            return old
        head = cls.__new__(cls)
        nn.Module.__init__(head)
        head.in_features, head.out_features = old.in_features, old.out_features
        head.weight = old.weight  # the same Parameter: tying and optimizer state are unchanged
        head.bias = old.bias
        model.set_output_embeddings(head)
        return head

    def forward(
        self,
        hidden: torch.Tensor,
        batch: Any = None,
        *,
        config: SDPOLossConfig | None = None,
        impl: str = "auto",
    ):
        if batch is None:
            return super().forward(hidden)
        out = fused_linear_sdpo_loss_from(batch.loss_inputs(hidden, self.weight), config=config, impl=impl)
        return out.loss, out


def shard_model(model: nn.Module) -> nn.Module:
    """FSDP2, inner units first: decoder layers and vision blocks, then the vision tower, the input
    embedding and the text model as units of their own (generate and the shared passes call them
    directly, not only through the root's forward), the output layer, and the root."""
    for module in model.modules():
        name = type(module).__name__
        if name.endswith("DecoderLayer") or name.endswith("VisionBlock"):
            fully_shard(module)
    fully_shard(model.get_input_embeddings())
    for name, module in model.named_modules():
        if name.split(".")[-1] in ("visual", "vision_tower", "language_model"):
            fully_shard(module)
    fully_shard(model.get_output_embeddings())
    fully_shard(model)
    return model


def prepare(model: nn.Module, teacher, config) -> nn.Module:
    """Give the model its ``LossHead``; under torchrun, shard it (and an EMA/reference copy) with FSDP2."""
    LossHead.replace(model)
    if is_distributed():
        models = [model] + [m for m in (teacher.model, teacher.reference_model) if m is not None]
        for sharded in models:
            LossHead.replace(sharded)
            shard_model(sharded)
            _initialise_from_root(sharded)
    return model


def _initialise_from_root(model: nn.Module) -> None:
    """FSDP2 sets itself up on the first forward, which must go through the root; generate calls the
    vision tower first, so one text-only token goes through the root here."""
    device = model.get_input_embeddings().weight.device
    with torch.no_grad():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=False)
