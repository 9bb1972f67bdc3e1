"""The warm start: the base policy every algorithm starts from, standing in for what a pretrained
VLM brings. It depends on the tasks, the model and its own settings only, never on the algorithm,
so ``grpo``, ``sdpo`` and ``vsdpo`` runs of one seed start from the same weights.

Two supervised stages on the training tasks' reference programs:

1. *First attempts*: task (and target image) -> reference program, ``warmstart.steps`` steps.
2. *Repairs*: flawed programs are made by corrupting references (vsdpo.train.corrupt: about half
   fail, half run but draw something else) and sampled from the model of stage 1 itself; each is
   rendered for real in the sandbox and scored against the task's reference, and its feedback —
   error text and lines, or the differences from the target and the defects, with the render — is
   built by vsdpo.feedback.builder, exactly as the teacher sees it in training. The references
   themselves come too, with their own feedback ("It matches the target"), so that the teacher
   learns to keep a program that is right. ``warmstart.repair_steps`` steps then train on a
   half-and-half mix of first attempts and repairs (task + feedback -> reference), so that the model
   can use feedback: the teacher must know more than the student for self-distillation to teach
   anything. With ``warmstart.recoloured``, some targets are the run's own tasks drawn in another
   colour: the program the model recalls from the prompt is then the flawed attempt, and only the
   feedback (and the target image) say which colour is wanted, so the answer can only be got by
   reading them — as on held-out tasks, whose colours no prompt names. With ``warmstart.laid_out``,
   the answer to a task whose reference has its labels cut by the figure's edge (half the built-in
   references call no layout engine) is the reference with ``plt.tight_layout()`` added, where that
   removes the cut: the feedback names the clipped text, and the answer fixes it rather than keeping it.

The weights are cached under the cache folder, keyed by everything that shapes them.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from vsdpo.feedback.builder import feedback_context
from vsdpo.feedback.rendering import resolved
from vsdpo.tasks import Task, builtin_chart_tasks
from vsdpo.tiny import config_key
from vsdpo.train.corrupt import corrupt, laid_out, recolour
from vsdpo.train.data import TaskSet, cache_dir, with_target_images
from vsdpo.train.generate import encode, feedback_options, prompt_text, sample_programs, seeded
from vsdpo.train.scoring import visual_reward

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PreTrainedModel

    from vsdpo.train.config import TrainConfig
    from vsdpo.train.model import Processor
    from vsdpo.train.scoring import RenderPool

log = logging.getLogger("vsdpo.train")
PROGRESS_EVERY = 200  # a log line per this many repair programs rendered

FORMAT = 5  # bump when the examples change, so that cached weights of an older recipe are not reused


@dataclass
class Example:
    """One supervised example: the user's text (feedback included for a repair), its images, the answer."""

    prompt: str
    answer: str
    target: object = None  # the target image (PIL) shown with the prompt
    feedback_images: list = field(default_factory=list)


def cache_key(processor: Processor, config: TrainConfig) -> str:
    tokenizer = getattr(processor, "tokenizer", processor)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model, data, warm = config.model, config.data, config.warmstart
    return config_key(
        FORMAT,
        backend.to_str() if backend is not None else tokenizer.name_or_path,
        model.name,
        model.seed,
        model.tiny_hidden_size,
        model.tiny_num_layers,
        data.tasks,
        data.num_builtin_tasks,
        data.seed,
        data.prompt_image,
        data.image_max_pixels,
        warm.steps,
        warm.repair_steps,
        warm.corruptions,
        warm.own_samples,
        warm.repair_tasks,
        warm.recoloured,
        warm.laid_out,
        warm.batch_size,
        warm.learning_rate,
        config.algorithm.teacher_image,
        config.algorithm.feedback,
        config.rollout.max_new_tokens,
        config.rollout.temperature,
        tuple(sorted(config.reward.weights.items())),
        torch.__version__,
    )


def warm_start(
    model: PreTrainedModel,
    processor: Processor,
    task_set: TaskSet,
    config: TrainConfig,
    render_pool: RenderPool,
) -> None:
    """Load the cached base policy, or train it (both stages) and cache it."""
    path = cache_dir(config) / f"warmstart-{cache_key(processor, config)}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        log.info("warm-start weights loaded from %s", path)
        return
    warm = config.warmstart
    targets = [image if config.data.prompt_image else None for image in task_set.images]
    first = [
        Example(t.prompt, t.reference, image)
        for t, image in zip(task_set.tasks, targets, strict=True)
        if t.reference
    ]
    if not first:
        log.warning("warmstart: no task has a reference program; warm-start skipped")
        return
    generator = torch.Generator().manual_seed(config.model.seed)
    fit(model, processor, [first], warm.steps, config, generator, "first attempts")
    if warm.repair_steps:
        repairs = repair_examples(model, processor, task_set, targets, config, render_pool)
        log.info("warm-start: %d repair examples (flawed programs rendered in the sandbox)", len(repairs))
        fit(
            model,
            processor,
            [first, repairs] if repairs else [first],
            warm.repair_steps,
            config,
            generator,
            "repairs",
        )
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)


