"""The trainer end to end on the tiny Qwen3-VL: each algorithm for 3 steps, resume, bad steps."""

from __future__ import annotations

import io
import json
import shutil

import pytest
import torch
from PIL import Image

from vsdpo.config import load_config


def length_reward(prompts, completions, **columns):
    """A reward with spread even before any program runs, so every algorithm gets a gradient."""
    return [len(c) / 100.0 for c in completions]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def tiny_config(run_dir, cache_dir, **overrides):
    values = {
        "output_dir": str(run_dir),
        "cache_dir": str(cache_dir),
        "max_steps": 3,
        "warmstart_steps": 0,
        "num_builtin_tasks": 4,
        "tiny_hidden_size": 32,
        "prompts_per_step": 1,
        "num_generations": 2,
        "max_new_tokens": 12,
        "save_steps": 2,
        "sample_every": 3,
        "num_sample_renders": 2,
        "render_workers": 1,
        "progress": False,
        "learning_rate": 1e-2,
        "warmup_steps": 0,
        "reward_funcs": [f"{__name__}:length_reward"],
        "cpu_threads": 1,
    }
    values.update(overrides)
    return load_config(None, values)


def read_losses(run_dir):
    return {
        r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm, teacher, kl_beta", [("vsdpo", "live", 0.0), ("sdpo", "ema", 0.0), ("grpo", "live", 0.1)]
)
def test_three_steps_then_resume_gives_the_same_next_step(tmp_path, cache_dir, algorithm, teacher, kl_beta):
    from vsdpo.tiny import build_tiny
    from vsdpo.train import train

    run_dir = tmp_path / "run"
    options = {"algorithm": algorithm, "teacher": teacher, "kl_beta": kl_beta}
    config = tiny_config(run_dir, cache_dir, **options)
    initial = {k: v.clone() for k, v in build_tiny(cache_dir, seed=0, hidden_size=32)[0].state_dict().items()}
    train(config)

    losses = read_losses(run_dir)
    assert sorted(losses) == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    for name in ("config.yaml", "metrics.jsonl", "plots/reward.png", "plots/losses.png", "plots/defect_rate.png",
                 "plots/execution_rate.png", "checkpoint-2/model.pt", "checkpoint-3/optimizer.pt"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("events.out.tfevents.*")) and list((run_dir / "samples").glob("step-0003-*.txt"))
    final = torch.load(run_dir / "checkpoint-3" / "model.pt", weights_only=True)
    changed = [k for k in initial if not torch.equal(initial[k], final[k])]
    assert "lm_head.weight" in changed and any(k.startswith("model.visual.") for k in changed)
    assert len(changed) > len(initial) // 2

    # Resume from checkpoint-2 in a copy of the run: step 3 must come out bit for bit the same.
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed_dir, ignore=shutil.ignore_patterns("checkpoint-3"))
    train(tiny_config(resumed_dir, cache_dir, resume=True, **options))
    assert read_losses(resumed_dir)[3] == losses[3]
    resumed = torch.load(resumed_dir / "checkpoint-3" / "model.pt", weights_only=True)
    assert all(torch.equal(resumed[k], final[k]) for k in final)


@pytest.mark.slow
def test_non_finite_loss_skips_then_aborts(tmp_path, cache_dir, monkeypatch):
    from vsdpo.distributed import LossHead
    from vsdpo.train import train

    original = LossHead.forward

    def poisoned(self, hidden, loss_kwargs=None):
        result = original(self, hidden, loss_kwargs)
        return result if loss_kwargs is None else (result[0] * float("nan"), result[1])

    monkeypatch.setattr(LossHead, "forward", poisoned)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match=r"2 steps in a row were skipped \(max_bad_steps=1\)"):
        train(tiny_config(run_dir, cache_dir, max_bad_steps=1, max_new_tokens=4))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in records] == [1.0]


def test_crashed_render_becomes_a_masked_failure(monkeypatch):
    from vsdpo.rollout import RenderPool, Rollout
    from vsdpo.tasks import Task

    pool = RenderPool(workers=1, timeout_s=5)

    def crash(code, kind):
        return pool.executor.submit(lambda: (_ for _ in ()).throw(OSError("worker died")))

    monkeypatch.setattr(pool, "submit", crash)
    rollout = Rollout(Task("t", "chart", "p"), 0, torch.tensor([1]), torch.tensor([0.0]), "x", [(0, 1)], "x")
    assert pool.render_rollouts([rollout]) == 1
    assert rollout.render_crashed and not rollout.render.ok and "worker died" in rollout.render.error
    pool.shutdown()


