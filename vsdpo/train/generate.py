"""Generation: G sampled responses per prompt from Hugging Face ``generate`` (batched, KV cache),
with the behaviour log-prob of every sampled token, as typed ``Rollout`` records.

Sampling is done by our own logits processor rather than generate's warpers, so that we can record
``log_softmax(logits / temperature)`` of each sampled token (the distribution the loss uses) before
top-p truncation, holding one [batch, vocab] block at a time instead of generate's full score history.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList

from vsdpo.feedback.builder import FeedbackOptions, feedback_context, feedback_credit
from vsdpo.feedback.credit import extract_code
from vsdpo.feedback.spans import decode_with_spans
from vsdpo.feedback.teacher_context import TeacherContext
from vsdpo.render import RenderResult
from vsdpo.tasks import Task
from vsdpo.train import distributed
from vsdpo.train.config import TrainConfig


@dataclass(frozen=True, eq=False)  # compared by identity: it holds tensors
class Rollout:
    """One sampled response of the group of prompt ``task``. Frozen: the render and scoring stages
    (vsdpo.train.scoring) return copies with the last five fields filled.

    ``text`` and ``token_offsets`` are vsdpo.feedback.spans' decoding of ``response_ids``, the one
    ``vsdpo.integrations.trl`` uses too."""

    task: Task
    group: int  # index of its prompt in the step's batch
    response_ids: (
        torch.Tensor
    )  # LongTensor [R], up to and including the end-of-turn token when one was sampled
    behaviour_logprobs: torch.Tensor  # FloatTensor [R]
    text: str
    token_offsets: list[tuple[int, int]]  # (start, end) characters of each response token in ``text``
    program: str
    render: RenderResult | None = None
    reward: float = 0.0
    advantage: float = 0.0
    reward_failed: bool = False  # its reward could not be computed (its sandbox died, say)
    differences: tuple | None = None  # how the render differs from the target (None: not compared)

    @property
    def render_crashed(self) -> bool:
        """Its render failed by a fault of the system (after one more try): it says nothing of the program."""
        return self.render is not None and self.render.fault == "system"

    @property
    def left_out(self) -> bool:
        """Left out of the rewards, the advantages and both loss terms: its render crashed or its reward
        failed."""
        return self.render_crashed or self.reward_failed

    def teacher_context(self, config: TrainConfig) -> TeacherContext:
        """What its teacher is told (vsdpo.feedback.builder), under the options of ``config.algorithm``;
        nothing when it is left out."""
        if self.left_out:
            return TeacherContext("")
        return feedback_context(
            self.render, self.program, differences=self.differences, options=feedback_options(config)
        )

    def credit(self, config: TrainConfig) -> tuple[float, ...]:
        """Its tokens' credit (vsdpo.feedback.builder), under the options of ``config.algorithm``; 0
        on every token when it is left out."""
        return feedback_credit(
            self.render,
            self.text,
            self.token_offsets,
            differences=self.differences,
            options=feedback_options(config),
            left_out=self.left_out,
        )


def feedback_options(config: TrainConfig) -> FeedbackOptions:
    """The feedback and credit options of ``config.algorithm``, as vsdpo.feedback.builder takes them."""
    algorithm = config.algorithm
    return FeedbackOptions(
        feedback=algorithm.feedback,
        with_image=algorithm.teacher_image,
        credit_alpha=algorithm.credit_alpha,
        credit_reduce=algorithm.credit_reduce,
        weighted=algorithm.uses_credit,
    )


class BehaviourSampler:
    """A logits processor that samples with temperature and top-p itself and records log-probs.

    At step t it receives the tokens sampled so far, so it gathers the previous step's sampled
    token from the log-probs it kept; ``finish`` gathers the last one after generate returns.
    """

    def __init__(self, temperature: float, top_p: float, suppress_ids: list[int] = ()):
        self.suppress_ids = list(suppress_ids)
        self.temperature = temperature
        self.top_p = top_p
        self.logprobs: list[torch.Tensor] = []
        self._last = None

    def _gather_last(self, input_ids) -> None:
        if self._last is not None:
            self.logprobs.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
            self._last = None

    def __call__(self, input_ids, scores):
        self._gather_last(input_ids)
        scores = scores.float() / self.temperature
        self._last = torch.log_softmax(scores, dim=-1)
        if self.suppress_ids:  # never sample image placeholders or other template tokens inside a response
            scores[:, self.suppress_ids] = float("-inf")
        if self.top_p < 1.0:
            sorted_logp, order = self._last.sort(dim=-1, descending=True)
            outside = sorted_logp.exp().cumsum(-1) - sorted_logp.exp() > self.top_p
            scores = scores.masked_fill(outside.scatter(1, order, outside), float("-inf"))
        return scores

    def finish(self, sequences):
        self._gather_last(sequences)
        return (
            torch.stack(self.logprobs, dim=1)
            if self.logprobs
            else sequences.new_zeros((len(sequences), 0)).float()
        )


def prompt_messages(prompt: str, with_image: bool) -> list[dict]:
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


def prompt_text(processor, prompt: str, with_image: bool) -> str:
    """The chat-templated user turn (with the target image's placeholder) and the assistant header."""
    return processor.apply_chat_template(
        prompt_messages(prompt, with_image), add_generation_prompt=True, tokenize=False
    )


def encode(processor, texts: list[str], images: list[Any] | None, device, padding_side: str = "left"):
    """Batch encoding of texts (with their images); left padding for generation."""
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = padding_side
    if images:
        encoded = processor(text=texts, images=images, return_tensors="pt", padding=True)
    else:
        encoded = tokenizer(texts, return_tensors="pt", padding=True)
    return {k: v.to(device) for k, v in encoded.items()}


def sample(model, processor, prompts: list[str], images: list[Any] | None, rollout_config, generator=None):
    """One batched ``generate`` call over already templated ``prompts``: (response ids, their
    behaviour log-probs) per prompt, each cut after its first end-of-turn token."""
    tokenizer = getattr(processor, "tokenizer", processor)
    device = next(model.parameters()).device
    inputs = encode(processor, prompts, images, device)
    prompt_length = inputs["input_ids"].shape[1]
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    vocab_size = model.config.get_text_config().vocab_size
    suppress = [i for i in tokenizer.all_special_ids if i not in eos_ids and i < vocab_size]
    sampler = BehaviourSampler(rollout_config.temperature, rollout_config.top_p, suppress)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        sequences = model.generate(
            **inputs,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=None,
            max_new_tokens=rollout_config.max_new_tokens,
            logits_processor=LogitsProcessorList([sampler]),
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
            synced_gpus=distributed.is_distributed(),  # FSDP: every rank runs as many forwards as the longest
        )
    model.train(was_training)
    responses = sequences[:, prompt_length:]
    logprobs = sampler.finish(sequences)
    out = []
    for row in range(responses.shape[0]):
        tokens = responses[row].tolist()
        length = next((i + 1 for i, token in enumerate(tokens) if token in eos_ids), len(tokens))
        out.append((responses[row, :length].cpu(), logprobs[row, :length].cpu()))
    return out


@contextlib.contextmanager
def seeded(seed: int):
    """Sample from ``seed`` and leave the caller's random state (CPU and CUDA) as it was."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def sample_programs(
    model, processor, requests: list[tuple[str, Any, list]], rollout_config, chunk: int
) -> list[str]:
    """The program of one sampled response per request ``(user text, target image or None, feedback
    images)``, sampled ``chunk`` requests at a time."""
    tokenizer = getattr(processor, "tokenizer", processor)
    programs = []
    for start in range(0, len(requests), chunk):
        part = requests[start : start + chunk]
        texts = [prompt_text(processor, prompt, target is not None) for prompt, target, _ in part]
        images = [
            image for _, target, extra in part for image in ([target] if target is not None else []) + extra
        ]
        for ids, _ in sample(model, processor, texts, images or None, rollout_config):
            programs.append(extract_code(decode_with_spans(tokenizer, ids.tolist())[0]).code)
    return programs


def generate_rollouts(
    model, processor, tasks: list[Task], target_images, config: TrainConfig, first_group: int = 0
) -> list[Rollout]:
    """G rollouts per task, all sampled in one batched ``generate`` call; their groups are numbered
    from ``first_group`` (the index of ``tasks[0]`` in the step's batch)."""
    G = config.rollout.num_generations
    tokenizer = getattr(processor, "tokenizer", processor)
    with_image = config.data.prompt_image and all(image is not None for image in target_images)
    texts = [prompt_text(processor, task.prompt, with_image) for task in tasks for _ in range(G)]
    images = [image for image in target_images for _ in range(G)] if with_image else None
    rollouts = []
    for row, (ids, logprobs) in enumerate(sample(model, processor, texts, images, config.rollout)):
        text, offsets = decode_with_spans(tokenizer, ids.tolist())
        rollouts.append(
            Rollout(
                task=tasks[row // G],
                group=first_group + row // G,
                response_ids=ids,
                behaviour_logprobs=logprobs,
                text=text,
                token_offsets=offsets,
                program=extract_code(text).code,
            )
        )
    return rollouts