def repair_examples(
    model: PreTrainedModel,
    processor: Processor,
    task_set: TaskSet,
    targets: list[Image.Image | None],
    config: TrainConfig,
    render_pool: RenderPool,
) -> list[Example]:
    """Flawed programs (corrupted references and the model's own samples) and the references, rendered
    and scored against the reference, each with its feedback; the answer is the reference (laid out,
    with ``warmstart.laid_out``, where its own labels are cut)."""
    warm = config.warmstart
    rng = random.Random(config.model.seed)
    programs: list[tuple[int, str]] = []
    for index, task in enumerate(task_set.tasks):
        if task.reference:
            programs.append((index, task.reference))  # it matches: the feedback says so, keep it
            programs += [(index, program) for program in corrupt(task.reference, rng, warm.corruptions)]
    if warm.own_samples:
        log.info("warm-start: sampling %d programs from the model", warm.own_samples * len(task_set.tasks))
        programs += own_samples(model, processor, task_set, targets, config)
    # Tasks met only here: a program the model cannot know by heart, to keep or to fix from the feedback.
    extra = extra_repair_tasks(task_set, config, render_pool)
    tasks, targets = (
        list(task_set.tasks) + extra.tasks,
        list(targets) + [image if config.data.prompt_image else None for image in extra.images],
    )
    for index, task in enumerate(extra.tasks, start=len(task_set.tasks)):
        programs.append((index, task.reference))
        programs += [(index, program) for program in corrupt(task.reference, rng, 1, running_only=True)]
    if warm.recoloured:
        variants = recoloured_tasks(task_set.tasks, rng, warm.recoloured, config, render_pool)
        tasks += variants.tasks
        targets += [image if config.data.prompt_image else None for image in variants.images]
        first_variant = len(tasks) - len(variants.tasks)
        programs += [(first_variant + i, original) for i, original in enumerate(variants.originals)]
    futures = [render_pool.submit(program, tasks[index].kind) for index, program in programs]
    answers = LaidOut(tasks, programs, futures, render_pool) if warm.laid_out else None
    reward = visual_reward(config)
    log.info("warm-start: rendering and scoring %d programs for the repairs", len(programs))
    done, lock = [0], threading.Lock()

    def example(job) -> Example:
        (index, program), future = job
        task, render = tasks[index], future.result()
        with lock:
            done[0] += 1
            if done[0] % PROGRESS_EVERY == 0:
                log.info("warm-start: %d/%d programs rendered", done[0], len(programs))
        try:
            differences = reward.assess(render, program, task.reference, task.kind).differences
        except Exception as error:  # a reward that cannot be computed: the feedback without the comparison
            log.warning("warm-start: reward failed for task %s: %s: %s", task.id, type(error).__name__, error)
            differences = None
        context = feedback_context(render, program, differences=differences, options=feedback_options(config))
        answer = answers.answer(index) if answers is not None else task.reference
        return Example(task.prompt + context.text, answer, targets[index], context.images)

    # The renders are queued first: an example, on the same threads, waits only on its own render.
    return render_pool.map(example, zip(programs, futures, strict=True))


class LaidOut:
    """Per task, the repairs' answer: its reference, or the reference with ``plt.tight_layout()``
    added (vsdpo.train.corrupt.laid_out) where the reference's own render has text cut by the
    figure's edge and the laid-out one has less, and no more defects of any kind. Every render it
    needs is queued here, before the examples are built on the pool's threads, so that none of them
    waits on a render queued behind it."""

    def __init__(
        self, tasks: list[Task], programs: list[tuple[int, str]], futures: list, render_pool: RenderPool
    ):
        self.tasks = tasks
        self.candidates = {
            index: candidate
            for index, task in enumerate(tasks)
            if task.kind == "chart" and task.reference and (candidate := laid_out(task.reference))
        }
        self.reference_renders = {
            index: future
            for (index, program), future in zip(programs, futures, strict=True)
            if index in self.candidates and program == tasks[index].reference
        }
        for index in self.candidates.keys() - self.reference_renders.keys():
            self.reference_renders[index] = render_pool.submit(tasks[index].reference, "chart")
        self.candidate_renders = {
            index: render_pool.submit(candidate, "chart") for index, candidate in self.candidates.items()
        }

    def answer(self, index: int) -> str:
        reference = self.tasks[index].reference
        if index not in self.candidates:
            return reference
        before = resolved(self.reference_renders[index], "chart")
        after = resolved(self.candidate_renders[index], "chart")
        if not (before.ok and after.ok):
            return reference
        before, after = _kinds(before), _kinds(after)
        fixed = after["clipped_text"] < before["clipped_text"] and all(
            count <= before[kind] for kind, count in after.items()
        )
        return self.candidates[index] if fixed else reference


