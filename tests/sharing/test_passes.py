"""vsdpo.sharing.passes: the prefix-sharing passes equal the plain full-sequence passes, values and
gradients."""

from __future__ import annotations

import pytest
import torch

from vsdpo.sharing import StudentTeacherHidden, student_teacher_hidden

from .cases import assert_equivalent, make_group, tiny_llama, tiny_qwen3, tiny_qwen3_vl


def test_qwen3_vl_shared_equals_full_sequences_with_images_in_prompt_and_feedback():
    model = tiny_qwen3_vl()
    group = make_group(with_images=True)
    out, grads = assert_equivalent(model, group)
    assert out.student_hidden.shape == (4, 7, 64)
    # The prompt image reaches the loss through the cached keys and values: the vision tower learns.
    # (The deepstack merger of the last decoder layer only feeds image positions' final states, unused.)
    vision = [name for name in grads if ".visual." in name and "deepstack_merger_list.1." not in name]
    assert vision and all(grads[name].abs().sum() > 0 for name in vision)


def test_qwen3_vl_text_only_group():
    assert_equivalent(tiny_qwen3_vl(), make_group(with_images=False))


@pytest.mark.parametrize("build", [tiny_qwen3, tiny_llama], ids=["qwen3", "llama"])
def test_text_models_shared_equals_full_sequences(build):
    assert_equivalent(build(), make_group(with_images=False))


def test_hidden_states_predict_the_response_tokens():
    """hs[g, t] is the state just before response token t, as in one plain forward of the student."""
    model = tiny_qwen3()
    group = make_group(with_images=False)
    hs, ht = student_teacher_hidden(model, group)
    for g, response in enumerate(group.response_ids):
        sequence = torch.cat([group.prompt_ids, group.generation_prompt_ids, response])
        with torch.no_grad():
            states = model.model(input_ids=sequence[None]).last_hidden_state[0]
        start = sequence.numel() - response.numel() - 1
        torch.testing.assert_close(hs[g, : response.numel()], states[start : start + response.numel()])
        assert hs[g, response.numel() :].abs().sum() == 0


def test_teacher_is_detached_and_falls_back_to_student_without_feedback():
    model = tiny_qwen3_vl()
    group = make_group(with_images=True, feedback_pattern=(True, False, True))
    out = student_teacher_hidden(model, group)
    assert isinstance(out, StudentTeacherHidden)
    hs, ht = out
    assert hs.requires_grad and not ht.requires_grad and ht.grad_fn is None
    assert out.has_feedback.tolist() == [True, False, True]
    torch.testing.assert_close(ht[1], hs[1].detach(), rtol=0, atol=0)
    assert not torch.allclose(ht[0], hs[0])


def test_teacher_is_none_without_any_feedback():
    group = make_group(with_images=False, feedback_pattern=(False, False))
    hs, ht = student_teacher_hidden(tiny_qwen3(), group)
    assert ht is None and hs.shape[0] == 2


@pytest.mark.parametrize("build", [tiny_qwen3_vl, tiny_qwen3], ids=["qwen3_vl", "qwen3"])
def test_shared_passes_under_gradient_checkpointing_equal_full_sequences(build):
    model = build()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    with_images = build is tiny_qwen3_vl
    out, grads = assert_equivalent(model, make_group(with_images=with_images))
    # The layers went back to dropping caches under checkpointing for everyone else.
    layer = next(m for m in model.modules() if hasattr(type(m), "_can_checkpoint_with_cache"))
    assert layer._can_checkpoint_with_cache is False
    if with_images:
        assert any(".visual." in name and grads[name].abs().sum() > 0 for name in grads)


def test_reentrant_gradient_checkpointing_is_refused_rather_than_losing_the_prompt_gradient():
    model = tiny_qwen3()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    group = make_group(with_images=False)
    with pytest.raises(ValueError, match="reentrant gradient checkpointing"):
        student_teacher_hidden(model, group, reuse_prefix=True)
    hs, _ = student_teacher_hidden(model, group, reuse_prefix=False)
    assert hs.requires_grad
