"""What a run writes: ``metrics.jsonl`` (one JSON object per step), TensorBoard events, PNG plots of
the curves, and sample renders with their defect boxes drawn.

Run directory layout::

    runs/<name>/
      config.yaml          the resolved configuration
      metrics.jsonl        {"step": 1, "reward": ..., "loss": ..., ...} per step
      eval.jsonl           {"step": 0, "reward": ..., "teacher_gain": ...} per held-out evaluation
      eval/step-0010.jsonl every attempt of that evaluation: program, reward, error, the second attempt
      events.out.tfevents.*  the same scalars for TensorBoard
      plots/reward.png, execution_rate.png, defect_rate.png, teacher_gain.png, losses.png,
            step_time.png (each step's seconds per stage, stacked: vsdpo.train.timing)
      samples/step-0004-<task>-<k>.png   rollout renders, defect boxes drawn, and a .txt with the program
      checkpoint-<step>/   see vsdpo.train.checkpoint
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # noqa: E402
from rich.progress import Progress as RichProgress  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from vsdpo.render.annotate import annotate  # noqa: E402
from vsdpo.train.timing import STAGES  # noqa: E402

log = logging.getLogger("vsdpo.train")

METRICS, EVAL = "metrics.jsonl", "eval.jsonl"  # training steps; held-out evaluations (vsdpo.train.evaluate)

# plot file -> the (records file, key) curves drawn in it: the held-out curves next to the training ones
PLOTS = {
    "reward": ((METRICS, "reward"), (METRICS, "reward_std"), (EVAL, "reward"), (EVAL, "second_reward")),
    "execution_rate": ((METRICS, "execution_rate"), (EVAL, "execution_rate")),
    "defect_rate": ((METRICS, "defect_rate"), (EVAL, "defect_rate")),
    "teacher_gain": (
        (EVAL, "teacher_gain"),
        (EVAL, "teacher_gain_failed"),
        (EVAL, "teacher_gain_flawed"),
        (EVAL, "teacher_gain_matched"),
    ),
    "losses": ((METRICS, "loss"), (METRICS, "pg_loss"), (METRICS, "sd_loss")),
}
LABELS = {METRICS: "train", EVAL: "held-out"}

SMOOTHING = 5  # steps in the running mean drawn over each training curve


class RunLogger:
    """Appends one record per step to metrics.jsonl, one per evaluation to eval.jsonl, and the same
    scalars to TensorBoard (``train/…``, ``eval/…``); rank 0 only."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                self.writer = SummaryWriter(log_dir=str(self.run_dir))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self._append(METRICS, "train", step, metrics)

    def log_eval(self, result) -> None:
        """An ``EvalResult`` of vsdpo.train.evaluate."""
        self._append(EVAL, "eval", result.step, result.metrics())
        if self.enabled:
            gain = ""
            if result.teacher_gain is not None:
                splits = [
                    (name, getattr(result, f"teacher_gain_{name}"))
                    for name in ("failed", "flawed", "matched")
                ]
                shown = ", ".join(f"{name} {value:+.3f}" for name, value in splits if value is not None)
                gain = f", teacher gain {result.teacher_gain:+.3f} ({shown})"
            log.info(
                "held-out at step %d: reward %.3f, ran %.0f%%%s",
                result.step,
                result.reward,
                100 * result.execution_rate,
                gain,
            )

    def _append(self, name: str, scope: str, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {
            "step": step,
            **{k: (float(v) if isinstance(v, int | float) else v) for k, v in metrics.items()},
        }
        with open(self.run_dir / name, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, float):
                    self.writer.add_scalar(f"{scope}/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _parsed(line: str) -> dict[str, Any] | None:
    """A record, or None for a blank or torn line (a run killed mid-write leaves one)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def read_records(run_dir: str | Path, name: str = METRICS) -> list[dict[str, Any]]:
    """The records of ``name``; a resumed run's repeated steps keep their latest record."""
    path = Path(run_dir) / name
    if not path.exists():
        return []
    by_step = {r["step"]: r for r in map(_parsed, path.read_text(encoding="utf-8").splitlines()) if r}
    return [by_step[step] for step in sorted(by_step)]


def truncate_records(run_dir: str | Path, last_step: int) -> None:
    """Keep the records up to ``last_step`` (a resumed run redoes the steps after its checkpoint),
    dropping any torn line."""
    for name in (METRICS, EVAL):
        path = Path(run_dir) / name
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if (r := _parsed(line)) and r["step"] <= last_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def write_plots(run_dir: str | Path) -> list[Path]:
    """One PNG per entry of ``PLOTS``: training curves (with a running mean) and held-out points."""
    records = {name: read_records(run_dir, name) for name in (METRICS, EVAL)}
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, curves in PLOTS.items():
        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
        for source, key in curves:
            points = [(r["step"], r[key]) for r in records[source] if isinstance(r.get(key), int | float)]
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            label = f"{LABELS[source]} {key}"
            if source == EVAL:
                ax.plot(steps, values, marker="s", markersize=5, linewidth=2, label=label)
                continue
            line = ax.plot(steps, values, marker="o", markersize=3, alpha=0.45, label=label)[0]
            if len(values) >= 2 * SMOOTHING:  # the trend under the per-step noise
                windows = [values[max(0, i - SMOOTHING + 1) : i + 1] for i in range(len(values))]
                means = [sum(w) / len(w) for w in windows]
                ax.plot(
                    steps, means, color=line.get_color(), linewidth=2, label=f"{label}, mean of {SMOOTHING}"
                )
        if name == "teacher_gain":
            ax.axhline(0.0, color="gray", linewidth=1)
        ax.set_xlabel("step")
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
        if not ax.get_legend_handles_labels()[0]:
            plt.close(fig)
            continue
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never on the curves
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    path = plot_step_time(records[METRICS], out_dir / "step_time.png")
    if path is not None:
        written.append(path)
    return written


def plot_step_time(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Each step's seconds per stage (``<stage>_s`` of vsdpo.train.timing.STAGES) as stacked bars, a
    held-out evaluation's seconds written above its step; None when no record has them."""
    rows = [r for r in records if all(isinstance(r.get(f"{stage}_s"), int | float) for stage in STAGES)]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    bottom = [0.0] * len(rows)
    for stage in STAGES:
        if stage == "eval":  # a held-out evaluation dwarfs the steps: written above its bar instead
            continue
        values = [r[f"{stage}_s"] for r in rows]
        if not any(values):
            continue
        ax.bar(steps, values, bottom=bottom, width=0.85, label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for step, top, row in zip(steps, bottom, rows, strict=True):
        if row["eval_s"] > 0:
            ax.annotate(f"eval\n{row['eval_s']:.0f} s", (step, top), ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, max(bottom) * 1.3 or 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("seconds")
    ax.set_title("step time by stage (held-out evaluations written above their step)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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
        png = annotate(result) if result is not None and result.image else None
        if png:
            stem.with_suffix(".png").write_bytes(png)


class Progress:
    """A rich progress bar: step, reward, loss, and the time left."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True):
        self.bar = None
        if not enabled:
            return
        self.bar = RichProgress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "reward {task.fields[reward]}  loss {task.fields[loss]}  ran {task.fields[ran]}  held-out {task.fields[held_out]}"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.task = self.bar.add_task(
            "train", total=total, completed=start, reward="-", loss="-", ran="-", held_out="-"
        )
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
            if "eval_reward" in metrics:  # the newest held-out reward stays shown until the next
                self.bar.update(self.task, held_out=f"{metrics['eval_reward']:.3f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def step_metrics(rollouts, update, **extra) -> dict[str, float]:
    """The scalars logged per step: this rank's rollouts, the update's global losses (an
    ``UpdateResult``), and ``extra`` (timings, learning rate). Rewards and rates are those of the
    rollouts that were scored: a crashed one (a fault of the system) says nothing of the policy."""
    scored = [r for r in rollouts if not r.left_out] or rollouts
    rewards = [r.reward for r in scored]
    ran = [r for r in scored if r.render is not None and r.render.ok]
    metrics = {
        "reward": statistics.fmean(rewards),
        "reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        "execution_rate": len(ran) / len(scored),
        "defect_rate": sum(bool(r.render.defects) for r in ran) / len(ran) if ran else 0.0,
        "defects_per_render": sum(len(r.render.defects) for r in ran) / len(ran) if ran else 0.0,
        "response_length": statistics.fmean(len(r.response_ids) for r in rollouts),
        "render_crashes": sum(r.left_out for r in rollouts),
    }
    return {**metrics, **update.metrics(), **extra}
