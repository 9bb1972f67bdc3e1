"""VisualSDPOTrainer against TRL's own GRPOTrainer, on small random Qwen3 / Qwen3-VL checkpoint folders.

Completions come from a scripted ``rollout_func`` (TRL's hook for custom generation), so that both
trainers see the same programs: some that run, one with a defect, some that fail, some cut at the
length limit.
"""

from __future__ import annotations

import math

import pytest

trl = pytest.importorskip("trl")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from tests.hf_checkpoints import load_processor  # noqa: E402
from vsdpo.feedback.teacher_context import IMAGE_PLACEHOLDER, TeacherContext  # noqa: E402
from vsdpo.integrations.trl import (  # noqa: E402
    VisualSDPOConfig,
    VisualSDPOTrainer,
    decode_with_spans,
    prompt_with_feedback,
)

MAX_COMPLETION = 64
PROGRAMS = [
    # Runs; long tick labels on a small figure.
    "import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 1))\nplt.bar(['North total', 'South total'], [3, 5])",
    # Fails at its second line, and is cut at the length limit.
    "```python\nimport matplotlib.pyplot as plt\nplt.plot([1, 2], [3, missing_value])\n"
    "# the same data again, as a table of regions and totals, one row per region, sorted by total, "
    "then the same table once more, transposed, with one column per region and its total below\n```",
    # Fails to parse.
    "x = (",
    # Runs, cleanly.
    "```python\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [2, 1, 3])\n```",
]
PROMPTS = [
    [{"role": "user", "content": "Write matplotlib code for a bar chart of sales by region."}],
    [{"role": "user", "content": "Write matplotlib code for a line chart."}],
]


def scripted_rollouts(texts: list[str]):
    """A TRL ``rollout_func`` that answers the i-th prompt of a batch with ``texts[i % len(texts)]``."""

    def rollout_func(prompts, trainer):
        processing = trainer.processing_class
        tokenizer = getattr(processing, "tokenizer", processing)
        encoded = processing.apply_chat_template(
            conversation=prompts, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        completion_ids = []
        for index in range(len(prompts)):
            ids = tokenizer.encode(texts[index % len(texts)], add_special_tokens=False)
            completion_ids.append((ids + [tokenizer.eos_token_id])[:MAX_COMPLETION])
        return {"prompt_ids": list(encoded["input_ids"]), "completion_ids": completion_ids, "logprobs": None}

    return rollout_func


def length_reward(completions, **kwargs):
    """Distinct rewards within a group, so that advantages are not zero."""
    return [float(len(completion[0]["content"]) % 11) for completion in completions]


def grpo_args(output_dir, **overrides) -> GRPOConfig:
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=MAX_COMPLETION,
        max_steps=1,
        logging_steps=1,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    return GRPOConfig(**{**settings, **overrides})


def trainers(folder, output_dir, sdpo=None, **overrides):
    """TRL's trainer and ours, built the same way from the same checkpoint folder."""
    dataset = Dataset.from_dict({"prompt": PROMPTS})
    common = dict(
        model=str(folder),
        reward_funcs=length_reward,
        train_dataset=dataset,
        rollout_func=scripted_rollouts(PROGRAMS),
    )
    theirs = GRPOTrainer(args=grpo_args(output_dir / "trl", **overrides), **common)
    ours = VisualSDPOTrainer(
        args=grpo_args(output_dir / "ours", **overrides),
        sdpo=sdpo or VisualSDPOConfig(sd_weight=0.0),
        **common,
    )
    return theirs, ours


def prepared_batch(trainer, accumulation: int = 2):
    """One generation batch (two prompts, four completions each), with off-policy behaviour log-probs
    (the ratio moves away from 1 and clips on both sides) and, with a KL penalty, reference log-probs
    away from the policy's (the reference model starts equal to it, which would make the penalty 0)."""
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = accumulation
    rows = [{"prompt": prompt} for prompt in PROMPTS for _ in range(4)]
    batch = trainer._generate_and_score_completions(rows)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1),
            torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1),
            batch["completion_ids"].size(1),
        )
    noise = torch.randn((2, *logps.shape), generator=torch.Generator().manual_seed(0))
    batch["old_per_token_logps"] = (logps + 0.3 * noise[0]) * batch["completion_mask"]
    if "ref_per_token_logps" in batch:
        batch["ref_per_token_logps"] = (logps + 0.5 * noise[1]) * batch["completion_mask"]
    return batch


