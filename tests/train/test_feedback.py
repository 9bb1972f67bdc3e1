"""The teacher's feedback compares the render with the target: what differs, with the lines behind
it, credited like a defect; the warm start teaches its use; the teacher gain is split three ways."""

from __future__ import annotations

import random
import re

import pytest
import torch

from vsdpo.compare import against_baseline, first_step_reaching
from vsdpo.feedback import differences as diff
from vsdpo.feedback.credit import token_credit
from vsdpo.feedback.rewards import VisualReward
from vsdpo.feedback.teacher_context import teacher_context
from vsdpo.render import render
from vsdpo.render.types import Defect, RenderResult
from vsdpo.tasks import Task, builtin_chart_tasks
from vsdpo.train import generate
from vsdpo.train.batch import credit_matrix
from vsdpo.train.config import load_config
from vsdpo.train.corrupt import RUNNING, corrupt, drop_layout, laid_out
from vsdpo.train.data import TaskSet, with_target_images
from vsdpo.train.evaluate import Evaluator
from vsdpo.train.generate import Rollout
from vsdpo.train.scoring import RenderPool
from vsdpo.train.warmstart import repair_examples

from ..conftest import CHROMIUM
from .scripted import TemplateProcessor

REFERENCE = """import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(['A', 'B', 'C'], [3, 5, 2], color='tab:blue')
ax.set_title('Revenue')
ax.set_xlabel('Month')
ax.set_ylabel('Value')
plt.tight_layout()
"""
# Another colour (line 4), another title (line 5), no x label: three differences.
GENERATED = """import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(['A', 'B', 'C'], [3, 5, 2], color='tab:red')
ax.set_title('Sales')
ax.set_ylabel('Value')
plt.tight_layout()
"""


def _assess(program: str, reference: str, kind: str = "chart"):
    result = render(program, kind)
    assert result.ok, result.error
    return result, VisualReward(kind=kind).assess(result, program, reference)


def test_chart_feedback_names_the_differences_with_their_lines():
    result, assessment = _assess(GENERATED, REFERENCE)
    messages = {d.message: d.lines for d in assessment.differences}
    assert messages["bar colour #D62728 (tab:red) should be #1F77B4 (tab:blue)"] == [4]
    assert messages["text 'Sales' should be 'Revenue'"] == [5]
    assert messages["text 'Month' is missing"] == []
    assert all(d.kind == diff.DIFFERENCE and 0 < d.severity <= 1 for d in assessment.differences)
    text = teacher_context(result, GENERATED, differences=assessment.differences, with_image=False).text
    assert "Compared with the target:\n" in text
    assert "- line 4: bar colour #D62728 (tab:red) should be #1F77B4 (tab:blue)\n    4: ax.bar(" in text
    assert "- line 5: text 'Sales' should be 'Revenue'\n    5: ax.set_title('Sales')" in text
    assert "- text 'Month' is missing" in text
    assert text.endswith("fixed.") and "these differences" in text
    # The paper's template (no comparison) says nothing of them.
    plain = teacher_context(result, GENERATED, with_image=False).text
    assert "Compared with the target" not in plain and "tab:blue" not in plain


def test_a_program_that_matches_is_told_so_and_its_reward_sees_its_texts():
    result, assessment = _assess(REFERENCE, REFERENCE)
    assert assessment.differences == () and assessment.components["similarity"] == pytest.approx(1.0)
    text = teacher_context(result, REFERENCE, differences=assessment.differences, with_image=False).text
    assert "It matches the target." in text and "Compared with the target" not in text
    # A wrong title costs reward: the task's reference records its texts although it never saves.
    _, wrong_title = _assess(REFERENCE.replace("'Revenue'", "'Sales'"), REFERENCE)
    assert wrong_title.reward < assessment.reward


