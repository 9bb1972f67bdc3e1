"""Built-in chart tasks: simple matplotlib programs drawn from a seeded generator.

Each task pairs a prompt (what to draw, with the numbers) with the reference program that draws it;
the trainer renders the reference once to get the target image shown with the prompt. The programs
share one small template so that a tiny model can learn to write runnable ones after a short
warm-start, and some choices (long labels, many rotated ticks, a legend over the data) produce real
visual defects, so the defect signal is not always empty.
"""

from __future__ import annotations

import hashlib
import random

from vsdpo.tasks.types import Task

CHART_TYPES = ("bar", "barh", "line", "scatter", "pie")
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "black", "gray")
TITLES = ("Sales", "Revenue", "Visitors", "Growth", "Costs", "Scores", "Rainfall", "Orders")
SHORT_LABELS = ("A", "B", "C", "D", "E", "F")
# Long category names make tick labels collide: a defect the renderer can find and trace.
LONG_LABELS = ("North region", "South region", "East region", "West region", "Central region")
AXIS_LABELS = ("Month", "Year", "Region", "Product", "Week", "Value", "Count")


def _chart_program(rng: random.Random) -> tuple[str, str]:
    """One reference program and the prompt describing it."""
    chart = rng.choice(CHART_TYPES)
    n = rng.randint(3, 5)
    labels = list(rng.choice((SHORT_LABELS, LONG_LABELS))[:n])
    values = [rng.randint(1, 9) for _ in range(n)]
    color = rng.choice(COLORS)
    title = rng.choice(TITLES)
    xlabel, ylabel = rng.sample(AXIS_LABELS, 2)
    lines = ["import matplotlib.pyplot as plt", "", "fig, ax = plt.subplots(figsize=(4, 3))"]
    if chart == "bar":
        lines.append(f"ax.bar({labels!r}, {values!r}, color={color!r})")
    elif chart == "barh":
        lines.append(f"ax.barh({labels!r}, {values!r}, color={color!r})")
    elif chart == "line":
        lines.append(f"ax.plot({labels!r}, {values!r}, color={color!r}, marker='o')")
    elif chart == "scatter":
        lines.append(f"ax.scatter({labels!r}, {values!r}, color={color!r})")
    else:
        lines.append(f"ax.pie({values!r}, labels={labels!r})")
    lines.append(f"ax.set_title({title!r})")
    if chart != "pie":
        lines.append(f"ax.set_xlabel({xlabel!r})")
        lines.append(f"ax.set_ylabel({ylabel!r})")
    if rng.random() < 0.5:
        lines.append("plt.tight_layout()")
    program = "\n".join(lines) + "\n"
    numbers = ", ".join(f"{label}={value}" for label, value in zip(labels, values, strict=False))
    prompt = f"Write matplotlib code for a {chart} chart titled {title!r} of {numbers}"
    prompt += "." if chart == "pie" else f", x label {xlabel!r}, y label {ylabel!r}."
    return program, prompt


SPLITS = ("train", "eval")
EVAL_SHARE = 4  # one prompt in four belongs to the held-out split


def task_split(prompt: str) -> str:
    """The split a prompt belongs to, decided by the prompt alone: the same task can never land in
    both, whatever the seeds and counts of the two calls."""
    return "eval" if hashlib.sha256(prompt.encode("utf-8")).digest()[0] % EVAL_SHARE == 0 else "train"


def builtin_chart_tasks(count: int, seed: int = 0, split: str = "train") -> list[Task]:
    """``count`` chart tasks of ``split`` (``train`` or the held-out ``eval``), the same for the same seed."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if count < 1:
        raise ValueError(f"count: expected at least 1 task, got {count!r}")
    rng = random.Random(seed)
    tasks: list[Task] = []
    while len(tasks) < count:
        program, prompt = _chart_program(rng)
        if task_split(prompt) == split:
            index = len(tasks)
            tasks.append(
                Task(id=f"chart-{split}-{seed}-{index}", kind="chart", prompt=prompt, reference=program)
            )
    return tasks
