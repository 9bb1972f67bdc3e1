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

Positions are passed explicitly: plain
``arange`` for text models, and for Qwen3-VL the multimodal rotary positions of the full sequence
(images in the prompt and in the feedback shift the later text positions), computed once per batch
with the model's own ``get_rope_index`` and sliced to the part each pass feeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from vsdpo.sharing_model import Backbone, cache_classes

__all__ = ["RolloutGroup", "StudentTeacherHidden", "student_teacher_hidden"]


@dataclass(kw_only=True)
class RolloutGroup:
    """One prompt and its G rollouts, as token ids (and image patches) ready for the model.

    - ``prompt_ids`` [P]: the shared prompt, with the image placeholder tokens of its images.
    - ``prompt_pixel_values`` [patches, C*T*p*p] and ``prompt_image_grid_thw`` [images, 3]: the
      prompt's images as the model's image processor makes them (absent for text-only prompts).
    - ``response_ids``: G 1-D tensors, the sampled responses (unequal lengths allowed).
    - ``feedback_ids``: G entries, each a 1-D tensor (the teacher's privileged context, with its
      image placeholders) or None (no feedback for that rollout); None for the whole list means none.
    - ``feedback_pixel_values`` / ``feedback_image_grid_thw``: G entries each, the feedback's images
      (None where a feedback has no image).
    - ``generation_prompt_ids``: tokens that open the model's answer (a chat template's assistant
      header), placed after the feedback and before the response, in both student and teacher
      sequences; their hidden states are not returned. None when the prompt already ends with them
      and there is no feedback turn to put in between.
    """

    prompt_ids: Tensor
    prompt_pixel_values: Tensor | None = None
    prompt_image_grid_thw: Tensor | None = None
    response_ids: list[Tensor]
    feedback_ids: list[Tensor | None] | None = None
    feedback_pixel_values: list[Tensor | None] | None = None
    feedback_image_grid_thw: list[Tensor | None] | None = None
    generation_prompt_ids: Tensor | None = None

    @classmethod
    def from_text(cls, processor_or_tokenizer, prompt, responses, feedbacks=None, **kwargs) -> RolloutGroup:
        """Tokenize a group from plain text and PIL images; see ``vsdpo.sharing_build.group_from_text``."""
        from vsdpo.sharing_build import group_from_text

        return group_from_text(cls, processor_or_tokenizer, prompt, responses, feedbacks, **kwargs)

    def __post_init__(self) -> None:
        _check_ids("prompt_ids", self.prompt_ids, allow_empty=False)
        if not isinstance(self.response_ids, (list, tuple)) or len(self.response_ids) == 0:
            raise ValueError(
                f"response_ids: expected a non-empty list of 1-D LongTensors, got {self.response_ids!r}"
            )
        self.response_ids = list(self.response_ids)
        for g, response in enumerate(self.response_ids):
            _check_ids(f"response_ids[{g}]", response, allow_empty=True)
        G = len(self.response_ids)
        self.feedback_ids = _per_rollout("feedback_ids", self.feedback_ids, G)
        self.feedback_pixel_values = _per_rollout("feedback_pixel_values", self.feedback_pixel_values, G)
        self.feedback_image_grid_thw = _per_rollout(
            "feedback_image_grid_thw", self.feedback_image_grid_thw, G
        )
        for g, feedback in enumerate(self.feedback_ids):
            if feedback is not None:
                _check_ids(f"feedback_ids[{g}]", feedback, allow_empty=True)
        if self.generation_prompt_ids is None:
            self.generation_prompt_ids = self.prompt_ids.new_zeros(0)
        _check_ids("generation_prompt_ids", self.generation_prompt_ids, allow_empty=True)
        _check_images("prompt", self.prompt_pixel_values, self.prompt_image_grid_thw)
        for g in range(G):
            pixels, grid = self.feedback_pixel_values[g], self.feedback_image_grid_thw[g]
            _check_images(f"feedback[{g}]", pixels, grid)
            if pixels is not None and self.feedback_ids[g] is None:
                raise ValueError(f"feedback_pixel_values[{g}]: given, but feedback_ids[{g}] is None")

    @property
    def num_rollouts(self) -> int:
        return len(self.response_ids)

    @property
    def has_images(self) -> bool:
        return self.prompt_pixel_values is not None or any(p is not None for p in self.feedback_pixel_values)

    def has_feedback(self, g: int) -> bool:
        feedback = self.feedback_ids[g]
        return feedback is not None and feedback.numel() > 0

    def to(self, device: torch.device | str) -> RolloutGroup:
        move = lambda x: None if x is None else x.to(device)
        return RolloutGroup(
            prompt_ids=move(self.prompt_ids),
            prompt_pixel_values=move(self.prompt_pixel_values),
            prompt_image_grid_thw=move(self.prompt_image_grid_thw),
            response_ids=[move(r) for r in self.response_ids],
            feedback_ids=[move(f) for f in self.feedback_ids],
            feedback_pixel_values=[move(p) for p in self.feedback_pixel_values],
            feedback_image_grid_thw=[move(t) for t in self.feedback_image_grid_thw],
            generation_prompt_ids=move(self.generation_prompt_ids),
        )


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
    student_rows = _Rows.build(
        group, range(G), [generation_prompt] * G, [None] * G, [None] * G, backbone.pad_id
    )
    teacher_index = [g for g in range(G) if group.has_feedback(g)]
    teacher_rows = None
    if teacher_index:
        teacher_rows = _Rows.build(
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


def _shared_passes(backbone: Backbone, group: RolloutGroup, student_rows: _Rows, teacher_rows: _Rows | None):
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


def _continue(backbone: Backbone, rows: _Rows, prefix_kv, positions: Tensor) -> Tensor | None:
    """Hidden states of ``rows``' continuation tokens, attending to the prompt through its cache."""
    if rows.continuation_ids.shape[1] == 0:
        return None
    n = rows.num_rows
    # Autograd reaches the prompt's keys and values through the out-of-place concatenation of the
    # read-only cache (expand's backward sums the n rows' gradients into the one prompt).
    expanded = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix_kv]
    cache = cache_classes().ReadOnlyPrompt(ddp_cache_data=expanded)
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