def loss_and_grads(trainer, batch):
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {
        name: p.grad.detach().clone() for name, p in trainer.model.named_parameters() if p.grad is not None
    }
    return loss.detach(), grads


def max_relative_gap(ours: dict, theirs: dict) -> float:
    assert ours.keys() == theirs.keys()
    scale = max(g.abs().max().item() for g in theirs.values())
    return max((ours[name] - theirs[name]).abs().max().item() for name in theirs) / scale


# Float32 throughout; the two sides sum the same terms in different orders and chunkings.
LOSS_TOLERANCE = 1e-6
GRAD_TOLERANCE = 1e-5


@pytest.mark.parametrize(
    ("loss_type", "beta", "ratio_weighted_kl"),
    [
        ("grpo", 0.0, True),
        ("bnpo", 0.0, True),
        ("dr_grpo", 0.0, True),
        ("dapo", 0.0, True),
        ("dapo", 0.04, True),  # TRL's default KL: weighted by the importance ratio
        ("grpo", 0.04, True),
        ("bnpo", 0.04, False),  # the plain k3 penalty, the kernel's own
        ("dr_grpo", 0.04, False),
    ],
)
def test_fused_loss_matches_trl(qwen3_folder, tmp_path, loss_type, beta, ratio_weighted_kl):
    theirs, ours = trainers(
        qwen3_folder,
        tmp_path,
        loss_type=loss_type,
        beta=beta,
        use_bias_correction_kl=ratio_weighted_kl,
        epsilon_high=0.28,
    )
    assert ours._fused
    batch = prepared_batch(theirs)
    ours.model.train()
    ours.current_gradient_accumulation_steps = theirs.current_gradient_accumulation_steps
    assert not batch["completion_mask"].all()  # EOS before the limit in some rows
    if beta:
        assert "ref_per_token_logps" in batch

    their_loss, their_grads = loss_and_grads(theirs, batch)
    our_loss, our_grads = loss_and_grads(ours, batch)

    assert abs(our_loss.item() - their_loss.item()) <= LOSS_TOLERANCE * max(1.0, abs(their_loss.item()))
    assert max_relative_gap(our_grads, their_grads) <= GRAD_TOLERANCE
    # The same metrics, with the same values.
    theirs_logged, ours_logged = theirs._metrics["train"], ours._metrics["train"]
    for key in theirs_logged:
        if key.startswith(("entropy", "kl", "clip_ratio")):
            assert ours_logged[key][-1] == pytest.approx(theirs_logged[key][-1], rel=1e-4, abs=1e-6), key
    assert theirs_logged["clip_ratio/region_mean"][-1] > 0  # the comparison covers clipped tokens


def test_first_training_step_matches_trl(qwen3_folder, tmp_path):
    theirs, ours = trainers(qwen3_folder, tmp_path)
    theirs.train()
    ours.train()
    their_log, our_log = theirs.state.log_history[0], ours.state.log_history[0]
    assert our_log["loss"] == pytest.approx(their_log["loss"], rel=1e-4, abs=1e-6)
    assert our_log["grad_norm"] == pytest.approx(their_log["grad_norm"], rel=1e-4)
    for key in ("reward", "entropy", "clip_ratio/region_mean", "completions/mean_length"):
        assert our_log[key] == pytest.approx(their_log[key], rel=1e-4), key


def test_options_the_fused_loss_cannot_express(qwen3_folder, tmp_path):
    with pytest.raises(ValueError, match="loss_type='cispo'"):
        trainers(qwen3_folder, tmp_path, sdpo=VisualSDPOConfig(sd_weight=1.0), loss_type="cispo")
    theirs, ours = trainers(qwen3_folder, tmp_path, loss_type="cispo")
    assert not ours._fused  # TRL's own loss, unchanged
    batch = prepared_batch(theirs)
    ours.model.train()
    ours.current_gradient_accumulation_steps = 2
    assert loss_and_grads(ours, batch)[0].item() == pytest.approx(loss_and_grads(theirs, batch)[0].item())


