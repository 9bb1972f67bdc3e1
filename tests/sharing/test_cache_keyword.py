"""The shared passes hand the KV cache to the model under the name its forward takes: ``cache`` in the
transformers releases that renamed it (``past_key_values`` warns there, and goes in 5.40), else
``past_key_values``."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from vsdpo.sharing import student_teacher_hidden
from vsdpo.sharing.model import Backbone, cache_keyword

from .cases import make_group, tiny_qwen3, tiny_qwen3_vl


class OldStyleModel(torch.nn.Module):
    """A base model of a release before the rename: its forward names the cache ``past_key_values``."""

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None
    ):
        raise NotImplementedError


def test_the_keyword_follows_the_forward_signature():
    assert cache_keyword(OldStyleModel()) == "past_key_values"
    model = tiny_qwen3()
    takes_cache = "cache" in inspect.signature(model.base_model.forward).parameters
    assert Backbone(model).cache_keyword == ("cache" if takes_cache else "past_key_values")


@pytest.mark.parametrize("build, with_images", [(tiny_qwen3, False), (tiny_qwen3_vl, True)])
def test_shared_passes_raise_no_deprecation_of_past_key_values(build, with_images):
    model = build()
    group = make_group(with_images=with_images)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*", category=FutureWarning)
        out = student_teacher_hidden(model, group, reuse_prefix=True)
    assert torch.isfinite(out.student_hidden).all() and out.teacher_hidden is not None