def test_a_failed_program_is_not_compared():
    failed = RenderResult.failure("chart", "NameError: name 'ax' is not defined", [4])
    assessment = VisualReward(kind="chart").assess(failed, "ax.bar([1], [1])", REFERENCE)
    assert assessment.differences is None and assessment.reward == 0.0


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium")
def test_page_feedback_names_a_missing_block_and_a_recoloured_text():
    reference = (
        "<html><body style='margin:40px;font-family:sans-serif'>"
        "<h1 style='color:#1f77b4'>Quarterly results</h1>\n"
        "<p>Revenue grew in every region this quarter.</p>\n"
        "<p>Costs stayed flat against the last year.</p>\n"
        "</body></html>"
    )
    page = (
        "<html><body style='margin:40px;font-family:sans-serif'>\n"
        "<h1 style='color:#d62728'>Quarterly results</h1>\n"
        "<p>Revenue grew in every region this quarter.</p>\n"
        "</body></html>"
    )
    result, assessment = _assess(page, reference, kind="web")
    messages = {d.message: d.lines for d in assessment.differences}
    missing = [m for m in messages if "costs stayed flat" in m and "missing" in m]
    recoloured = [m for m in messages if m.startswith("text 'quarterly results' colour #")]
    assert missing and recoloured, messages
    assert "should be #1F77B4 (tab:blue)" in recoloured[0] or "should be #1F77B4" in recoloured[0]
    assert messages[recoloured[0]] == [2]  # the heading's line
    text = teacher_context(result, page, differences=assessment.differences, with_image=False).text
    assert missing[0] in text and recoloured[0] in text


def test_a_difference_is_credited_on_the_tokens_of_its_line():
    response = "Here it is:\n```python\n" + GENERATED + "```\n"
    offsets = [(i, i + 1) for i in range(len(response))]  # one token per character
    colour = Defect(diff.DIFFERENCE, 0.5, [], [4], "bar colour ... should be ...")
    clean = RenderResult("chart", ok=True)
    weights = token_credit(response, offsets, clean, alpha=2.0, differences=[colour])
    line4 = response.index("ax.bar(")
    line4_end = response.index("\n", line4)
    for index, weight in enumerate(weights):
        visible = not response[index].isspace()
        on_line4 = line4 <= index < line4_end and visible
        assert weight == pytest.approx(2.0 if on_line4 else 1.0), (index, response[index])
    assert token_credit(response, offsets, clean, alpha=2.0) == [1.0] * len(response)


@pytest.mark.parametrize("feedback", ["compare", "defects"])
def test_the_trainer_credits_differences_only_with_the_compare_feedback(feedback):
    text = "```python\n" + GENERATED + "```"
    rollout = Rollout(
        Task("t", "chart", "p"),
        0,
        torch.arange(len(text)),
        torch.zeros(len(text)),
        text,
        [(i, i + 1) for i in range(len(text))],
        GENERATED,
        render=RenderResult("chart", ok=True),
        differences=(Defect(diff.DIFFERENCE, 0.5, [], [5], "text 'Sales' should be 'Revenue'"),),
    )
    config = load_config(None, {"algorithm.feedback": feedback, "algorithm.credit_alpha": "1"})
    credit = credit_matrix([rollout], len(text), config)[0]
    credited = {text[i] for i in range(len(text)) if credit[i] > 1}
    assert (credited == set("ax.set_title('Sales')") - {" "}) if feedback == "compare" else not credited


def test_running_corruptions_keep_the_program_running_and_differ():
    program = builtin_chart_tasks(1, seed=5)[0].reference
    for corruption in RUNNING:
        flawed = corruption(program.rstrip("\n").split("\n"), random.Random(1))
        if flawed is None:
            continue
        result = render(flawed, "chart")
        assert result.ok, (corruption.__name__, result.error)
    mixed = corrupt(program, random.Random(0), 4)
    assert len(mixed) == 4


