"""Where a step's time goes: seconds per stage in every step's record, and the stacked plot."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vsdpo.train import logs, scoring, timing, train
from vsdpo.train.timing import STAGES, StepClock

from .tiny_run import tiny_config


class FakeTime:
    """perf_counter that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_nested_stage_counts_to_itself_only_and_the_rest_is_other(monkeypatch):
    clock_time = FakeTime()
    monkeypatch.setattr(timing.time, "perf_counter", clock_time)
    clock = StepClock()
    with clock.stage("generate"):
        clock_time.now += 2.0
    with clock.stage("render"):
        clock_time.now += 1.5
    with clock.stage("update"):
        clock_time.now += 0.25
        with clock.stage("teacher"):
            clock_time.now += 0.75
        clock_time.now += 0.5
    clock_time.now += 0.125  # outside every stage
    metrics = clock.metrics()
    assert metrics["generate_s"] == 2.0 and metrics["render_s"] == 1.5
    assert metrics["update_s"] == 0.75 and metrics["teacher_s"] == 0.75
    assert metrics["other_s"] == 0.125 and metrics["step_s"] == 5.125
    assert metrics["model_idle_s"] == 1.5 and metrics["renderers_idle_s"] == 3.625
    assert sum(metrics[f"{stage}_s"] for stage in STAGES) == metrics["step_s"]
    with pytest.raises(ValueError, match="name: expected one of"), clock.stage("drawing"):
        pass


@pytest.mark.slow
def test_every_step_record_has_its_stage_times_and_the_run_plots_them(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    config = tiny_config(
        run_dir,
        tmp_path_factory.mktemp("cache"),
        **{"run.max_steps": 2, "algorithm.teacher": "ema", "eval.every": 2},
    )
    train(config)
    records = logs.read_records(run_dir)
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        stages = [record[f"{stage}_s"] for stage in STAGES]
        assert all(value >= 0 for value in stages)
        assert sum(stages) == pytest.approx(record["step_s"], rel=1e-9)
        for stage in ("generate", "render", "score", "teacher", "update"):
            assert record[f"{stage}_s"] > 0, stage
    assert records[0]["eval_s"] == 0 and records[1]["eval_s"] > 0  # held-out evaluation on step 2 only
    assert (run_dir / "plots" / "step_time.png").is_file()


class RecordingPool:
    """Stands in for the render pool: records what was started, and when."""

    def __init__(self, events: list) -> None:
        self.events = events

    def start(self, rollouts):
        self.events.append(("render", [r.group for r in rollouts]))
        return [f"future {r.group}" for r in rollouts]


@pytest.mark.parametrize("per_call, calls", [(0, [[0, 1, 2]]), (1, [[0], [1], [2]]), (2, [[0, 1], [2]])])
def test_groups_are_sampled_per_call_and_each_call_rendered_before_the_next(monkeypatch, per_call, calls):
    events = []

    def generate_rollouts(model, processor, tasks, images, config, first_group=0):
        events.append(("generate", list(tasks)))
        G = config.rollout.num_generations
        return [
            SimpleNamespace(group=first_group + i // G, task=t)
            for i, t in enumerate(t for t in tasks for _ in range(G))
        ]

    monkeypatch.setattr(scoring, "generate_rollouts", generate_rollouts)
    config = SimpleNamespace(rollout=SimpleNamespace(groups_per_generate=per_call, num_generations=2))
    rollouts, futures = scoring.generate_and_render(
        None, None, ["a", "b", "c"], [None] * 3, config, RecordingPool(events)
    )
    assert [r.group for r in rollouts] == [0, 0, 1, 1, 2, 2]
    assert [r.task for r in rollouts] == ["a", "a", "b", "b", "c", "c"]
    assert futures == [f"future {r.group}" for r in rollouts]
    expected = []
    for groups in calls:
        expected += [
            ("generate", [["a", "b", "c"][g] for g in groups]),
            ("render", [g for g in groups for _ in range(2)]),
        ]
    assert events == expected
