"""Issue-12 guarantees: a held-out split that never meets the training tasks, one base policy for
every algorithm, the teacher gain measured, and ``vsdpo compare`` end to end."""

from __future__ import annotations

import json

import pytest
import torch

from vsdpo.compare import main as compare_main
from vsdpo.tasks import builtin_chart_tasks
from vsdpo.tasks.charts import task_split
from vsdpo.train import generate
from vsdpo.train.config import load_config
from vsdpo.train.corrupt import CORRUPTIONS, corrupt
from vsdpo.train.data import TaskSet
from vsdpo.train.evaluate import Evaluator
from vsdpo.train.model import load_policy
from vsdpo.train.scoring import RenderPool
from vsdpo.train.warmstart import cache_key, warm_start

from .scripted import TemplateProcessor
from .tiny_run import tiny_config


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_held_out_split_never_meets_the_training_tasks(seed):
    train = builtin_chart_tasks(200, seed=seed)
    for eval_seed in (seed, seed + 1):
        held_out = builtin_chart_tasks(60, seed=eval_seed, split="eval")
        assert len(held_out) == 60 and {t.prompt for t in held_out}.isdisjoint(t.prompt for t in train)
        assert {t.reference for t in held_out}.isdisjoint(t.reference for t in train)
    assert all(task_split(t.prompt) == "train" for t in train)
    assert builtin_chart_tasks(5, seed=seed) == builtin_chart_tasks(5, seed=seed)  # seeded


def test_corruptions_flaw_the_program_and_stay_distinct():
    import random

    program = builtin_chart_tasks(1, seed=3)[0].reference
    flawed = corrupt(program, random.Random(0), len(CORRUPTIONS))
    assert len(flawed) >= 6 and program not in flawed and len(set(flawed)) == len(flawed)
    broken = 0
    for text in flawed:
        try:
            compile(text, "<flawed>", "exec")
        except SyntaxError:
            broken += 1
    assert 0 < broken < len(flawed)  # some fail to parse, some run and fail or draw worse


def test_the_base_policy_does_not_depend_on_the_algorithm(tmp_path):
    """Same cache key, and the same weights when trained from scratch, for grpo and vsdpo with
    other loss and credit settings."""
    common = {
        "warmstart.steps": 3,
        "warmstart.repair_steps": 2,
        "warmstart.corruptions": 1,
        "warmstart.own_samples": 1,
        "warmstart.repair_tasks": 1,
        "warmstart.batch_size": 2,
        "rollout.max_new_tokens": 8,
    }
    variants = [
        {"algorithm": "grpo"},
        {
            "algorithm": "vsdpo",
            "algorithm.loss.beta": "0.1",
            "algorithm.credit_alpha": "3",
            "algorithm.teacher": "ema",
        },
    ]
    weights, keys = [], []
    for index, variant in enumerate(variants):
        config = tiny_config(tmp_path / f"run{index}", tmp_path / f"cache{index}", **common, **variant)
        model, processor = load_policy(config, torch.device("cpu"))
        tasks = builtin_chart_tasks(config.data.num_builtin_tasks, seed=config.data.seed)
        pool = RenderPool(1, 20)
        try:
            warm_start(model, processor, TaskSet(tasks, [None] * len(tasks)), config, pool)
        finally:
            pool.shutdown()
        keys.append(cache_key(processor, config))
        weights.append(model.state_dict())
    assert keys[0] == keys[1]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_teacher_gain_of_a_policy_that_repairs_from_feedback(tmp_path, monkeypatch):
    """A policy that writes a broken program first, and the reference once it sees the feedback:
    the evaluator renders both for real and reports the gain."""
    task = builtin_chart_tasks(1, seed=0, split="eval")[0]
    broken = task.reference.replace("import matplotlib.pyplot as plt", "import matplotlib.pyplot as pl")

    def fake_sample(model, processor, prompts, images, rollout_config, generator=None):
        answers = [task.reference if "Your program failed" in text else broken for text in prompts]
        return [(torch.tensor(list(answer.encode())), None) for answer in answers]

    monkeypatch.setattr(generate, "sample", fake_sample)
    config = load_config(None, {"eval.samples": 2, "data.prompt_image": "false"})
    pool = RenderPool(2, 20)
    try:
        result = Evaluator(TaskSet([task], [None]), config, pool).run(None, TemplateProcessor(), step=0)
    finally:
        pool.shutdown()
    assert result.reward == 0.0 and result.execution_rate == 0.0
    assert result.second_execution_rate == 1.0 and result.second_reward > 0.5  # defects may cost a little
    assert result.teacher_gain == pytest.approx(result.second_reward)
    assert (
        result.teacher_gain_failed == pytest.approx(result.teacher_gain) and result.teacher_gain_ran is None
    )