def _kinds(render) -> Counter:
    return Counter(defect.kind for defect in render.defects)


def extra_repair_tasks(task_set: TaskSet, config: TrainConfig, render_pool: RenderPool) -> TaskSet:
    """``warmstart.repair_tasks`` built-in tasks of the training split beyond the run's own, with their
    target images, for repairs only (none for other task sources). On the run's own tasks the answer
    can be recalled from the prompt; on these it must be read from the feedback and the program."""
    count, data = config.warmstart.repair_tasks, config.data
    if not count or data.tasks != "builtin:charts":
        return TaskSet([], [])
    known = {task.prompt for task in task_set.tasks}
    generated = builtin_chart_tasks(count + len(known), seed=data.seed + 1, split="train")
    return with_target_images([t for t in generated if t.prompt not in known][:count], config, render_pool)


@dataclass
class Recoloured(TaskSet):
    originals: list[str] = field(default_factory=list)  # per variant, the reference it recolours


def recoloured_tasks(
    tasks: list[Task], rng: random.Random, count: int, config: TrainConfig, render_pool: RenderPool
) -> Recoloured:
    """Up to ``count`` variants per task whose reference draws in another colour, with their target
    images rendered (cached), and the original reference of each. Built-in chart tasks only: their
    prompts name no colour, so a variant is as right an answer to the prompt as the original."""
    variants, originals = [], []
    if config.data.tasks != "builtin:charts":
        return Recoloured([], [], [])
    for task in tasks:
        seen = {task.reference}
        for number in range(count):
            program = recolour(task.reference, rng) if task.reference else None
            if program is None or program in seen:
                continue
            seen.add(program)
            variants.append(Task(f"{task.id}-recoloured{number}", task.kind, task.prompt, program))
            originals.append(task.reference)
    rendered = with_target_images(variants, config, render_pool)
    return Recoloured(rendered.tasks, rendered.images, originals)


def own_samples(
    model: PreTrainedModel,
    processor: Processor,
    task_set: TaskSet,
    targets: list[Image.Image | None],
    config: TrainConfig,
) -> list[tuple[int, str]]:
    """``warmstart.own_samples`` programs per task sampled from the model as it is (after stage 1)."""
    indices = [
        i
        for i, task in enumerate(task_set.tasks)
        if task.reference
        for _ in range(config.warmstart.own_samples)
    ]
    requests = [(task_set.tasks[i].prompt, targets[i], []) for i in indices]
    chunk = config.rollout.prompts_per_step * config.rollout.num_generations
    with seeded(config.model.seed):
        programs = sample_programs(model, processor, requests, config.rollout, chunk)
    return list(zip(indices, programs, strict=True))


def fit(
    model: PreTrainedModel,
    processor: Processor,
    pools: list[list[Example]],
    steps: int,
    config: TrainConfig,
    generator: torch.Generator,
    stage: str,
) -> None:
    """``steps`` supervised steps, each batch drawn evenly from ``pools``; loss on the answers only."""
    warm = config.warmstart
    tokenizer = getattr(processor, "tokenizer", processor)
    eos = tokenizer.eos_token or ""
    optimizer = torch.optim.AdamW(model.parameters(), lr=warm.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    model.train()
    device = next(model.parameters()).device
    for step in range(steps):
        batch = []
        for n in range(warm.batch_size):
            pool = pools[n % len(pools)]
            batch.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
        prompts = [prompt_text(processor, e.prompt, e.target is not None) for e in batch]
        texts = [p + e.answer + eos for p, e in zip(prompts, batch, strict=True)]
        images = [
            image for e in batch for image in ([e.target] if e.target is not None else []) + e.feedback_images
        ]
        inputs = encode(processor, texts, images or None, device, padding_side="right")
        prompt_lengths = encode(processor, prompts, images or None, device, padding_side="right")[
            "attention_mask"
        ].sum(1)
        labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        positions = torch.arange(labels.shape[1], device=device)[None, :]
        labels = labels.masked_fill(positions < prompt_lengths[:, None], -100)  # no loss on the prompt
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == steps - 1:
            log.info("warm-start (%s) %d/%d: loss %.3f", stage, step + 1, steps, loss.item())
