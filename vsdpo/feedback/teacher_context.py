"""The teacher's privileged context: what the rollout's program did, written out.

The student sees ``prompt ⊕ assistant header ⊕ response``; the teacher (same weights, no gradient)
sees ``prompt ⊕ feedback ⊕ assistant header ⊕ response``. The feedback continues the user's turn
right after the task, so the response that follows reads, to the teacher, as the answer to "write it
again, knowing what your program did".

The template (at most ``max_defects`` defects, worst first; the error text cut to
``max_error_chars``), appended to the user's turn after a blank line::

    Your program ran. Its render: <image>
    Defects found:
    - line 5: overlap (severity 0.40): tick labels 'North region' and 'South region' overlap
        5: ax.bar(['North region', ...
    Write the program again with these defects fixed.

when the program ran (``No defects found.`` when the list is empty), and::

    Your program failed with this error:
    NameError: name 'plt' is not defined
    at line 3:
        3: fig, ax = plt.subplots()
    Write the program again with the error fixed.

when it failed. ``<image>`` stands for the model's image placeholder
(``<|vision_start|><|image_pad|><|vision_end|>`` for Qwen-VL), expanded by the processor.

With ``differences`` (vsdpo.feedback.differences: how the render differs from the task's target, as the
reward computed it), a program that ran is also told what to change, worst first, before its layout
defects; the teacher then knows what the student cannot see (a colour shown only in the target
image, a wrong text, another chart type)::

    Your program ran. Its render: <image>
    Your program:
    import matplotlib.pyplot as plt
    ...
    Compared with the target:
    - line 4: bar colour #D62728 (tab:red) should be #1F77B4 (tab:blue)
        4: ax.bar(['A', 'B'], [3, 5], color='tab:red')
    - text 'Sales' should be 'Revenue'
    No defects found.
    Write the program again with these differences fixed.

and a program that matches hears ``It matches the target.`` and ``Write the program again.``, so
that the teacher learns to keep what is right. The program is quoted whole (up to
``max_program_chars``), so that the teacher can keep its right lines and change only those named.
``differences=None`` (no comparison: no reference, or the ``defects`` feedback) gives the template
above, the paper's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
# What the teacher is told of a program that ran: its differences from the target and its defects,
# or its defects only (the paper's template). Both trainers take the same names.
FEEDBACK_MODES = ("compare", "defects")
SEPARATOR = "\n\n"  # between the task and the feedback, inside the user's turn


@dataclass
class TeacherContext:
    """The feedback text (with one image placeholder per image) and its images (PIL)."""

    text: str
    images: list[Any] = field(default_factory=list)


def _quote_lines(program: str, lines: list[int], limit: int = 3) -> list[str]:
    source = program.splitlines()
    return [f"    {n}: {source[n - 1].strip()[:80]}" for n in lines[:limit] if 0 < n <= len(source)]


def _where(lines: list[int]) -> str:
    """``line 5`` or ``lines 5, 7``; empty when there are none."""
    if not lines:
        return ""
    return f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines))}"


def defect_report(result, program: str, max_defects: int = 5) -> list[str]:
    """The written defect report: one item per defect, worst first, with the lines behind it."""
    if not result.defects:
        return ["No defects found."]
    report = ["Defects found:"]
    for defect in sorted(result.defects, key=lambda d: -d.severity)[:max_defects]:
        where = _where(defect.lines) or "no line"
        report.append(f"- {where}: {defect.kind} (severity {defect.severity:.2f}): {defect.message}")
        report += _quote_lines(program, defect.lines)
    if len(result.defects) > max_defects:
        report.append(f"- and {len(result.defects) - max_defects} more.")
    return report


def difference_report(differences, program: str, max_differences: int = 5) -> list[str]:
    """The comparison with the target: one item per difference, worst first, with its lines."""
    if not differences:
        return ["It matches the target."]
    report = ["Compared with the target:"]
    for difference in sorted(differences, key=lambda d: -d.severity)[:max_differences]:
        where = _where(difference.lines)
        report.append(f"- {where}: {difference.message}" if where else f"- {difference.message}")
        report += _quote_lines(program, difference.lines, limit=1)
    if len(differences) > max_differences:
        report.append(f"- and {len(differences) - max_differences} more.")
    return report


def teacher_context(
    result,
    program: str,
    *,
    differences=None,
    with_image: bool = True,
    max_defects: int = 5,
    max_differences: int = 5,
    max_error_chars: int = 300,
    max_program_chars: int = 2000,
) -> TeacherContext:
    """Build the feedback for one rollout from its ``RenderResult``, its program text and, when it was
    compared with its target, its ``differences`` (``Defect``s of vsdpo.feedback.differences; None: not compared)."""
    images = []
    if result.ok:
        body = ["Your program ran."]
        if with_image and result.image:
            from PIL import Image

            images.append(Image.open(io.BytesIO(result.image)).convert("RGB"))
            body = [f"Your program ran. Its render: {IMAGE_PLACEHOLDER}"]
        if differences is not None:
            # The program itself: a teacher that is told what differs can then keep every line that is
            # right and change only those the comparison names, as a person reading a review would.
            body += ["Your program:", program.strip("\n")[:max_program_chars]]
            body += difference_report(differences, program, max_differences)
        body += defect_report(result, program, max_defects)
        fix = [name for name, found in (("differences", differences), ("defects", result.defects)) if found]
        body.append(
            f"Write the program again with these {' and '.join(fix)} fixed."
            if fix
            else "Write the program again."
        )
    else:
        error = (result.error or "unknown error").strip()
        if len(error) > max_error_chars:
            error = error[: max_error_chars - 3] + "..."
        body = ["Your program failed with this error:", error]
        if result.error_lines:
            body.append(f"at {_where(result.error_lines)}:")
            body += _quote_lines(program, result.error_lines)
        body.append("Write the program again with the error fixed.")
    return TeacherContext(text=SEPARATOR + "\n".join(body), images=images)


def told_differences(differences, mode: str):
    """The differences the teacher is told of, and credited for, under feedback ``mode``: all of them
    with ``compare``, none (``None``: not compared) with ``defects``."""
    if mode not in FEEDBACK_MODES:
        raise ValueError(f"feedback: expected one of {FEEDBACK_MODES}, got {mode!r}")
    return differences if mode == "compare" else None


def template_corpus() -> list[str]:
    """Sample feedback texts, so that a tokenizer trained on the project's corpus knows the template."""
    from vsdpo.render.types import Defect, RenderResult

    program = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar(['A'], [1])\n"
    kinds = ("overlap", "clipped_text", "overflow", "misalignment", "low_contrast")
    samples = [
        RenderResult(
            kind="chart", ok=True, defects=[Defect(k, 0.5, [], [3], f"{k} of tick labels") for k in kinds]
        ),
        RenderResult(kind="chart", ok=True),
        RenderResult.failure("chart", "SyntaxError: invalid syntax", [2]),
        RenderResult.failure("chart", "NameError: name 'ax' is not defined", [3]),
        RenderResult.failure(
            "chart", "TypeError: bar() missing 1 required positional argument: 'height'", [3]
        ),
    ]
    texts = [teacher_context(sample, program).text for sample in samples]
    differences = [
        Defect("difference", 0.5, [], [3], "bar colour #D62728 (tab:red) should be #1F77B4 (tab:blue)"),
        Defect("difference", 0.3, [], [4], "text 'Sales' should be 'Revenue'"),
        Defect("difference", 0.2, [], [3], "chart type: draws bar, the target draws barh"),
        Defect("difference", 0.1, [], [], "text 'Month' is missing"),
    ]
    texts.append(teacher_context(samples[1], program, differences=differences).text)
    texts.append(teacher_context(samples[1], program, differences=[]).text)
    return texts
