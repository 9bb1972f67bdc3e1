"""The scalar reward of each rollout for GRPO: it ran, it resembles the target, it has few defects.

``reward = sum_k w_k * s_k / sum_k w_k`` over the components that apply to the rollout, each
``s_k`` in [0, 1], so the reward lies in [0, 1]:

- ``executable``: 1 when the program ran and drew something, else 0;
- ``similarity``: the benchmark metric against the reference when the rollout has one: ChartMimic's
  mean F1 for charts, Design2Code's mean of block/text/position/colour for web pages (a rollout
  without a reference leaves this component out);
- ``defects``: ``exp(-sum of defect severities)``: 1 for a clean render, lower with every defect;
- ``layout``: AeSlides' mean layout reward for HTML slides (``kind="web"`` with ``slide=True``).

A program that fails scores ``failure_reward`` (0) whatever the weights: nothing it drew can be judged.
Default weights per kind are in :data:`DEFAULT_WEIGHTS`.

Two interfaces: :class:`VisualReward` is a TRL reward function,
``reward_fn(prompts, completions, **columns) -> list[float]``, which extracts the program from each
completion (see :func:`vsdpo.feedback.credit.extract_code`), renders it and scores it; and
:meth:`VisualReward.score_rendered` takes programs already rendered (``RenderResult``s), as the
trainer has them. :func:`combine` sums weighted reward functions into one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vsdpo.feedback.credit import extract_code
from vsdpo.feedback.rendering import RenderPool
from vsdpo.render.types import ARTIFACT_KINDS, Defect, RenderResult

RewardFunction = Callable[..., list[float]]

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "chart": {"executable": 0.2, "similarity": 0.6, "defects": 0.2},
    "web": {"executable": 0.2, "similarity": 0.6, "defects": 0.2, "layout": 0.0},
    "slides": {"executable": 0.3, "similarity": 0.0, "defects": 0.7},
}
COMPONENTS = ("executable", "similarity", "defects", "layout")


@dataclass
class RewardConfig:
    """Weights per component for one artifact kind, and the reward of a failed program."""

    kind: str = "chart"
    weights: dict[str, float] = field(default_factory=dict)
    failure_reward: float = 0.0
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.kind not in ARTIFACT_KINDS:
            raise ValueError(f"kind: expected one of {ARTIFACT_KINDS}, got {self.kind!r}")
        unknown = set(self.weights) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"weights: expected keys among {COMPONENTS}, got {sorted(unknown)}")
        self.weights = {**DEFAULT_WEIGHTS[self.kind], **self.weights}
        negative = {k: w for k, w in self.weights.items() if w < 0}
        if negative:
            raise ValueError(f"weights: expected non-negative weights, got {negative}")


def defect_score(result: RenderResult) -> float:
    return math.exp(-sum(defect.severity for defect in result.defects))


def _similarity(kind: str, code: str, reference: str | None, timeout_s: float, record: dict | None = None):
    """The benchmark's score object of ``code`` against ``reference`` (None without a reference).

    ``record``: what the render's run recorded (``RenderResult.record``); a chart's recorded
    ChartMimic trace is scored instead of running the program once more."""
    if reference is None:
        return None
    if kind == "chart":
        from vsdpo.metrics import chartmimic

        recorded = (record or {}).get("chartmimic")
        return chartmimic.score(code, reference, timeout_s=timeout_s, recorded=recorded)
    if kind == "web":
        from vsdpo.metrics import design2code

        return design2code.score(code, reference, timeout_s=timeout_s)
    return None  # no reference metric for python-pptx decks


def _differences(score, code: str) -> tuple[Defect, ...] | None:
    """How the render differs from the target, from the score object the similarity came from; None
    when the scorer could not compare (the program failed under the benchmark's run, say)."""
    from vsdpo.feedback import differences

    if not score.ok:
        return None
    if getattr(score, "generated_trace", None) is not None and score.reference_trace is not None:
        return tuple(differences.chart_differences(code, score.generated_trace, score.reference_trace))
    if getattr(score, "blocks", None) is not None:
        return tuple(differences.page_differences(code, *score.blocks))
    return None


@dataclass(frozen=True)
class Assessment:
    """One rollout's reward, the components it was made of, and how its render differs from the target
    (``Defect``s of kind ``difference``; vsdpo.feedback.differences), for the teacher's feedback and the credit."""

    reward: float
    components: dict[str, float] = field(default_factory=dict)
    differences: tuple[Defect, ...] | None = None  # None: not compared (it failed, or no reference)


def assess(
    result: RenderResult, code: str, reference: str | None, config: RewardConfig, *, slide: bool = False
) -> Assessment:
    """The reward of one rendered rollout with its components and its differences from the target."""
    if not result.ok:
        return Assessment(config.failure_reward)
    values: dict[str, float] = {"executable": 1.0, "defects": defect_score(result)}
    weights = config.weights
    found: tuple[Defect, ...] | None = None
    if weights.get("similarity", 0) > 0:
        score = _similarity(config.kind, code, reference, config.timeout_s, result.record)
        if score is not None:
            values["similarity"] = score.mean
            found = _differences(score, code)
    if slide and weights.get("layout", 0) > 0 and config.kind == "web":
        from vsdpo.metrics import aeslides

        values["layout"] = aeslides.score(code, timeout_s=config.timeout_s).mean
    return Assessment(combine_components(values, weights), values, found)


def combine_components(values: dict[str, float], weights: dict[str, float]) -> float:
    total_weight = sum(weights.get(name, 0.0) for name in values)
    if total_weight <= 0:
        return 0.0
    return sum(weights.get(name, 0.0) * value for name, value in values.items()) / total_weight


def _completion_text(completion: Any) -> str:
    """A TRL completion: plain text, or a conversation whose last message holds the text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal message: join its text parts
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    raise TypeError(f"completions: expected str or a list of messages, got {type(completion).__name__}")


class VisualReward:
    """The reward of :mod:`vsdpo.feedback.rewards` as a TRL reward function.

    Dataset columns used when present (one value per completion, as TRL passes them): ``reference``
    (the reference program or page), ``kind`` (overrides ``config.kind`` per row), ``slide``.
    """

    def __init__(self, config: RewardConfig | None = None, *, workers: int = 4, **config_kwargs: Any):
        self.config = config or RewardConfig(**config_kwargs)
        self.workers = workers
        self.__name__ = f"visual_reward_{self.config.kind}"

    def renders(self) -> RenderPool:
        """The render pool of ``__call__`` (vsdpo.feedback.rendering, the trainers' own): made on the
        first call and kept, so that the sandbox's workers outlive one batch. A trainer may set
        ``render_pool`` to its own pool instead."""
        if getattr(self, "render_pool", None) is None:
            self.render_pool = RenderPool(
                max(1, self.workers), self.config.timeout_s, record_chartmimic=self.compares_charts
            )
        return self.render_pool

    @property
    def compares_charts(self) -> bool:
        """Whether a chart's reward runs ChartMimic's comparison (a similarity weight above 0): its
        renders then record the trace it needs (vsdpo.feedback.rendering.RenderPool)."""
        weights = self.config.weights if self.config.kind == "chart" else DEFAULT_WEIGHTS["chart"]
        return weights.get("similarity", 0) > 0

    def _config_for(self, kind: str | None) -> RewardConfig:
        if kind is None or kind == self.config.kind:
            return self.config
        custom = {
            k: w for k, w in self.config.weights.items() if w != DEFAULT_WEIGHTS[self.config.kind].get(k)
        }
        return RewardConfig(
            kind=kind,
            weights=custom,
            failure_reward=self.config.failure_reward,
            timeout_s=self.config.timeout_s,
        )

    def rendered(
        self, code: str, kind: str, timeout_s: float, *, chartmimic: bool = False
    ) -> RenderResult | None:
        """The render of ``code`` as ``kind`` from this reward's last call, if that call rendered it
        within the same ``timeout_s`` (and recorded the ChartMimic trace, where ``chartmimic`` asks
        for it) and not with a failure of the system; else None. A trainer that renders the same
        completions for its own feedback takes these instead of rendering each program again."""
        timeout, recorded, results = getattr(self, "_last_renders", (None, False, {}))
        if timeout != timeout_s or (chartmimic and kind == "chart" and not recorded):
            return None
        result = results.get((code, kind))
        return None if result is None or result.fault == "system" else result

    def score_one(
        self,
        result: RenderResult,
        code: str,
        reference: str | None = None,
        kind: str | None = None,
        slide: bool = False,
    ) -> float:
        return self.assess(result, code, reference, kind, slide).reward

    def assess(
        self,
        result: RenderResult,
        code: str,
        reference: str | None = None,
        kind: str | None = None,
        slide: bool = False,
    ) -> Assessment:
        """The reward with its components and the render's differences from the target."""
        return assess(result, code, reference, self._config_for(kind), slide=slide)

    def score_rendered(
        self,
        results: Sequence[RenderResult],
        codes: Sequence[str],
        references: Sequence[str | None] | None = None,
        kinds: Sequence[str | None] | None = None,
        slides: Sequence[bool] | None = None,
    ) -> list[float]:
        """Rewards of programs already rendered (the trainer's path)."""
        n = len(results)
        if len(codes) != n:
            raise ValueError(f"codes: expected {n} programs (one per result), got {len(codes)}")
        references = list(references) if references is not None else [None] * n
        kinds = list(kinds) if kinds is not None else [None] * n
        slides = list(slides) if slides is not None else [False] * n
        jobs = list(zip(results, codes, references, kinds, slides, strict=True))
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, n or 1))) as pool:
            return list(pool.map(lambda job: self.score_one(*job), jobs))

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        """TRL's reward function. A completion whose render failed by a fault of the system (after one
        more try) gets None: TRL then leaves it out of its group's baseline and gives it advantage 0."""
        codes = [extract_code(_completion_text(c)).code for c in completions]
        kinds = columns.get("kind") or [None] * len(codes)
        kinds_rendered = [kind or self.config.kind for kind in kinds]
        pool = self.renders()
        results = pool.render(codes, kinds_rendered)
        self._last_renders = (
            pool.timeout_s,
            pool.record_chartmimic,
            dict(zip(zip(codes, kinds_rendered, strict=True), results, strict=True)),
        )
        rewards = self.score_rendered(results, codes, columns.get("reference"), kinds, columns.get("slide"))
        return [
            None if result.fault == "system" else reward
            for result, reward in zip(results, rewards, strict=True)
        ]


def combine(*reward_functions: RewardFunction, weights: Sequence[float] | None = None) -> RewardFunction:
    """One reward function: the weighted sum of several (TRL signature in, TRL signature out)."""
    if not reward_functions:
        raise ValueError("reward_functions: expected at least one reward function, got none")
    weights = list(weights) if weights is not None else [1.0] * len(reward_functions)
    if len(weights) != len(reward_functions):
        raise ValueError(f"weights: expected {len(reward_functions)} weights, got {len(weights)}")

    def combined(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        total = [0.0] * len(completions)
        for weight, function in zip(weights, reward_functions, strict=True):
            values = function(prompts, completions, **columns)
            if len(values) != len(completions):
                raise ValueError(
                    f"{getattr(function, '__name__', function)}: expected {len(completions)} rewards, got {len(values)}"
                )
            total = [t + weight * (v if v is not None else 0.0) for t, v in zip(total, values, strict=True)]
        return total

    combined.__name__ = "+".join(getattr(f, "__name__", "reward") for f in reward_functions)
    return combined
