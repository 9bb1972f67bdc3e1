"""Data: the tasks, their target images, and the order in which the trainer visits them."""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from vsdpo.tasks import Task, load_tasks
from vsdpo.tiny import config_key
from vsdpo.train.config import ConfigError

if TYPE_CHECKING:
    from vsdpo.train.config import TrainConfig
    from vsdpo.train.scoring import RenderPool

log = logging.getLogger("vsdpo.train")


def cache_dir(config: TrainConfig) -> Path:
    """The folder of what the trainer builds once and reuses: tokenizer, targets, warm-start weights."""
    path = Path(config.run.cache_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class TaskSet:
    """Tasks and their target images (PIL, or None when a task has neither image nor reference)."""

    tasks: list[Task]
    images: list[Image.Image | None]

    def __len__(self) -> int:
        return len(self.tasks)

    def pick(self, indices: list[int]) -> TaskSet:
        return TaskSet([self.tasks[i] for i in indices], [self.images[i] for i in indices])


class TaskSampler:
    """The data order: a fresh seeded permutation of the tasks each epoch; its state resumes exactly."""

    def __init__(self, num_tasks: int, seed: int):
        self.num_tasks, self.seed = num_tasks, seed
        self.epoch, self.position = 0, 0

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        return torch.randperm(self.num_tasks, generator=generator).tolist()

    def next_batch(self, per_rank: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """The next ``per_rank * world_size`` tasks of the order; this rank's slice of them."""
        picked = []
        while len(picked) < per_rank * world_size:
            order = self._order()
            take = min(per_rank * world_size - len(picked), self.num_tasks - self.position)
            picked += order[self.position : self.position + take]
            self.position += take
            if self.position == self.num_tasks:
                self.epoch, self.position = self.epoch + 1, 0
        return picked[rank * per_rank : (rank + 1) * per_rank]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


def prepare_tasks(config: TrainConfig, render_pool: RenderPool) -> TaskSet:
    """The training tasks with their target images: the task's own image, else its reference
    rendered once in the sandbox (cached as PNG under the cache folder)."""
    data = config.data
    try:
        tasks = load_tasks(data.tasks, kind=data.kind, count=data.num_builtin_tasks, seed=data.seed)
    except (OSError, ValueError) as error:
        raise ConfigError(f"data.tasks: {error}") from None
    if not tasks:
        raise ConfigError(f"data.tasks: no tasks of kind {data.kind!r} in {data.tasks}")
    return with_target_images(tasks, config, render_pool)


def with_target_images(tasks: list[Task], config: TrainConfig, render_pool: RenderPool) -> TaskSet:
    folder = cache_dir(config) / "targets"
    folder.mkdir(exist_ok=True)
    pending = {}
    for index, task in enumerate(tasks):
        if task.image is None and task.reference and config.data.prompt_image:
            path = folder / f"{config_key(task.kind, task.reference)}.png"
            if path.exists():
                task.image = path.read_bytes()
            else:
                pending[index] = (path, render_pool.submit(task.reference, task.kind))
    for index, (path, future) in pending.items():
        result = future.result()
        if not result.ok or not result.image:  # once more: a busy machine can time a render out
            result = render_pool.submit(tasks[index].reference, tasks[index].kind).result()
        if not result.ok or not result.image:
            log.warning(
                "task %s: its reference did not render (%s); shown without a target image",
                tasks[index].id,
                result.error,
            )
            continue
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # several ranks may render the same target
        tmp.write_bytes(result.image)
        tmp.replace(path)
        tasks[index].image = result.image
    images = [Image.open(io.BytesIO(task.image)).convert("RGB") if task.image else None for task in tasks]
    return TaskSet(tasks, images)
