"""``rollout.max_lag: 1``: the next step's rollouts made on a thread of their own while the step
updates, by a copy of the policy one update behind, weighed against the log-probs that sampled them."""

from __future__ import annotations

import re
import shutil

import pytest

from vsdpo.train import logs, loop, train
from vsdpo.train.config import ConfigError
from vsdpo.train.timing import STAGES

from .tiny_run import tiny_config

STEPS = 3  # checkpoints at steps 2 and 3 (tiny_run's save_steps 2)


def _tasks_per_step(run_dir) -> dict[int, list[str]]:
    """The tasks of each step, read from its saved sample renders' names."""
    steps: dict[int, list[str]] = {}
    for path in sorted((run_dir / "samples").glob("step-*.txt")):
        step, task = re.match(r"step-(\d+)-(.+)-\d+\.txt", path.name).groups()
        steps.setdefault(int(step), []).append(task)
    return steps


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run, synchronous and with max_lag 1."""
    cache = tmp_path_factory.mktemp("cache")
    options = {
        "run.max_steps": STEPS,
        "algorithm.name": "vsdpo",
        "logging.sample_every": 1,
        "logging.num_sample_renders": 2,
        "eval.every": 2,
    }
    out = {}
    for lag in (0, 1):
        run_dir = tmp_path_factory.mktemp(f"lag{lag}")
        train(tiny_config(run_dir, cache, **options, **{"rollout.max_lag": lag}))
        out[lag] = run_dir
    return out, cache, options


@pytest.mark.slow
def test_rollouts_one_update_behind_are_weighed_against_the_policy_that_sampled_them(runs):
    dirs, _, _ = runs
    synchronous, lagged = (logs.read_records(dirs[lag]) for lag in (0, 1))
    assert [r["step"] for r in lagged] == list(range(1, STEPS + 1))
    assert [r["policy_lag"] for r in synchronous] == [0.0] * STEPS
    assert [r["policy_lag"] for r in lagged] == [0.0] + [1.0] * (STEPS - 1)
    # The first step samples from the policy it updates, as a synchronous step does: the update's
    # log-probs are generate's own. Later steps' rollouts were sampled one update before: they are not.
    assert lagged[0]["logprob_gap"] < 1e-3 and all(r["logprob_gap"] < 1e-3 for r in synchronous)
    assert all(r["logprob_gap"] > 1e-2 for r in lagged[1:]), [r["logprob_gap"] for r in lagged]
    for record in lagged:
        assert sum(record[f"{stage}_s"] for stage in STAGES) == pytest.approx(record["step_s"], rel=1e-9)
        assert record["generate_s"] == record["render_s"] == record["score_s"] == 0.0
        assert record["background_generate_s"] > 0 and record["background_score_s"] > 0
    assert all("background_generate_s" not in r and r["wait_s"] == 0.0 for r in synchronous)
    # The same tasks in the same order either way; held-out evaluations on the same steps.
    assert _tasks_per_step(dirs[1]) == _tasks_per_step(dirs[0])
    assert [r["step"] for r in logs.read_records(dirs[1], logs.EVAL)] == [0, 2, 3]
    assert (dirs[1] / "plots" / "step_time.png").is_file()


@pytest.mark.slow
def test_a_lagged_run_resumes_on_the_task_it_would_have_trained_next(runs, tmp_path):
    dirs, cache, options = runs
    resumed = tmp_path / "resumed"
    shutil.copytree(dirs[1], resumed)
    shutil.rmtree(resumed / f"checkpoint-{STEPS}")  # resumes from step 2: step 3 is made again
    for late in resumed.glob(f"samples/step-{STEPS:04d}-*"):
        late.unlink()
    train(tiny_config(resumed, cache, **options, **{"rollout.max_lag": 1, "run.resume": True}))
    records = logs.read_records(resumed)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert records[-1]["policy_lag"] == 0.0  # the resumed process samples its first step afresh
    assert _tasks_per_step(resumed) == _tasks_per_step(dirs[1])


def test_max_lag_is_refused_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.setattr(loop.distributed, "world_size", lambda: 2)
    config = tiny_config(tmp_path / "run", tmp_path / "cache", **{"rollout.max_lag": 1})
    with pytest.raises(
        ConfigError, match=r"rollout.max_lag: expected 0 under torchrun \(2 processes\), got 1"
    ):
        train(config)
