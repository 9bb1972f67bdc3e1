"""One completion through both trainers' paths: the same spans, the same feedback, the same credit.

The completion's token ids come from a tokenizer (the tiny byte-level BPE, and the scripted policies'
byte tokenizer, which is not byte-level BPE); its render is a stand-in for the sandbox's, and its
differences from the target a stand-in for the reward's. ``vsdpo.train`` takes them through
``generate_rollouts`` (with ``sample`` scripted), the render pool, ``score_rollouts``, ``build_group`` and
``credit_matrix``; TRL through ``VisualSDPOTrainer._render_feedback``, called on a stand-in trainer.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from types import MethodType, SimpleNamespace

import pytest
import torch

from tests.train.scripted import ByteTokenizer
from vsdpo.feedback.rewards import Assessment, VisualReward
from vsdpo.render.types import Defect, RenderResult
from vsdpo.tasks import Task
from vsdpo.tiny import build_tokenizer
from vsdpo.train import batch as train_batch
from vsdpo.train import generate
from vsdpo.train.batch import build_group, credit_matrix
from vsdpo.train.config import ConfigError, load_config
from vsdpo.train.scoring import RenderPool, score_rollouts

trl_integration = pytest.importorskip("vsdpo.integrations.trl")

COMPLETION = (
    "Here it is.\n```python\nimport matplotlib.pyplot as plt\n"
    "plt.bar(['Nord', 'Sud'], [3, 5], color='tab:red')\nplt.title('Ventes')\n```"
)
DIFFERENCES = (
    Defect("difference", 0.5, [], [2], "bar colour #D62728 (tab:red) should be #1F77B4 (tab:blue)"),
)
RENDERS = {
    "ran": RenderResult("chart", ok=True, defects=[Defect("overlap", 0.4, [], [3], "the title overlaps")]),
    "failed": RenderResult.failure("chart", "NameError: name 'plt' is not defined", [2]),
    "system fault": RenderResult.failure("chart", "sandbox: the worker died", error_kind="sandbox"),
}
ALPHA = 2.0


@pytest.fixture(scope="module", params=["byte-level BPE", "bytes"])
def tokenizer_and_ids(request, tmp_path_factory):
    if request.param == "bytes":
        return ByteTokenizer(), list(COMPLETION.encode())
    tokenizer = build_tokenizer(tmp_path_factory.mktemp("cache"))
    return tokenizer, tokenizer(COMPLETION)["input_ids"] + [tokenizer.eos_token_id]


@pytest.fixture
def stand_ins(monkeypatch):
    """The render and the reward's comparison, the same for both trainers."""
    current = {}
    monkeypatch.setattr("vsdpo.render.render_retrying", lambda code, kind, **options: current["render"])

    def assess(self, result, code, *args, **kwargs):
        return Assessment(0.5 if result.ok else 0.0, differences=DIFFERENCES if result.ok else None)

    monkeypatch.setattr(VisualReward, "assess", assess)
    return current


@dataclasses.dataclass
class CapturedGroup:
    feedbacks: list
    response_ids: list | None = None

    @classmethod
    def from_text(cls, processor, prompt, responses, feedbacks, **kwargs):
        return cls(feedbacks)


def through_vsdpo_train(tokenizer, ids, feedback: str, monkeypatch) -> tuple[str, list, str, list[float]]:
    """(text, spans, the teacher's feedback, the credit) as ``vsdpo.train`` makes them."""

    def sample(model, processor, texts, *args, **kwargs):
        return [(torch.tensor(ids), torch.zeros(len(ids))) for _ in texts]

    monkeypatch.setattr(generate, "sample", sample)
    monkeypatch.setattr(train_batch, "RolloutGroup", CapturedGroup)
    config = load_config(
        None,
        {
            "rollout.num_generations": 2,  # the same completion twice: the group of one prompt
            "algorithm.feedback": feedback,
            "algorithm.credit_alpha": str(ALPHA),
            "data.prompt_image": "false",
        },
    )
    processor = SimpleNamespace(tokenizer=tokenizer, apply_chat_template=lambda *args, **kwargs: "p")
    rollouts = generate.generate_rollouts(None, processor, [Task("t", "chart", "p")], [None], config)
    with RenderPool(1, 5) as pool:
        rollouts, _ = pool.render_rollouts(rollouts)
        rollouts, _ = score_rollouts(rollouts, config, pool)
    group = build_group(processor, rollouts, None, config, with_feedback=True)
    credit = credit_matrix(rollouts, len(ids), config)[0].tolist()
    return rollouts[0].text, rollouts[0].token_offsets, group.feedbacks[0], credit