def test_distillation_trains_two_steps_on_a_vision_language_model(qwen3_vl_folder, tmp_path, monkeypatch):
    from PIL import Image

    import vsdpo.render
    from vsdpo.feedback.rewards import VisualReward

    rendered = []
    real_render = vsdpo.render.render_retrying

    def counted(code, kind, **options):
        rendered.append(code)
        return real_render(code, kind, **options)

    monkeypatch.setattr(vsdpo.render, "render_retrying", counted)
    calls = []

    class CountedReward(VisualReward):
        def __call__(self, prompts, completions, **columns):
            calls.append(len(completions))
            return super().__call__(prompts, completions, **columns)

    dataset = Dataset.from_dict(
        {"prompt": PROMPTS, "image": [Image.new("RGB", (96, 64), color) for color in ("white", "navy")]}
    )
    trainer = VisualSDPOTrainer(
        model=str(qwen3_vl_folder),
        processing_class=load_processor(qwen3_vl_folder),  # AutoProcessor's video part needs torchvision
        reward_funcs=CountedReward(kind="chart"),
        args=grpo_args(tmp_path, max_steps=2),
        train_dataset=dataset,
        rollout_func=scripted_rollouts(PROGRAMS),
        sdpo=VisualSDPOConfig(sd_weight=1.0, beta=0.5, credit_alpha=2.0, kind="chart"),
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        for key in ("reward", "entropy", "clip_ratio/region_mean", "completions/mean_length", "grad_norm"):
            assert key in entry, key
        assert math.isfinite(entry["loss"])
        assert entry["sdpo/execution_rate"] == pytest.approx(0.5)  # two of the four programs run
        assert entry["sdpo/sd_loss"] > 0 and entry["sdpo/divergence"] > 0
        assert 0 < entry["sdpo/credited_tokens"] < 1  # the failing programs' error lines
        assert "sdpo/pg_loss" in entry
        assert entry["sdpo/renders_reused"] == 1.0  # the reward's renders feed the teacher's feedback
    assert calls and len(rendered) == sum(calls)  # each completion rendered once, not twice


def test_teacher_prompt_carries_the_render_and_credit(qwen3_vl_folder, tmp_path):
    from PIL import Image

    trainer = VisualSDPOTrainer(
        model=str(qwen3_vl_folder),
        processing_class=load_processor(qwen3_vl_folder),
        reward_funcs=length_reward,
        args=grpo_args(tmp_path),
        train_dataset=Dataset.from_dict({"prompt": PROMPTS, "image": [Image.new("RGB", (96, 64))] * 2}),
        rollout_func=scripted_rollouts(PROGRAMS),
    )
    trainer.model.train()
    image = Image.new("RGB", (96, 64), "white")
    batch = trainer._generate_and_score_completions([{"prompt": PROMPTS[0], "image": image}] * 4)
    teacher = batch["teacher_prompt"]
    assert len(teacher) == 4 and batch["credit"].shape == batch["completion_ids"].shape
    parts = [teacher[i][-1]["content"] for i in range(4)]
    images = [[part for part in content if part["type"] == "image"] for content in parts]
    assert [len(found) for found in images] == [2, 1, 1, 2]  # the target, then the render where one ran
    texts = ["".join(part.get("text", "") for part in content) for content in parts]
    assert "Your program ran. Its render:" in texts[0] and "failed" in texts[1] and "failed" in texts[2]
    assert (batch["credit"][1] > 1).any() and (batch["credit"][3] == 1).all()


def test_teacher_states_align_with_the_student_given_no_feedback(qwen3_folder, tmp_path):
    """Where the teacher's prompt is the student's, the two passes give the same hidden states over the
    completion, though the teacher's batch is padded differently (its other rows have long feedback)."""
    _, ours = trainers(qwen3_folder, tmp_path)  # no render needed: the teacher prompts are set below
    ours.model.eval()
    batch = ours._generate_and_score_completions([{"prompt": prompt} for prompt in PROMPTS for _ in range(4)])
    long_feedback = [{"role": "user", "content": PROMPTS[0][0]["content"] + " Your program failed." * 20}]
    batch["teacher_prompt"] = [long_feedback] * 4 + [PROMPTS[1]] * 4
    with torch.no_grad():
        teacher = ours._teacher_hidden(ours.model, batch)
        student = ours._completion_hidden(
            ours.model,
            torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1),
            torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1),
            batch["completion_ids"].size(1),
            {},
        )
    mask = batch["completion_mask"].bool()
    mask[:4] = False  # the rows whose teacher saw feedback
    assert mask.any()
    torch.testing.assert_close(teacher[mask], student[mask], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(teacher[:4], student[:4], atol=1e-3)


def test_decode_with_spans_covers_the_text_once(qwen3_folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen3_folder)
    text = "```python\nax.set_title('Ventes · été 中文')  # ok\n```<|im_end|>"
    ids = tokenizer.encode(text, add_special_tokens=False)
    decoded, spans = decode_with_spans(tokenizer, ids)
    assert decoded == tokenizer.decode(ids, skip_special_tokens=True) == text.replace("<|im_end|>", "")
    assert spans[0][0] == 0 and spans[-1] == (len(decoded), len(decoded))  # the special token: empty
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_prompt_with_feedback_appends_to_the_last_user_turn():
    feedback = TeacherContext(
        text=f"\n\nYour program ran. Its render: {IMAGE_PLACEHOLDER}\nNo defects.", images=["img"]
    )
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Draw."}]
    teacher = prompt_with_feedback(prompt, feedback)
    assert teacher[0] == prompt[0] and prompt[1]["content"] == "Draw."  # the original is left alone
    assert teacher[1]["content"] == [
        {"type": "text", "text": "Draw."},
        {"type": "text", "text": "\n\nYour program ran. Its render: "},
        {"type": "image", "image": "img"},
        {"type": "text", "text": "\nNo defects."},
    ]
    text_only = TeacherContext(text="\n\nYour program failed with this error:\nNameError")
    assert (
        prompt_with_feedback(prompt, text_only)[1]["content"]
        == "Draw.\n\nYour program failed with this error:\nNameError"
    )
    assert prompt_with_feedback("Draw.", text_only) == "Draw." + text_only.text


@pytest.mark.parametrize("feedback", ["compare", "defects"])
def test_teacher_is_told_how_the_render_differs_from_the_reference(qwen3_vl_folder, tmp_path, feedback):
    """The same option and the same builder as vsdpo.train: the differences from the row's reference
    reach the teacher's prompt and the credit with ``feedback="compare"``, and neither with ``defects``."""
    from PIL import Image

    trainer = VisualSDPOTrainer(
        model=str(qwen3_vl_folder),
        processing_class=load_processor(qwen3_vl_folder),
        reward_funcs=length_reward,
        args=grpo_args(tmp_path),
        train_dataset=Dataset.from_dict({"prompt": PROMPTS, "image": [Image.new("RGB", (96, 64))] * 2}),
        rollout_func=scripted_rollouts(PROGRAMS),
        sdpo=VisualSDPOConfig(feedback=feedback, credit_alpha=1.0),
    )
    trainer.model.train()
    # The last program draws a blue line; the reference draws it in red, with a title.
    reference = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [2, 1, 3], color='tab:red')\nplt.title('Totals')\n"
    rows = [{"prompt": PROMPTS[0], "image": Image.new("RGB", (96, 64)), "reference": reference}] * 4
    batch = trainer._generate_and_score_completions(rows)
    text = "".join(part.get("text", "") for part in batch["teacher_prompt"][3][-1]["content"])
    if feedback == "compare":
        assert "Compared with the target:" in text and "should be #D62728 (tab:red)" in text
        assert "text 'Totals' is missing" in text
        assert (batch["credit"][3] > 1).any()  # the plotting line's tokens
    else:
        assert "Compared with the target" not in text and "No defects found." in text
        assert (batch["credit"][3] == 1).all()
    with pytest.raises(ValueError, match="VisualSDPOConfig.feedback"):
        VisualSDPOConfig(feedback="pictures")