def test_warm_start_repairs_of_every_kind_with_their_real_feedback(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("vsdpo.train.warmstart.PROGRESS_EVERY", 5)
    caplog.set_level("INFO", logger="vsdpo.train")
    tasks = builtin_chart_tasks(3, seed=2)
    config = load_config(
        None,
        {
            "warmstart.corruptions": 4,
            "warmstart.own_samples": 0,
            "warmstart.repair_tasks": 2,
            "warmstart.recoloured": 0,  # tested on their own below
            "warmstart.laid_out": "false",  # as well
            "data.prompt_image": "false",
            "algorithm.teacher_image": "false",
            "run.cache_dir": str(tmp_path),
        },
    )
    pool = RenderPool(2, 20)
    try:
        examples = repair_examples(None, None, TaskSet(tasks, [None] * len(tasks)), [None] * 3, config, pool)
    finally:
        pool.shutdown()
    shown = [r.getMessage() for r in caplog.records]  # the long phase shows its progress
    assert f"warm-start: rendering and scoring {len(examples)} programs for the repairs" in shown
    assert f"warm-start: 5/{len(examples)} programs rendered" in shown
    extra = [e for e in examples if e.answer not in {task.reference for task in tasks}]
    assert len(extra) == 2 * 2  # two more tasks, each kept and once corrupted (a corruption that runs)
    assert all("Your program ran." in e.prompt for e in extra)
    examples = [e for e in examples if e not in extra]
    assert len(examples) >= 3 * 4
    by_task = {task.reference: task.prompt for task in tasks}
    assert all(e.answer in by_task and e.prompt.startswith(by_task[e.answer]) for e in examples)
    failed = [e for e in examples if "Your program failed with this error:" in e.prompt]
    differs = [e for e in examples if "Compared with the target:" in e.prompt]
    matches = [e for e in examples if "It matches the target." in e.prompt]
    assert failed and differs and len(matches) >= 3  # every reference, at least
    assert all(e.prompt.rstrip().endswith("Write the program again with the error fixed.") for e in failed)
    assert any(" colour #" in e.prompt and "should be" in e.prompt for e in differs)  # a swapped colour
    assert any("chart type: " in e.prompt for e in differs)  # another chart type, or a dropped series


def test_warm_start_recoloured_targets_are_learnt_from_the_feedback_only(tmp_path):
    """``warmstart.recoloured``: the task's own reference is the flawed attempt, a copy in another
    colour the target; the prompt is the task's, so only the feedback (and target image) tell them apart."""
    tasks = builtin_chart_tasks(3, seed=2)
    config = load_config(
        None,
        {
            "warmstart.corruptions": 0,
            "warmstart.own_samples": 0,
            "warmstart.repair_tasks": 0,
            "warmstart.recoloured": 2,
            "warmstart.laid_out": "false",
            "run.cache_dir": str(tmp_path),
        },
    )
    pool = RenderPool(2, 20)
    try:
        task_set = with_target_images(tasks, config, pool)
        examples = repair_examples(None, None, task_set, task_set.images, config, pool)
    finally:
        pool.shutdown()
    references = {task.prompt: task.reference for task in tasks}
    recoloured = [e for e in examples if e.answer not in references.values()]
    assert len(recoloured) >= 4  # two per task with a colour (a pie names none)
    for example in recoloured:
        prompt = next(p for p in references if example.prompt.startswith(p))
        original = references[prompt]
        assert original.strip() in example.prompt  # the flawed attempt quoted: what the prompt recalls
        assert example.answer != original and len(example.answer.splitlines()) == len(original.splitlines())
        assert "Compared with the target:" in example.prompt and "should be" in example.prompt
        wanted = re.findall(r"color='([^']+)'", example.answer)
        assert any(f"({colour})" in example.prompt for colour in wanted)  # the target's colour, named
        assert example.target is not None and example.target.size[0] > 0  # the recoloured target's image
    kept = [e for e in examples if e.answer in references.values()]
    assert len(kept) == 3 and all("It matches the target." in e.prompt for e in kept)


def test_dropping_the_layout_call_cuts_the_labels_and_laid_out_restores_it():
    task = next(
        t
        for t in builtin_chart_tasks(8, seed=2)
        if "tight_layout" in t.reference and "ax.pie" not in t.reference
    )
    assert not render(task.reference, "chart").defects
    flawed = drop_layout(task.reference.rstrip("\n").split("\n"), random.Random(0))
    cut = render(flawed, "chart")
    assert cut.ok and any(d.kind == "clipped_text" for d in cut.defects)
    assert laid_out(flawed) == task.reference  # the fix is the call at the end, as the references have it
    assert laid_out(task.reference) is None  # a program that lays itself out is left alone
    assert laid_out("print(1)\n") is None  # no pyplot to call it on


def test_warm_start_answers_a_reference_with_cut_labels_laid_out(tmp_path):
    """The feedback on a reference whose render cuts its labels asks for them fixed; the answer is the
    reference with the layout call added, on every repair of that task, and the reference elsewhere."""
    tasks = builtin_chart_tasks(8, seed=2)
    config = load_config(
        None,
        {
            "warmstart.corruptions": 2,
            "warmstart.own_samples": 0,
            "warmstart.repair_tasks": 0,
            "warmstart.recoloured": 0,
            "data.prompt_image": "false",
            "algorithm.teacher_image": "false",
            "run.cache_dir": str(tmp_path),
        },
    )
    pool = RenderPool(2, 20)
    try:
        examples = repair_examples(None, None, TaskSet(tasks, [None] * len(tasks)), [None] * 8, config, pool)
    finally:
        pool.shutdown()
    fixed = kept = 0
    for task in tasks:
        answers = {e.answer for e in examples if e.prompt.startswith(task.prompt)}
        assert len(answers) == 1  # one answer for every repair of the task
        answer = answers.pop()
        before = render(task.reference, "chart")
        if any(d.kind == "clipped_text" for d in before.defects):
            assert answer == laid_out(task.reference)
            after = render(answer, "chart")
            assert after.ok and not any(d.kind == "clipped_text" for d in after.defects)
            shown = next(
                e.prompt for e in examples if e.prompt.startswith(task.prompt) and "clipped_text" in e.prompt
            )
            assert "is cut by the canvas edge" in shown and "with these defects fixed" in shown
            fixed += 1
        else:
            assert answer == task.reference
            kept += 1
    assert fixed >= 2 and kept >= 2


def test_teacher_gain_is_split_three_ways_on_a_scripted_policy(monkeypatch):
    """First attempts: one fails, one runs in the wrong colour, one is the reference; given the
    feedback the policy writes the reference each time."""
    tasks = builtin_chart_tasks(3, seed=0, split="eval")
    first = {}
    references = {task.prompt: task.reference for task in tasks}
    for index, task in enumerate(tasks):
        if index == 0:
            first[task.prompt] = task.reference.replace(
                "import matplotlib.pyplot as plt", "import matplotlib as pl"
            )
        elif index == 1:
            first[task.prompt] = corrupt_colour(task.reference)
        else:
            first[task.prompt] = task.reference

    def fake_sample(model, processor, prompts, images, rollout_config, generator=None):
        answers = []
        for text in prompts:
            prompt = next(p for p in references if text.startswith(p))
            answers.append(references[prompt] if text != prompt else first[prompt])
        return [(torch.tensor(list(answer.encode())), None) for answer in answers]

    monkeypatch.setattr(generate, "sample", fake_sample)
    config = load_config(None, {"eval.samples": 1, "data.prompt_image": "false"})
    pool = RenderPool(2, 20)
    try:
        result = Evaluator(TaskSet(tasks, [None] * 3), config, pool).run(None, TemplateProcessor(), step=0)
    finally:
        pool.shutdown()
    assert result.teacher_gain_failed > 0.5
    assert result.teacher_gain_flawed > 0.05
    assert result.teacher_gain_matched == pytest.approx(0.0)


def test_second_attempts_are_sampled_from_the_teachers_weights(monkeypatch):
    """With an EMA teacher the second attempts come from its weights, not the policy's: here only the
    teacher can repair the wrong colour, so the gain is the teacher's."""
    task = builtin_chart_tasks(1, seed=3, split="eval")[0]
    flawed = corrupt_colour(task.reference)
    sampled_by = []

    def fake_sample(model, processor, prompts, images, rollout_config, generator=None):
        sampled_by.append((model, len(prompts)))
        answers = [task.reference if model == "teacher" else flawed for _ in prompts]
        return [(torch.tensor(list(answer.encode())), None) for answer in answers]

    monkeypatch.setattr(generate, "sample", fake_sample)
    config = load_config(None, {"eval.samples": 1, "data.prompt_image": "false"})
    pool = RenderPool(2, 20)
    try:
        evaluator = Evaluator(TaskSet([task], [None]), config, pool)
        with_teacher = evaluator.run("policy", TemplateProcessor(), step=0, teacher="teacher")
        live = evaluator.run("policy", TemplateProcessor(), step=0)
    finally:
        pool.shutdown()
    assert sampled_by == [("policy", 1), ("teacher", 1), ("policy", 1), ("policy", 1)]
    assert with_teacher.reward == pytest.approx(live.reward)  # the same first attempt
    assert with_teacher.teacher_gain_flawed > 0.01  # the colour repaired
    assert live.teacher_gain_flawed == pytest.approx(0.0)  # the policy repeats its own program


def corrupt_colour(program: str) -> str:
    for colour in ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "black", "gray"):
        if f"color='{colour}'" in program:
            other = "gold" if colour != "gold" else "teal"
            return program.replace(f"color='{colour}'", f"color='{other}'")
    return program.replace("ax.set_title('", "ax.set_title('Not ")  # a pie: another title


