"""What a run writes: ``metrics.jsonl`` (one JSON object per step), TensorBoard events, PNG plots of
the curves, and sample renders with their defect boxes drawn.

Run directory layout::

    runs/<name>/
      config.yaml          the resolved configuration
      metrics.jsonl        {"step": 1, "reward": ..., "loss": ..., ...} per step
      events.out.tfevents.*  the same scalars for TensorBoard
      plots/reward.png, defect_rate.png, execution_rate.png, losses.png
      samples/step-0004-<task>-<k>.png   rollout renders, defect boxes drawn, and a .txt with the program
      checkpoint-<step>/   see vsdpo.checkpoint
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("vsdpo.train")

# plot file -> the metric keys drawn in it
PLOTS = {
    "reward": ("reward", "reward_std"),
    "defect_rate": ("defect_rate",),
    "execution_rate": ("execution_rate",),
    "losses": ("loss", "pg_loss", "sd_loss"),
}


SMOOTHING = 5  # steps in the running mean drawn over each curve


class RunLogger:
    """Appends one metrics record per step to metrics.jsonl and TensorBoard (rank 0 only)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.run_dir))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {
            "step": step,
            **{k: (float(v) if isinstance(v, int | float) else v) for k, v in metrics.items()},
        }
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, float):
                    self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl; a resumed run's repeated steps keep their latest record."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[int(record["step"])] = record
    return [by_step[step] for step in sorted(by_step)]


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Drop records after ``last_step`` (a resumed run rewrites the steps after its checkpoint)."""
    path = Path(run_dir) / "metrics.jsonl"
    if path.exists():
        kept = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= last_step
        ]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def write_plots(run_dir: str | Path) -> list[Path]:
    """One PNG per entry of ``PLOTS``, each metric over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, keys in PLOTS.items():
        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
        for key in keys:
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            line = ax.plot(steps, values, marker="o", markersize=3, alpha=0.45, label=key)[0]
            if len(values) >= 2 * SMOOTHING:  # the trend under the per-step noise
                windows = [values[max(0, i - SMOOTHING + 1) : i + 1] for i in range(len(values))]
                means = [sum(w) / len(w) for w in windows]
                ax.plot(
                    steps, means, color=line.get_color(), linewidth=2, label=f"{key}, mean of {SMOOTHING}"
                )
        ax.set_xlabel("step")
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(
                fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0)
            )  # outside: never on the curves
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def draw_defects(result) -> bytes | None:
    """The render's PNG with each defect's elements boxed and labelled (``vsdpo.render.annotate``
    when available, else plain boxes)."""
    if not result.image:
        return None
    try:
        from vsdpo.render.annotate import annotate

        return annotate(result)
    except (ImportError, AttributeError, TypeError):
        pass
    from PIL import Image, ImageDraw

    image = Image.open(io.BytesIO(result.image)).convert("RGB")
    draw = ImageDraw.Draw(image)
    boxes = {element.id: element.bbox for element in result.elements}
    for defect in result.defects:
        for element_id in defect.elements:
            if element_id in boxes:
                x0, y0, x1, y1 = boxes[element_id]
                draw.rectangle((x0, y0, x1, y1), outline=(220, 0, 0), width=2)
                draw.text((x0 + 2, y0 + 1), defect.kind, fill=(220, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_samples(run_dir: str | Path, step: int, rollouts: list, count: int) -> None:
    """The first ``count`` rollouts that drew something (else any), as annotated PNG + program text."""
    out_dir = Path(run_dir) / "samples"
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = [r for r in rollouts if r.render is not None and r.render.image]
    chosen = (drawn + [r for r in rollouts if r not in drawn])[:count]
    for index, rollout in enumerate(chosen):
        stem = out_dir / f"step-{step:04d}-{rollout.task.id}-{index}"
        result = rollout.render
        lines = [f"# reward {rollout.reward:.3f}  advantage {rollout.advantage:+.3f}"]
        if result is not None and not result.ok:
            lines.append(f"# error: {result.error}")
        for defect in result.defects if result is not None else []:
            lines.append(
                f"# defect {defect.kind} lines {defect.lines} severity {defect.severity:.2f}: {defect.message}"
            )
        stem.with_suffix(".txt").write_text("\n".join(lines) + "\n" + rollout.program, encoding="utf-8")
        png = draw_defects(result) if result is not None else None
        if png:
            stem.with_suffix(".png").write_bytes(png)


class Progress:
    """A rich progress bar: step, reward, loss, and the time left."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True):
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("reward {task.fields[reward]}  loss {task.fields[loss]}  ran {task.fields[ran]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.task = self.bar.add_task("train", total=total, completed=start, reward="-", loss="-", ran="-")
        self.bar.start()

    def update(self, step: int, metrics: dict) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task,
                completed=step,
                reward=f"{metrics.get('reward', float('nan')):.3f}",
                loss=f"{metrics.get('loss', float('nan')):.4f}",
                ran=f"{metrics.get('execution_rate', float('nan')):.0%}",
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