def _full_pass(backbone: Backbone, group: RolloutGroup, rows: _Rows) -> Tensor:
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


# ------------------------------------------------------------------------------------------------
# Rows: what follows the prompt in each sequence of a batch


@dataclass
class _Rows:
    """The continuations ``context ⊕ response[:-1]`` of some rollouts, right-padded into one batch."""

    continuation_ids: Tensor  # [n, L]
    continuation_valid: Tensor  # [n, L] bool
    context_lengths: Tensor  # [n]
    response_lengths: Tensor  # [n]
    row_pixel_values: list[Tensor | None]  # the context's images, per row
    row_image_grid_thw: list[Tensor | None]

    @classmethod
    def build(cls, group, index, contexts, pixel_values, image_grids, pad_id: int) -> _Rows:
        device = group.prompt_ids.device
        sequences = [
            torch.cat([context, group.response_ids[g][:-1]])
            for g, context in zip(index, contexts, strict=True)
        ]
        length = max(s.numel() for s in sequences)
        ids = torch.full((len(sequences), length), pad_id, dtype=torch.long, device=device)
        valid = torch.zeros((len(sequences), length), dtype=torch.bool, device=device)
        for row, sequence in enumerate(sequences):
            ids[row, : sequence.numel()] = sequence
            valid[row, : sequence.numel()] = True
        return cls(
            continuation_ids=ids,
            continuation_valid=valid,
            context_lengths=torch.tensor([c.numel() for c in contexts], device=device),
            response_lengths=torch.tensor([group.response_ids[g].numel() for g in index], device=device),
            row_pixel_values=list(pixel_values),
            row_image_grid_thw=list(image_grids),
        )

    @property
    def num_rows(self) -> int:
        return self.continuation_ids.shape[0]

    def context_images(self) -> tuple[Tensor | None, Tensor | None]:
        """The continuations' images, rows in order, as one batch for the vision tower."""
        return _cat_images(self.row_pixel_values, self.row_image_grid_thw)

    def full_images(self, group: RolloutGroup) -> tuple[Tensor | None, Tensor | None]:
        """The full sequences' images: per row, the prompt's images then the context's."""
        pixels, grids = [], []
        for row_pixels, row_grid in zip(self.row_pixel_values, self.row_image_grid_thw, strict=True):
            pixels += [group.prompt_pixel_values, row_pixels]
            grids += [group.prompt_image_grid_thw, row_grid]
        return _cat_images(pixels, grids)

    def response_mask(self) -> Tensor:
        steps = torch.arange(int(self.response_lengths.max()), device=self.response_lengths.device)
        return steps[None, :] < self.response_lengths[:, None]

    def gather(self, last_prompt_state: Tensor, continuation_states: Tensor | None) -> Tensor:
        """[n, R_max, D]: for response token t, the state at (last prompt token) + context length + t."""
        n = self.num_rows
        states = last_prompt_state.expand(n, -1, -1)
        if continuation_states is not None:
            states = torch.cat([states, continuation_states], dim=1)
        steps = torch.arange(int(self.response_lengths.max()), device=states.device)
        # Padded steps point past the row's end; clamped, they read a state the mask later zeroes.
        index = (self.context_lengths[:, None] + steps[None, :]).clamp(max=states.shape[1] - 1)
        return states.gather(1, index[..., None].expand(-1, -1, states.shape[-1]))


def _cat_images(
    pixels: list[Tensor | None], grids: list[Tensor | None]
) -> tuple[Tensor | None, Tensor | None]:
    pixels = [p for p in pixels if p is not None]
    grids = [t for t in grids if t is not None]
    if not pixels:
        return None, None
    return torch.cat(pixels), torch.cat(grids)


# ------------------------------------------------------------------------------------------------
# Argument checks


def _check_ids(name: str, ids, allow_empty: bool) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name}: expected a 1-D LongTensor, got {got}")
    if not allow_empty and ids.numel() == 0:
        raise ValueError(f"{name}: expected at least one token, got an empty tensor")


def _per_rollout(name: str, values, G: int) -> list:
    if values is None:
        return [None] * G
    if not isinstance(values, (list, tuple)) or len(values) != G:
        got = f"length {len(values)}" if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"{name}: expected a list of {G} entries (one per response), got {got}")
    return list(values)


def _check_images(where: str, pixel_values: Tensor | None, image_grid_thw: Tensor | None) -> None:
    if (pixel_values is None) != (image_grid_thw is None):
        raise ValueError(
            f"{where}: pixel_values and image_grid_thw go together, got pixel_values "
            f"{'None' if pixel_values is None else tuple(pixel_values.shape)} and image_grid_thw "
            f"{'None' if image_grid_thw is None else tuple(image_grid_thw.shape)}"
        )
    if image_grid_thw is None:
        return
    if image_grid_thw.dim() != 2 or image_grid_thw.shape[1] != 3:
        raise ValueError(f"{where}: image_grid_thw must be [images, 3], got {tuple(image_grid_thw.shape)}")
    patches = int(image_grid_thw.prod(-1).sum())
    if pixel_values.shape[0] != patches:
        raise ValueError(
            f"{where}: pixel_values must hold {patches} patches (the sum of image_grid_thw's t*h*w), "
            f"got {pixel_values.shape[0]}"
        )