def test_paired_difference_and_steps_to_reach():
    curve = lambda *rewards: [{"step": 5 * i, "reward": r} for i, r in enumerate(rewards)]
    runs = {
        "grpo-seed0": {"algorithm": "grpo", "seed": 0, "eval": curve(0.5, 0.55, 0.60)},
        "grpo-seed1": {"algorithm": "grpo", "seed": 1, "eval": curve(0.5, 0.52, 0.58)},
        "vsdpo-seed0": {"algorithm": "vsdpo", "seed": 0, "eval": curve(0.5, 0.61, 0.64)},
        "vsdpo-seed1": {"algorithm": "vsdpo", "seed": 1, "eval": curve(0.5, 0.54, 0.57)},
    }
    result = against_baseline(runs, ["grpo", "vsdpo"], [0, 1])
    paired = result["paired"]["vsdpo-grpo"]
    assert paired["per_seed"] == {0: pytest.approx(0.04), 1: pytest.approx(-0.01)}
    assert paired["mean"] == pytest.approx(0.015) and paired["se"] == pytest.approx(0.025)
    reach = result["steps_to_reach"]
    assert reach["vsdpo"]["per_seed"] == {0: 5, 1: None} and reach["vsdpo"]["reached"] == 1
    assert reach["grpo"]["per_seed"] == {0: 10, 1: 10} and reach["grpo"]["mean"] == 10
    assert first_step_reaching(curve(0.1, 0.2), 0.3) is None


def test_standard_error_counts_each_task_once():
    from vsdpo.train.evaluate import Attempt, standard_error

    rewards = {"a": (0.2, 0.4), "b": (0.6, 0.6), "c": (1.0, 0.8)}  # task means 0.3, 0.6, 0.9
    attempts = [Attempt("p", task_id=task, reward=r) for task, pair in rewards.items() for r in pair]
    assert standard_error(attempts) == pytest.approx(0.3 / 3**0.5)  # std 0.3 over 3 tasks
    assert standard_error(attempts[:2]) is None
