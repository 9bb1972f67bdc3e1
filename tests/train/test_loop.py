"""The trainer end to end on the tiny Qwen3-VL: each algorithm for 3 steps, resume, bad steps."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil

import pytest
import torch
from PIL import Image

from vsdpo.feedback.rewards import Assessment, VisualReward
from vsdpo.feedback.spans import decode_with_spans
from vsdpo.feedback.teacher_context import IMAGE_PLACEHOLDER, teacher_context
from vsdpo.render import Defect, RenderResult
from vsdpo.tasks import Task
from vsdpo.tiny import build_tiny, build_tokenizer
from vsdpo.train import checkpoint, logs, train
from vsdpo.train.config import ConfigError, load_config
from vsdpo.train.data import TaskSampler
from vsdpo.train.generate import Rollout
from vsdpo.train.loss import LossHead
from vsdpo.train.scoring import RenderPool, group_advantages, score_rollouts
from vsdpo.train.update import policy_update

from .tiny_run import tiny_config


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def read_losses(run_dir):
    return {
        r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm, teacher, kl_beta", [("vsdpo", "live", 0.0), ("sdpo", "ema", 0.0), ("grpo", "live", 0.1)]
)
def test_three_steps_then_resume_gives_the_same_next_step(tmp_path, cache_dir, algorithm, teacher, kl_beta):
    run_dir = tmp_path / "run"
    options = {"algorithm.name": algorithm, "algorithm.teacher": teacher, "algorithm.loss.kl_beta": kl_beta}
    config = tiny_config(run_dir, cache_dir, **options)
    initial = {k: v.clone() for k, v in build_tiny(cache_dir, seed=0, hidden_size=32)[0].state_dict().items()}
    train(config)

    losses = read_losses(run_dir)
    assert sorted(losses) == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "plots/reward.png",
        "plots/losses.png",
        "plots/defect_rate.png",
        "plots/execution_rate.png",
        "checkpoint-2/model.pt",
        "checkpoint-3/optimizer.pt",
    ):
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("events.out.tfevents.*")) and list((run_dir / "samples").glob("step-0003-*.txt"))
    held_out = logs.read_records(run_dir, logs.EVAL)
    assert [r["step"] for r in held_out] == [0, 2, 3] and all("teacher_gain" in r for r in held_out)
    assert (run_dir / "plots" / "teacher_gain.png").is_file()
    attempts = [json.loads(line) for line in (run_dir / "eval" / "step-0000.jsonl").read_text().splitlines()]
    assert len(attempts) == 2 and {"program", "reward", "second"} <= set(attempts[0])
    final = torch.load(run_dir / "checkpoint-3" / "model.pt", weights_only=True)
    changed = [k for k in initial if not torch.equal(initial[k], final[k])]
    assert "lm_head.weight" in changed and any(k.startswith("model.visual.") for k in changed)
    assert len(changed) > len(initial) // 2

    # Resume in a copy of the run whose newest checkpoint was cut short and whose metrics end in a
    # torn line: it falls back to checkpoint-2, and step 3 comes out bit for bit the same.
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed_dir)
    model_file = resumed_dir / "checkpoint-3" / "model.pt"
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    with open(resumed_dir / "metrics.jsonl", "a") as file:
        file.write('{"step": 4, "loss": 0.')
    train(tiny_config(resumed_dir, cache_dir, **{"run.resume": True}, **options))
    assert read_losses(resumed_dir)[3] == losses[3]
    resumed = torch.load(resumed_dir / "checkpoint-3" / "model.pt", weights_only=True)
    assert all(torch.equal(resumed[k], final[k]) for k in final)


@pytest.mark.slow
def test_non_finite_loss_skips_then_aborts(tmp_path, cache_dir, monkeypatch):
    original = LossHead.forward

    def poisoned(self, inputs):
        out = original(self, inputs)
        return dataclasses.replace(out, loss=out.loss * float("nan"))

    monkeypatch.setattr(LossHead, "forward", poisoned)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match=r"2 steps in a row were skipped \(run.max_bad_steps=1\)"):
        train(tiny_config(run_dir, cache_dir, **{"run.max_bad_steps": 1, "rollout.max_new_tokens": 4}))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in records] == [1.0]


@pytest.mark.slow
def test_num_iterations_steps_again_on_the_same_rollouts_against_the_first_log_probs(
    tmp_path, cache_dir, monkeypatch
):
    calls = []
    original = LossHead.forward

    def spy(self, inputs):
        out = original(self, inputs)
        old = None if inputs.old_logprobs is None else inputs.old_logprobs.clone()
        calls.append((inputs.targets.clone(), old, out.logprobs.detach().clone()))
        return out

    monkeypatch.setattr(LossHead, "forward", spy)
    run_dir = tmp_path / "run"
    config = tiny_config(
        run_dir, cache_dir, **{"run.max_steps": 1, "eval.tasks": "none", "algorithm.num_iterations": 3}
    )
    train(config)
    assert len(calls) == 3  # one group a step, three iterations on it
    (targets, old, first), *later = calls
    assert old is None  # detached: ratio 1 on the first iteration
    for later_targets, later_old, logprobs in later:
        assert torch.equal(later_targets, targets)  # the same rollouts
        assert torch.equal(later_old, first)  # the ratio's denominator: the step's first log-probs
        assert not torch.allclose(logprobs, first)  # the policy moved between iterations
    optimizer = torch.load(run_dir / "checkpoint-1" / "optimizer.pt", weights_only=False)
    assert {int(s["step"]) for s in optimizer["state"].values()} == {3}  # three optimiser steps
    assert load_config(None, {"algorithm.num_iterations": 2}).algorithm.num_iterations == 2
    with pytest.raises(ConfigError, match="algorithm.num_iterations"):
        load_config(None, {"algorithm.num_iterations": 0})


def test_crashed_render_becomes_a_masked_failure(monkeypatch):
    pool = RenderPool(workers=1, timeout_s=5)

    def crash(code, kind):
        return pool.executor.submit(lambda: (_ for _ in ()).throw(OSError("worker died")))

    monkeypatch.setattr(pool, "submit", crash)
    rollout = Rollout(Task("t", "chart", "p"), 0, torch.tensor([1]), torch.tensor([0.0]), "x", [(0, 1)], "x")
    (rendered,), crashed = pool.render_rollouts([rollout])
    assert crashed == 1 and rollout.render is None  # the stage returns a copy: a hand-off never changes
    with pytest.raises(dataclasses.FrozenInstanceError):
        rendered.reward = 1.0
    rollout = rendered
    assert rollout.render_crashed and not rollout.render.ok and "worker died" in rollout.render.error
    pool.shutdown()


def test_task_sampler_order_resumes_exactly():
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
    rewards = [0.0, 1.0, 2.0, 2.0]
    group = group_advantages(rewards, 2, "group")
    assert torch.allclose(group, torch.tensor([-0.7071, 0.7071, 0.0, 0.0]), atol=1e-3)
    none = group_advantages(rewards, 2, "none")
    assert torch.equal(none, torch.tensor([-0.5, 0.5, 0.0, 0.0]))
    batch = group_advantages(rewards, 2, "batch")
    assert torch.allclose(batch, none / (torch.tensor(rewards).std() + 1e-4))


def test_decoded_offsets_cover_the_text_once(cache_dir):
    tokenizer = build_tokenizer(cache_dir)
    source = "import matplotlib.pyplot as plt\nax.set_title('ñ 日本')\r\nplt.show()\n"
    ids = tokenizer(source)["input_ids"] + [tokenizer.eos_token_id]
    text, offsets = decode_with_spans(tokenizer, ids)
    assert text == source and len(offsets) == len(ids)
    assert "".join(text[a:b] for a, b in offsets) == source
    assert offsets[-1][0] == offsets[-1][1] == len(source)  # the end-of-turn token covers nothing


def test_teacher_context_reports_defects_or_the_error():
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
    def assess(self, result, code, reference=None, kind=None, slide=False):
        if code == "boom":
            raise RuntimeError("the sandbox worker died")
        return Assessment(float(code))

    monkeypatch.setattr(VisualReward, "assess", assess)
    rollouts = [
        Rollout(Task("t", "chart", "p"), 0, torch.tensor([1]), torch.tensor([0.0]), c, [(0, 1)], c)
        for c in ("0", "1", "boom", "0.5")
    ]
    rollouts = [dataclasses.replace(rollout, render=RenderResult("chart", ok=True)) for rollout in rollouts]
    config = load_config(None, {"rollout.num_generations": 4, "reward.scale_rewards": "none"})
    pool = RenderPool(workers=2, timeout_s=5)
    rollouts, failed = score_rollouts(rollouts, config, pool)
    assert failed == 1
    pool.shutdown()
    assert [r.reward_failed for r in rollouts] == [False, False, True, False]
    assert [r.left_out for r in rollouts] == [False, False, True, False] and not rollouts[2].render_crashed
    assert rollouts[2].reward == 0.5 and rollouts[2].advantage == 0.0
    assert [r.advantage for r in rollouts] == [-0.5, 0.5, 0.0, 0.0]


def test_resume_takes_only_complete_checkpoints(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    assert checkpoint.resume(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler) is None
    for step in (1, 2):
        checkpoint.save_checkpoint(
            tmp_path,
            step,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            trainer_state={"step": step},
            keep=0,
        )
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["checkpoint-1", "checkpoint-2"]
    (tmp_path / "checkpoint-2" / "complete.json").unlink()  # killed before the marker
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["checkpoint-1"]
    (tmp_path / "checkpoint-1" / "rng.pt").write_bytes(b"not a pickle")  # same size is not checked here
    checkpoint.write_manifest(tmp_path / "checkpoint-1")
    assert checkpoint.resume(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler) is None


def test_torn_and_later_records_are_dropped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 2.0}\n{"step": 3, "lo'
    )
    (tmp_path / "eval.jsonl").write_text('{"step": 0, "reward": 0.1}\n{"step": 2, "reward": 0.2}\n')
    assert [r["step"] for r in logs.read_records(tmp_path)] == [1, 2]
    logs.truncate_records(tmp_path, 1)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'
    assert [r["step"] for r in logs.read_records(tmp_path, logs.EVAL)] == [0]


def test_a_step_without_usable_rollouts_is_skipped():
    rollout = Rollout(
        Task("t", "chart", "p"),
        0,
        torch.tensor([1]),
        torch.tensor([0.0]),
        "x",
        [(0, 1)],
        "x",
        reward_failed=True,
    )
    config = load_config(None, {"rollout.num_generations": 2})
    result = policy_update(None, None, None, [rollout, rollout], [None], None, None, config)
    assert result.skipped and "no usable rollout" in result.reason


def test_bad_task_source_and_output_folder_are_config_errors(tmp_path, capsys):
    from vsdpo.train.cli import main

    assert (
        main(["--data.tasks", str(tmp_path / "missing.jsonl"), "--run.output_dir", str(tmp_path / "r")]) == 2
    )
    assert "config error: data.tasks:" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--run.output_dir", str(blocker / "run"), "--warmstart.steps", "0"]) == 2
    assert "config error: run.output_dir: cannot write" in capsys.readouterr().err
    assert main(["--max_steps", "3"]) == 2
    assert (
        "max_steps: unknown config key in the command line; did you mean 'run.max_steps'?"
        in capsys.readouterr().err
    )
