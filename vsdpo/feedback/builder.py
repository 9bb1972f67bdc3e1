"""One completion's feedback: what its teacher is told and the credit of its tokens, from its render.

Both trainers build it here (``vsdpo.train.batch`` for each rollout, ``VisualSDPOTrainer`` for each
completion), so that the same completion and the same render give the same feedback text and the same
credit in either. The inputs are what every trainer has by then: the render, the program, the
completion's text and token spans (vsdpo.feedback.spans), how the render differs from its target
(vsdpo.feedback.differences; None: not compared) and the options of feedback and credit.

A completion whose render failed by a fault of the system, or whose reward could not be computed, is
*left out*: it says nothing of the program, so its teacher is told nothing and its tokens get credit 0
(the trainers also mask it out of the policy term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vsdpo.feedback.credit import token_credit
from vsdpo.feedback.teacher_context import TeacherContext, teacher_context, told_differences
from vsdpo.render.types import RenderResult


@dataclass(frozen=True)
class FeedbackOptions:
    """What the teacher is told, and how credit is weighed, the same options under both trainers'
    names: ``algorithm.feedback``/``teacher_image``/``credit_alpha``/``credit_reduce`` of
    ``vsdpo.train``, the fields of the same names of ``VisualSDPOConfig``."""

    feedback: Literal["compare", "defects"] = "compare"  # vsdpo.feedback.teacher_context.FEEDBACK_MODES
    with_image: bool = True  # the render in the feedback (a model that reads images)
    max_defects: int = 5
    credit_alpha: float = 1.0  # 1 + alpha * severity on the tokens behind a defect or a difference
    credit_reduce: Literal["max", "sum"] = "max"
    weighted: bool = True  # False: every token's credit is 1 (SDPO without the visual credit)


@dataclass(frozen=True)
class Feedback:
    """The teacher's context and one credit weight per completion token."""

    context: TeacherContext
    credit: tuple[float, ...]
    left_out: bool = False  # a fault of the system or a failed reward: nothing told, credit 0


def build_feedback(
    result: RenderResult,
    program: str,
    text: str,
    spans: list[tuple[int, int]],
    *,
    differences=None,
    options: FeedbackOptions = FeedbackOptions(),
    left_out: bool = False,
) -> Feedback:
    """The feedback on one completion (``text``, its tokens' ``spans``) whose ``program`` rendered as
    ``result``; ``differences``: its render's differences from the target, as the reward found them,
    told and credited as ``options.feedback`` says. ``left_out`` (or a fault of the system) gives the
    empty feedback and credit 0."""
    if left_out or result.fault == "system":
        return Feedback(TeacherContext(""), (0.0,) * len(spans), left_out=True)
    context = feedback_context(result, program, differences=differences, options=options)
    return Feedback(context, feedback_credit(result, text, spans, differences=differences, options=options))


def feedback_credit(
    result: RenderResult,
    text: str,
    spans: list[tuple[int, int]],
    *,
    differences=None,
    options: FeedbackOptions = FeedbackOptions(),
    left_out: bool = False,
) -> tuple[float, ...]:
    """The credit half of :func:`build_feedback` alone (no context, no image decoded): 0 on every token
    of a left-out completion, 1 without ``options.weighted``, else vsdpo.feedback.credit's weights."""
    if left_out or result.fault == "system":
        return (0.0,) * len(spans)
    if not options.weighted:
        return (1.0,) * len(spans)
    told = told_differences(differences, options.feedback)
    credit = token_credit(
        text, spans, result, alpha=options.credit_alpha, reduce=options.credit_reduce, differences=told
    )
    return tuple(credit)


def feedback_context(
    result: RenderResult, program: str, *, differences=None, options: FeedbackOptions = FeedbackOptions()
) -> TeacherContext:
    """What the teacher is told of ``program`` rendered as ``result``, its ``differences`` from the
    target told as ``options.feedback`` says (also for a program without tokens: a held-out attempt,
    a warm-start repair)."""
    return teacher_context(
        result,
        program,
        differences=told_differences(differences, options.feedback),
        with_image=options.with_image,
        max_defects=options.max_defects,
    )