def test_task_sampler_order_resumes_exactly():
    from vsdpo.update import TaskSampler

    sampler = TaskSampler(5, seed=1)
    first = [sampler.next_batch(2) for _ in range(2)]
    state = sampler.state_dict()
    rest = [sampler.next_batch(2) for _ in range(4)]
    again = TaskSampler(5, seed=1)
    again.load_state_dict(state)
    assert [again.next_batch(2) for _ in range(4)] == rest
    assert sorted(first[0] + first[1] + rest[0][:1]) == [0, 1, 2, 3, 4]  # one epoch is a permutation
    assert (
        TaskSampler(5, seed=1).next_batch(2, rank=1, world_size=2) == TaskSampler(5, seed=1).next_batch(4)[2:]
    )


def test_group_advantages_scalings():
    from vsdpo.rollout import group_advantages

    rewards = [0.0, 1.0, 2.0, 2.0]
    group = group_advantages(rewards, 2, "group")
    assert torch.allclose(group, torch.tensor([-0.7071, 0.7071, 0.0, 0.0]), atol=1e-3)
    none = group_advantages(rewards, 2, "none")
    assert torch.equal(none, torch.tensor([-0.5, 0.5, 0.0, 0.0]))
    batch = group_advantages(rewards, 2, "batch")
    assert torch.allclose(batch, none / (torch.tensor(rewards).std() + 1e-4))


def test_decoded_offsets_cover_the_text_once(cache_dir):
    from vsdpo.rollout import decode_with_offsets
    from vsdpo.tiny import build_tokenizer

    tokenizer = build_tokenizer(cache_dir)
    source = "import matplotlib.pyplot as plt\nax.set_title('ñ 日本')\r\nplt.show()\n"
    ids = tokenizer(source)["input_ids"] + [tokenizer.eos_token_id]
    text, offsets = decode_with_offsets(tokenizer, ids)
    assert text == source and len(offsets) == len(ids)
    assert "".join(text[a:b] for a, b in offsets) == source
    assert offsets[-1][0] == offsets[-1][1] == len(source)  # the end-of-turn token covers nothing


def test_teacher_context_reports_defects_or_the_error():
    from vsdpo.render.types import Defect, RenderResult
    from vsdpo.teacher_context import IMAGE_PLACEHOLDER, teacher_context

    program = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar(['North region', 'South region'], [1, 2])\n"
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, format="PNG")
    ran = RenderResult(
        "chart",
        ok=True,
        image=image.getvalue(),
        defects=[Defect("overlap", 0.4, ["a", "b"], [3], "tick labels overlap")],
    )
    context = teacher_context(ran, program)
    assert context.text.startswith("\n\nYour program ran. Its render: " + IMAGE_PLACEHOLDER)
    assert "- line 3: overlap (severity 0.40): tick labels overlap\n    3: ax.bar(" in context.text
    assert len(context.images) == 1 and context.text.endswith(
        "Write the program again with these defects fixed."
    )
    failed = RenderResult.failure("chart", "NameError: name 'ax' is not defined", [3])
    context = teacher_context(failed, program)
    assert (
        "Your program failed with this error:\nNameError: name 'ax' is not defined\nat line 3:\n    3: ax.bar("
        in context.text
    )
    assert context.images == [] and IMAGE_PLACEHOLDER not in context.text


def test_failed_reward_is_masked_and_moves_no_advantage(monkeypatch):
    from vsdpo.render.types import RenderResult
    from vsdpo.rewards import VisualReward
    from vsdpo.rollout import Rollout
    from vsdpo.tasks import Task
    from vsdpo.update import score_rollouts

    def score_one(self, result, code, reference=None, kind=None, slide=False):
        if code == "boom":
            raise RuntimeError("the sandbox worker died")
        return float(code)

    monkeypatch.setattr(VisualReward, "score_one", score_one)
    rollouts = [
        Rollout(Task("t", "chart", "p"), 0, torch.tensor([1]), torch.tensor([0.0]), c, [(0, 1)], c)
        for c in ("0", "1", "boom", "0.5")
    ]
    for rollout in rollouts:
        rollout.render = RenderResult("chart", ok=True)
    config = load_config(None, {"num_generations": 4, "scale_rewards": "none"})
    assert score_rollouts(rollouts, config) == 1
    assert [r.render_crashed for r in rollouts] == [False, False, True, False]
    assert rollouts[2].reward == 0.5 and rollouts[2].advantage == 0.0
    assert [r.advantage for r in rollouts] == [-0.5, 0.5, 0.0, 0.0]
