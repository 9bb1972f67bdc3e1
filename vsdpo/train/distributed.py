"""Several processes through ``torchrun``, the model sharded with FSDP2 (``fully_shard``).

    torchrun --nproc_per_node 8 -m vsdpo.train --config qwen3vl_8b_chart

Each rank samples its own prompts (the step's batch is split across ranks), generates and renders its
rollouts, and computes its part of the loss; the dapo normaliser (``num_items_in_batch``) is the
response-token count summed over all ranks, so the gradient equals the single-process one. NCCL on
GPUs, gloo on CPUs. A single process (no ``torchrun``) uses none of this.

The fused loss (vsdpo.train.loss.LossHead) reads the output layer's weight directly instead of calling
the layer on hidden states, and FSDP2 gathers a module's weights, and reduces their gradients, only
around that module's forward: ``as_forward_of`` runs the loss as a forward of the output layer, which
``shard_model`` registers with FSDP2 (``register_fsdp_forward_method``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from vsdpo.train.config import TrainConfig
    from vsdpo.train.teacher import Teacher

Result = TypeVar("Result")
FORWARD_METHOD = "run_as_forward"  # the output layer's method that FSDP2 treats as a forward


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


def as_forward_of(module: nn.Module, fn: Callable[..., Result], *args: Any) -> Result:
    """``fn(*args)`` as a forward of ``module``: under FSDP2 its parameters are gathered for the call
    and their gradients reduced after the backward, as for ``module(*args)``; otherwise just the call.
    ``fn`` must compute from the ``args`` it is given (FSDP2 hooks the tensors in them for the backward:
    inputs only, not ``module``'s own parameters) and return its differentiable tensors where FSDP2
    sees them (a tensor, or in a tuple)."""
    if not isinstance(module, FSDPModule):
        return fn(*args)
    return getattr(module, FORWARD_METHOD)(fn, *args)


def _call(fn: Callable[..., Result], *args: Any) -> Result:
    return fn(*args)


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
    output_layer = model.get_output_embeddings()
    fully_shard(output_layer)
    setattr(output_layer, FORWARD_METHOD, _call)  # the loss runs through it (as_forward_of)
    register_fsdp_forward_method(output_layer, FORWARD_METHOD)
    fully_shard(model)
    return model


def prepare(model: PreTrainedModel, teacher: Teacher, config: TrainConfig) -> PreTrainedModel:
    """Under torchrun, shard the model (and an EMA/reference copy) with FSDP2; else the model as it is."""
    if is_distributed():
        models = [model] + [m for m in (teacher.model, teacher.reference_model) if m is not None]
        for sharded in models:
            shard_model(sharded)
            _initialise_from_root(sharded)
    return model


def _initialise_from_root(model: nn.Module) -> None:
    """FSDP2 sets itself up on the first forward, which must go through the root; generate calls the
    vision tower first, so one text-only token goes through the root here."""
    device = model.get_input_embeddings().weight.device
    with torch.no_grad():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=False)