@pytest.mark.slow
def test_compare_runs_two_algorithms_end_to_end(tmp_path, capsys):
    out = tmp_path / "compare"
    argv = [
        "--algorithms",
        "grpo,vsdpo",
        "--seeds",
        "0",
        "--output",
        str(out),
        "--run.cache_dir",
        str(tmp_path / "cache"),
        "--run.max_steps",
        "2",
        "--warmstart.steps",
        "0",
        "--data.num_builtin_tasks",
        "4",
        "--model.tiny_hidden_size",
        "32",
        "--rollout.prompts_per_step",
        "1",
        "--rollout.num_generations",
        "2",
        "--rollout.max_new_tokens",
        "12",
        "--rollout.render_workers",
        "1",
        "--eval.num_tasks",
        "2",
        "--eval.samples",
        "1",
        "--eval.every",
        "1",
        "--logging.progress",
        "false",
        "--logging.num_sample_renders",
        "0",
        "--logging.tensorboard",
        "false",
    ]
    assert compare_main(argv) == 0
    summary = json.loads((out / "compare.json").read_text())["summary"]
    assert set(summary["rows"]) == {"base", "grpo", "vsdpo"}
    assert summary["rows"]["vsdpo"]["reward"]["n"] == 1 and summary["rows"]["grpo"]["steps"] == 2
    assert (out / "compare.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "| vsdpo |" in printed
    written = json.loads((out / "compare.json").read_text())
    runs, base = written["runs"], written["base"]
    # One base policy, evaluated once: its step-0 evaluation heads every run's curve ...
    assert base["exit_code"] == 0 and [record["step"] for record in base["eval"]] == [0]
    assert runs["grpo-seed0"]["eval"][0] == runs["vsdpo-seed0"]["eval"][0] == base["eval"][0]
    assert not (out / "base" / "metrics.jsonl").exists()  # it took no step
    # ... and is what a run evaluating at its own start finds, which goes on exactly as the compare's run.
    from vsdpo.train.logs import EVAL, METRICS, read_records
    from vsdpo.train.loop import train

    alone = tmp_path / "alone"
    overrides = dict(zip(argv[6::2], argv[7::2], strict=True))
    overrides = {key.removeprefix("--"): value for key, value in overrides.items()}
    train(load_config(None, {**overrides, "algorithm.name": "vsdpo", "run.output_dir": str(alone)}))
    assert read_records(alone, EVAL) == runs["vsdpo-seed0"]["eval"]
    drop_times = lambda records: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in records]
    assert drop_times(read_records(alone, METRICS)) == drop_times(read_records(out / "vsdpo-seed0", METRICS))
    # Paired against grpo of the same seed, and the steps each needs to reach grpo's final reward.
    paired = summary["paired"]["vsdpo-grpo"]
    final = {name: run["eval"][-1]["reward"] for name, run in runs.items()}
    assert paired["n"] == 1 and paired["mean"] == pytest.approx(final["vsdpo-seed0"] - final["grpo-seed0"])
    steps = [record["step"] for record in runs["grpo-seed0"]["eval"]]
    assert steps == [0, 1, 2]  # --eval.every 1 on the command line wins over the comparison's 5
    assert summary["steps_to_reach"]["grpo"]["per_seed"]["0"] in steps
    assert "vsdpo-grpo, paired over 1 seeds" in printed


def test_compare_evaluates_every_5_steps_unless_told(tmp_path):
    import argparse

    from vsdpo.compare import plan

    args = argparse.Namespace(algorithms="grpo,vsdpo", seeds="0,1", jobs=1, output=str(tmp_path), config=None)
    _, _, configs = plan(args, [])
    assert {config.eval.every for config in configs.values()} == {5}
    _, _, configs = plan(args, ["--eval.every", "10"])
    assert {config.eval.every for config in configs.values()} == {10}


def test_compare_rejects_what_it_sets_itself(tmp_path):
    assert compare_main(["--seeds", "x"]) == 2
    assert compare_main(["--run.seed", "3", "--output", str(tmp_path)]) == 2
    assert compare_main(["--eval.at_start", "true", "--output", str(tmp_path)]) == 2
    assert compare_main(["--algorithms", "ppo"]) == 2
