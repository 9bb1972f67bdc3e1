"""Rewards: components, weights, failures, the TRL-style interface and the combinator."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

import vsdpo.render
from vsdpo.feedback import rewards
from vsdpo.feedback.rewards import RewardConfig, VisualReward, combine
from vsdpo.render.types import Defect, RenderResult


def rendered(*severities: float, ok: bool = True) -> RenderResult:
    defects = [Defect("overlap", s, [], [1], "") for s in severities]
    return RenderResult(kind="chart", ok=ok, defects=defects, error=None if ok else "boom")


def test_clean_render_without_reference_scores_one():
    reward = VisualReward(kind="chart")
    assert reward.score_rendered([rendered()], ["x = 1"]) == [1.0]


def test_defects_lower_the_reward_by_their_severity():
    reward = VisualReward(kind="chart")
    weights = rewards.DEFAULT_WEIGHTS["chart"]
    (value,) = reward.score_rendered([rendered(0.5, 0.25)], ["x"])
    expected = (weights["executable"] + weights["defects"] * math.exp(-0.75)) / (
        weights["executable"] + weights["defects"]
    )
    assert value == pytest.approx(expected)


def test_failed_program_gets_the_failure_reward():
    reward = VisualReward(RewardConfig(kind="chart", failure_reward=-1.0))
    assert reward.score_rendered([rendered(ok=False)], ["x"]) == [-1.0]


def test_similarity_comes_from_the_benchmark_metric(monkeypatch):
    score = SimpleNamespace(mean=0.5, ok=True)  # the benchmark's score object
    monkeypatch.setattr(rewards, "_similarity", lambda kind, code, reference, timeout_s, record: score)
    reward = VisualReward(kind="chart", weights={"executable": 1.0, "similarity": 1.0, "defects": 0.0})
    assert reward.score_rendered([rendered()], ["x"], references=["ref"]) == [0.75]


def test_config_rejects_unknown_kind_and_component():
    with pytest.raises(ValueError, match="kind"):
        RewardConfig(kind="video")
    with pytest.raises(ValueError, match="weights"):
        RewardConfig(weights={"beauty": 1.0})


def test_trl_interface_takes_conversations(monkeypatch):
    seen = []

    def fake_render(code, kind, *, timeout_s=20, width=None, height=None, **options):
        seen.append((code, kind, options))
        return rendered() if "fine" in code else rendered(ok=False)

    monkeypatch.setattr(vsdpo.render, "render", fake_render)
    reward = VisualReward(kind="chart")
    completions = [
        [{"role": "assistant", "content": "```python\nfine = 1\n```"}],
        [{"role": "assistant", "content": "```python\nbroken(\n```"}],
    ]
    assert reward(prompts=["p", "p"], completions=completions) == [1.0, 0.0]
    # The chart reward compares with a reference: each render also records the ChartMimic trace.
    recorded = {"chartmimic": True}
    assert seen == [("fine = 1", "chart", recorded), ("broken(", "chart", recorded)]
    assert reward.__name__ == "visual_reward_chart"


def test_a_reward_call_keeps_its_renders_for_the_trainer(monkeypatch):
    def fake_render(code, kind, *, timeout_s=20, width=None, height=None, **options):
        if "lost" in code:
            return RenderResult.failure(kind, "worker died", error_kind="internal")
        return rendered() if "fine" in code else rendered(ok=False)

    monkeypatch.setattr(vsdpo.render, "render", fake_render)
    reward = VisualReward(kind="chart", timeout_s=7.0)
    assert reward.rendered("fine = 1", "chart", 7.0) is None  # nothing rendered yet
    reward(prompts=["p"] * 3, completions=["```python\nfine = 1\n```", "broken(", "lost = 1"])
    kept = reward.rendered("fine = 1", "chart", 7.0, chartmimic=True)
    assert kept is not None and kept.ok
    assert not reward.rendered("broken(", "chart", 7.0).ok  # a program's own failure is its render
    assert reward.rendered("lost = 1", "chart", 7.0) is None  # a fault of the system: render again
    assert reward.rendered("fine = 1", "chart", 20.0) is None  # another timeout
    assert reward.rendered("fine = 1", "web", 7.0) is None and reward.rendered("other", "chart", 7.0) is None
    # Without the ChartMimic trace recorded, a render is not reused where the differences need it.
    plain = VisualReward(kind="chart", timeout_s=7.0, weights={"similarity": 0.0})
    plain(prompts=["p"], completions=["fine = 1"])
    assert plain.rendered("fine = 1", "chart", 7.0, chartmimic=True) is None
    assert plain.rendered("fine = 1", "chart", 7.0) is not None


def test_combine_weights_reward_functions():
    length = lambda prompts, completions, **kw: [float(len(c)) for c in completions]
    one = lambda prompts, completions, **kw: [1.0] * len(completions)
    combined = combine(length, one, weights=[0.5, 2.0])
    assert combined(["p", "p"], ["ab", "abcd"]) == [3.0, 4.0]
    with pytest.raises(ValueError, match="weights"):
        combine(length, one, weights=[1.0])


@pytest.mark.parametrize("record", [True, False])
def test_the_render_pool_asks_chart_renders_for_the_chartmimic_trace_when_told(monkeypatch, record):
    from vsdpo.feedback.rendering import RenderPool

    seen = []

    def fake_retrying(code, kind, *, timeout_s=20, **options):
        seen.append((kind, options))
        return rendered()

    monkeypatch.setattr(vsdpo.render, "render_retrying", fake_retrying)
    with RenderPool(1, 5.0, record_chartmimic=record) as pool:
        pool.render(["a = 1", "<p>a</p>", "b = 2"], ["chart", "web", "slides"])
    asked = {"chartmimic": True} if record else {}
    assert seen == [("chart", asked), ("web", {}), ("slides", {})]
    assert VisualReward(kind="chart").compares_charts
    assert not VisualReward(kind="chart", weights={"similarity": 0.0}).compares_charts