def through_trl(tokenizer, ids, feedback: str, monkeypatch) -> tuple[str, list, str, list[float]]:
    """(text, spans, the teacher's prompt, the credit) as ``VisualSDPOTrainer`` makes them."""
    decoded = []
    build = trl_integration.build_feedback

    def recording(result, program, text, spans, **kwargs):
        decoded.append((text, spans))
        return build(result, program, text, spans, **kwargs)

    monkeypatch.setattr(trl_integration, "build_feedback", recording)
    pool = RenderPool(1, 5)
    trainer = SimpleNamespace(
        _tokenizer=tokenizer,
        _is_vlm=False,
        sdpo=trl_integration.VisualSDPOConfig(feedback=feedback, credit_alpha=ALPHA, kind="chart"),
        accelerator=SimpleNamespace(device="cpu", gather=lambda values: values),
        _metrics=defaultdict(lambda: defaultdict(list)),
        _mode=lambda: "train",
        _renders=lambda: pool,
        reward_funcs=[],
    )
    for name in ("_feedback_options", "_differences", "_reused_renders"):
        setattr(trainer, name, MethodType(getattr(trl_integration.VisualSDPOTrainer, name), trainer))
    try:
        handed = trl_integration.VisualSDPOTrainer._render_feedback(
            trainer, [{"prompt": "p", "reference": "the target's program"}], ["p"], [ids]
        )
    finally:
        pool.shutdown()
    handed.check(torch.tensor([ids]))
    ((text, spans),) = decoded
    return text, spans, handed.teacher_prompts[0], list(handed.credit[0])


@pytest.mark.parametrize("feedback", ["compare", "defects"])
@pytest.mark.parametrize("outcome", list(RENDERS))
def test_one_completion_gets_the_same_spans_feedback_and_credit_in_both_trainers(
    tokenizer_and_ids, stand_ins, monkeypatch, outcome, feedback
):
    tokenizer, ids = tokenizer_and_ids
    stand_ins["render"] = RENDERS[outcome]
    text, spans, told, credit = through_vsdpo_train(tokenizer, ids, feedback, monkeypatch)
    trl_text, trl_spans, teacher_prompt, trl_credit = through_trl(tokenizer, ids, feedback, monkeypatch)

    assert text == trl_text == COMPLETION and spans == trl_spans and len(spans) == len(ids)
    assert teacher_prompt == "p" + told  # TRL's teacher prompt: the prompt, then the same feedback
    # vsdpo.train lays the credit in a float32 tensor, as TRL's batch does.
    assert torch.equal(torch.tensor(credit), torch.tensor(trl_credit, dtype=torch.float32))
    if outcome == "system fault":  # left out: told nothing, no credit
        assert told == "" and set(credit) == {0.0}
    elif outcome == "failed":
        assert "NameError" in told and max(credit) == 1 + ALPHA  # the error's line
    else:
        assert ("Compared with the target:" in told) == (feedback == "compare")
        assert "Defects found:" in told
        credited = "".join(text[a:b] for (a, b), weight in zip(spans, credit, strict=True) if weight > 1)
        assert "title" in credited and (("bar" in credited) == (feedback == "compare"))


def test_both_trainers_decode_and_render_with_the_same_objects():
    from vsdpo.feedback import rendering, spans

    assert trl_integration.decode_with_spans is generate.decode_with_spans is spans.decode_with_spans
    assert trl_integration.RenderPool is rendering.RenderPool
    assert issubclass(RenderPool, rendering.RenderPool)


def test_feedback_made_for_other_completions_is_refused():
    handed = trl_integration.CompletionFeedback(((1, 2, 3),), ("p",), ((1.0, 1.0, 1.0),), (False,))
    handed.check(torch.tensor([[1, 2, 3, 0]]))  # right-padded: the same completion
    with pytest.raises(RuntimeError, match="made for other completions"):
        handed.check(torch.tensor([[1, 2, 4, 0]]))
    with pytest.raises(RuntimeError, match="made for other completions"):
        handed.check(torch.tensor([[1, 2, 3], [1, 2, 3]]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        handed.credit = ()


def test_one_vocabulary_and_the_old_names_point_to_the_new():
    config = trl_integration.VisualSDPOConfig(beta=0.25, loss_impl="torch")
    assert (config.beta, config.loss_impl) == (0.25, "torch")
    with pytest.raises(TypeError, match="did you mean 'beta'"):
        trl_integration.VisualSDPOConfig(jsd_beta=0.5)
    with pytest.raises(TypeError, match="did you mean 'loss_impl'"):
        trl_integration.VisualSDPOConfig(impl="torch")
    with pytest.raises(ConfigError, match="did you mean 'algorithm.loss.beta'"):
        load_config(None, {"algorithm.jsd_beta": "0.5"})


class LenientByteTokenizer(ByteTokenizer):
    """Bytes as tokens, but not byte-level BPE's alphabet: decoding goes the windowed way."""

    def convert_ids_to_tokens(self, ids):
        return [f"<{i}>" for i in ids]

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def test_a_character_split_over_tokens_goes_to_the_token_that_completes_it_without_byte_level_bpe():
    from vsdpo.feedback.spans import decode_with_spans

    text, spans = decode_with_spans(LenientByteTokenizer(), list("aé日!".encode()))
    assert text == "aé日!"
    assert spans == [(0, 1), (1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (3, 4)]
