"""Student and teacher hidden states of one rollout group, sharing the prompt's work.

The student sees ``prompt ⊕ response``; the teacher (the same weights, stop-gradient) sees
``prompt ⊕ feedback ⊕ response``, where the feedback is the rollout's render and defect report, or its
execution error. All G rollouts of a group share one prompt, and in a vision-language task that prompt
carries the target image, often the longest part of every sequence.

``student_teacher_hidden(model, group)`` encodes the prompt (vision tower included) once, with
gradient, and keeps its key/value cache. The student continues all G responses from that cache in one
right-padded batch; the teacher continues ``feedback ⊕ response`` from the same cache, detached, under
``torch.no_grad``. The prompt's cost is paid once instead of 2G times, and the teacher's cost is
proportional to its feedback plus response length.

Layout of each sequence, and which hidden state lands where::

    student:  prompt | generation_prompt            | response[:-1]
    teacher:  prompt | feedback | generation_prompt | response[:-1]

``hs[g, t]`` is the final hidden state (after the final norm, the input of ``lm_head``) at the position
just before response token ``t``: the one that predicts it. For ``t = 0`` that is the last token before
the response (the last prompt or generation-prompt token for the student, the last feedback or
generation-prompt token for the teacher). The last response token predicts nothing we need, so it is
never fed. Logits are never computed: the hidden states feed ``vsdpo_kernels``' fused loss.

Rollouts whose ``feedback_ids`` is None (or empty) have no privileged context: their teacher row is
the student row, detached (``ht[g] = hs[g].detach()``), so their distillation divergence is zero and
only the policy-gradient term acts on them. ``ht`` is None when no rollout has feedback.

Attention: right padding under a causal mask never reaches a real token, and the padding is also
masked explicitly with a 2D attention mask, the form Hugging Face's sdpa and eager paths take and
its flash-attention path turns into varlen calls (tested here: sdpa, on the CPU).

Gradient checkpointing: the caches here never change what a layer reads. The prompt pass records
each layer's keys and values aside, and the continuations read the prompt's and return
``prompt ⊕ new`` without storing it, so a layer replayed in the backward sees the same state, and the
layers are told they may keep their cache under checkpointing (non-reentrant checkpointing only:
the reentrant kind runs the forward without autograd, cutting the prompt off its gradient).

Positions are passed explicitly: plain ``arange`` for text models, and for Qwen3-VL the multimodal
rotary positions of the full sequence (images in the prompt and in the feedback shift the later text
positions), computed once per batch with the model's own ``get_rope_index`` and sliced to the part
each pass feeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from vsdpo.sharing.group import RolloutGroup
from vsdpo.sharing.model import Backbone, ReadOnlyPrompt
from vsdpo.sharing.rows import Rows

__all__ = ["StudentTeacherHidden", "student_teacher_hidden"]


@dataclass(frozen=True)
class StudentTeacherHidden:
    """What ``student_teacher_hidden`` returns; unpacks as ``hs, ht``.

    - ``student_hidden`` [G, R_max, D]: row g, step t predicts response token t (zero where padded).
    - ``teacher_hidden`` [G, R_max, D] or None: the same for the teacher, without grad.
    - ``response_mask`` [G, R_max] bool: True on real response tokens.
    - ``has_feedback`` [G] bool: rows whose teacher saw feedback (the others copy the student).
    """

    student_hidden: Tensor
    teacher_hidden: Tensor | None
    response_mask: Tensor
    has_feedback: Tensor

    def __iter__(self) -> Iterator[Tensor | None]:
        return iter((self.student_hidden, self.teacher_hidden))


def student_teacher_hidden(model, group: RolloutGroup, reuse_prefix: bool = True) -> StudentTeacherHidden:
    """Final hidden states of the student and the teacher over every response token of ``group``.

    ``model`` is a Hugging Face causal LM or VLM (``Qwen3VLForConditionalGeneration``,
    ``Qwen3ForCausalLM``, ``LlamaForCausalLM``, ...) or its base model; only the base model runs.
    With ``reuse_prefix=True`` the prompt is encoded once and its KV cache continued by both passes;
    with ``reuse_prefix=False`` the plain full sequences run (the reference, same results).
    """
    if not isinstance(group, RolloutGroup):
        raise TypeError(f"group: expected a vsdpo.sharing.RolloutGroup, got {type(group).__name__}")
    backbone = Backbone(model)
    group = group.to(backbone.device)
    if group.has_images and not backbone.is_vlm:
        raise ValueError(
            f"group: holds pixel values, but model {type(model).__name__} has no vision tower "
            "(expected a vision-language model with get_rope_index, such as Qwen3-VL)"
        )
    G = group.num_rollouts
    generation_prompt = group.generation_prompt_ids
    student_rows = Rows.build(
        group, range(G), [generation_prompt] * G, [None] * G, [None] * G, backbone.pad_id
    )
    teacher_index = [g for g in range(G) if group.has_feedback(g)]
    teacher_rows = None
    if teacher_index:
        teacher_rows = Rows.build(
            group,
            teacher_index,
            [torch.cat([group.feedback_ids[g], generation_prompt]) for g in teacher_index],
            [group.feedback_pixel_values[g] for g in teacher_index],
            [group.feedback_image_grid_thw[g] for g in teacher_index],
            backbone.pad_id,
        )

    if reuse_prefix:
        with backbone.keeping_caches_under_checkpointing():
            student, teacher = _shared_passes(backbone, group, student_rows, teacher_rows)
    else:
        student = _full_pass(backbone, group, student_rows)
        teacher = None
        if teacher_rows is not None:
            with torch.no_grad():
                teacher = _full_pass(backbone, group, teacher_rows)

    response_mask = student_rows.response_mask()
    hs = student.masked_fill(~response_mask[..., None], 0.0)
    has_feedback = torch.zeros(G, dtype=torch.bool, device=hs.device)
    has_feedback[teacher_index] = True
    ht = None
    if teacher is not None:
        ht = hs.detach().clone()
        ht[teacher_index] = teacher.masked_fill(~teacher_rows.response_mask()[..., None], 0.0).to(ht.dtype)
    return StudentTeacherHidden(hs, ht, response_mask, has_feedback)


# ------------------------------------------------------------------------------------------------
# The two ways of running a batch of rows


def _shared_passes(backbone: Backbone, group: RolloutGroup, student_rows: Rows, teacher_rows: Rows | None):
    """The prompt once with gradient, then the student and the teacher from its KV cache."""
    P = group.prompt_ids.numel()
    student_positions = backbone.positions(group, student_rows)
    prefix_positions = student_positions[..., :1, :P]
    prompt_states, prefix_kv = backbone.prefix(group, prefix_positions)
    last_prompt_state = prompt_states[:, -1:]  # [1, 1, D]

    student = _continue(backbone, student_rows, prefix_kv, student_positions[..., P:])
    student = student_rows.gather(last_prompt_state, student)

    teacher = None
    if teacher_rows is not None:
        with torch.no_grad():
            detached_kv = [(k.detach(), v.detach()) for k, v in prefix_kv]
            teacher_positions = backbone.positions(group, teacher_rows)[..., P:]
            teacher = _continue(backbone, teacher_rows, detached_kv, teacher_positions)
            teacher = teacher_rows.gather(last_prompt_state.detach(), teacher)
    return student, teacher


def _continue(backbone: Backbone, rows: Rows, prefix_kv, positions: Tensor) -> Tensor | None:
    """Hidden states of ``rows``' continuation tokens, attending to the prompt through its cache."""
    if rows.continuation_ids.shape[1] == 0:
        return None
    n = rows.num_rows
    # Autograd reaches the prompt's keys and values through the out-of-place concatenation of the
    # read-only cache (expand's backward sums the n rows' gradients into the one prompt).
    expanded = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix_kv]
    cache = ReadOnlyPrompt(ddp_cache_data=expanded)
    P = prefix_kv[0][0].shape[-2]
    prompt_valid = rows.continuation_valid.new_ones(n, P)
    attention_mask = torch.cat([prompt_valid, rows.continuation_valid], dim=1).long()
    context_pixels, context_grid = rows.context_images()
    return backbone.forward(
        rows.continuation_ids,
        position_ids=positions,
        attention_mask=attention_mask,
        cache=cache,
        pixel_values=context_pixels,
        image_grid_thw=context_grid,
    )


def _full_pass(backbone: Backbone, group: RolloutGroup, rows: Rows) -> Tensor:
    """The reference: every row's full sequence ``prompt ⊕ context ⊕ response[:-1]``."""
    P = group.prompt_ids.numel()
    n = rows.num_rows
    input_ids = torch.cat([group.prompt_ids.expand(n, -1), rows.continuation_ids], dim=1)
    valid = torch.cat([rows.continuation_valid.new_ones(n, P), rows.continuation_valid], dim=1)
    pixel_values, image_grid_thw = rows.full_images(group)
    states = backbone.forward(
        input_ids,
        position_ids=None,  # the model derives its own positions: an independent check of ours
        attention_mask=valid.long(),
        cache=None,
        pixel_values=pixel_values,
        image_grid_thw=image_grid_thw,
    )
    return rows.gather(states[:, P - 1 : P], states[:, P:])
