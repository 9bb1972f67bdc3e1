"""Rollouts: G sampled responses per prompt from Hugging Face ``generate`` (batched, KV cache), with
the behaviour log-probs of every sampled token, and their renders.

Sampling is done by our own logits processor rather than generate's warpers, so that we can record
``log_softmax(logits / temperature)`` of each sampled token (the distribution the loss uses) before
top-p truncation, holding one [batch, vocab] block at a time instead of generate's full score history.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("vsdpo.rollout")


@dataclass(eq=False)  # compared by identity: it holds tensors
class Rollout:
    """One sampled response of the group of prompt ``task``."""

    task: Any  # vsdpo.tasks.Task
    group: int  # index of its prompt in the step's batch
    response_ids: Any  # LongTensor [R], up to and including the end-of-turn token when one was sampled
    behaviour_logprobs: Any  # FloatTensor [R]
    text: str
    token_offsets: list[tuple[int, int]]  # (start, end) characters of each response token in ``text``
    program: str
    render: Any = None  # vsdpo.render.RenderResult
    reward: float = 0.0
    advantage: float = 0.0
    render_crashed: bool = False


class BehaviourSampler:
    """A logits processor that samples with temperature and top-p itself and records log-probs.

    At step t it receives the tokens sampled so far, so it gathers the previous step's sampled
    token from the log-probs it kept; ``finish`` gathers the last one after generate returns.
    """

    def __init__(self, temperature: float, top_p: float, suppress_ids: list[int] = ()):
        self.suppress_ids = list(suppress_ids)
        self.temperature = temperature
        self.top_p = top_p
        self.logprobs: list[Any] = []
        self._last = None

    def _gather_last(self, input_ids) -> None:
        if self._last is not None:
            self.logprobs.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
            self._last = None

    def __call__(self, input_ids, scores):
        import torch

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
        import torch

        self._gather_last(sequences)
        return (
            torch.stack(self.logprobs, dim=1)
            if self.logprobs
            else sequences.new_zeros((len(sequences), 0)).float()
        )


def prompt_messages(task, with_image: bool) -> list[dict]:
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": task.prompt}]
    return [{"role": "user", "content": content}]


def prompt_text(processor, task, with_image: bool) -> str:
    return processor.apply_chat_template(
        prompt_messages(task, with_image), add_generation_prompt=True, tokenize=False
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


def generate_rollouts(model, processor, tasks, target_images, config) -> list[Rollout]:
    """G rollouts per task, all sampled in one batched ``generate`` call."""
    import torch
    from transformers import LogitsProcessorList

    from vsdpo import distributed
    from vsdpo.credit import extract_code

    G = config.num_generations
    tokenizer = getattr(processor, "tokenizer", processor)
    with_image = config.prompt_image and all(image is not None for image in target_images)
    texts = [prompt_text(processor, task, with_image) for task in tasks for _ in range(G)]
    images = [image for image in target_images for _ in range(G)] if with_image else None
    device = next(model.parameters()).device
    inputs = encode(processor, texts, images, device)
    prompt_length = inputs["input_ids"].shape[1]
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    suppress = [
        i
        for i in tokenizer.all_special_ids
        if i not in eos_ids and i < model.config.get_text_config().vocab_size
    ]
    sampler = BehaviourSampler(config.temperature, config.top_p, suppress)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        sequences = model.generate(
            **inputs,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=None,
            max_new_tokens=config.max_new_tokens,
            logits_processor=LogitsProcessorList([sampler]),
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
            synced_gpus=distributed.is_distributed(),  # FSDP: every rank runs as many forwards as the longest
        )
    model.train(was_training)
    responses = sequences[:, prompt_length:]
    logprobs = sampler.finish(sequences)
    rollouts = []
    for row in range(responses.shape[0]):
        tokens = responses[row].tolist()
        length = next((i + 1 for i, token in enumerate(tokens) if token in eos_ids), len(tokens))
        ids = responses[row, :length].cpu()
        text, offsets = decode_with_offsets(tokenizer, ids.tolist())
        rollouts.append(
            Rollout(
                task=tasks[row // G],
                group=row // G,
                response_ids=ids,
                behaviour_logprobs=logprobs[row, :length].cpu(),
                text=text,
                token_offsets=offsets,
                program=extract_code(text).code,
            )
        )
    return rollouts


def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's bytes-to-unicode table used by byte-level BPE vocabularies."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=False)}


BYTE_DECODER = _byte_decoder()


def decode_with_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The response text (special tokens dropped) and each token's character span in it.

    Byte-level BPE tokens map to exact byte spans, converted to characters; other tokenizers fall
    back to decoding growing prefixes. Special tokens get an empty span.
    """
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    if all(
        i in special or all(ch in BYTE_DECODER for ch in piece) for i, piece in zip(ids, pieces, strict=False)
    ):
        data = bytearray()
        byte_spans = []
        for token_id, piece in zip(ids, pieces, strict=False):
            start = len(data)
            if token_id not in special:
                data.extend(BYTE_DECODER[ch] for ch in piece)
            byte_spans.append((start, len(data)))
        text = bytes(data).decode("utf-8", errors="replace")
        if len(text.encode("utf-8")) == len(data):  # every byte decoded to itself: spans convert exactly
            # A character belongs to the token holding its first byte: count the characters begun before each byte.
            begun_before = [0] * (len(data) + 1)
            for position, byte in enumerate(data):
                begun_before[position + 1] = begun_before[position] + ((byte & 0xC0) != 0x80)
            return text, [(begun_before[a], begun_before[b]) for a, b in byte_spans]
    offsets, previous = [], ""
    for end in range(1, len(ids) + 1):
        current = tokenizer.decode(ids[:end], skip_special_tokens=True)
        offsets.append((len(previous), len(current)))
        previous = current
    return previous, offsets


class RenderPool:
    """Renders programs on worker threads, each calling ``vsdpo.render.render`` (itself sandboxed)."""

    def __init__(self, workers: int, timeout_s: float):
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="render")
        self.timeout_s = timeout_s

    def submit(self, code: str, kind: str) -> Future:
        from vsdpo.render import render

        return self.executor.submit(render, code, kind, timeout_s=self.timeout_s)

    def render_rollouts(self, rollouts: list[Rollout]) -> int:
        """Fill ``rollout.render`` for each; returns the number of crashed renders (not program errors)."""
        from vsdpo.render.types import RenderResult

        futures = [self.submit(rollout.program, rollout.task.kind) for rollout in rollouts]
        crashed = 0
        for rollout, future in zip(rollouts, futures, strict=False):
            try:
                rollout.render = future.result()
            except Exception as error:  # the renderer itself failed: the run goes on without this rollout
                crashed += 1
                rollout.render_crashed = True
                rollout.render = RenderResult.failure(
                    rollout.task.kind, f"render crashed: {type(error).__name__}: {error}"
                )
                log.warning(
                    "render crashed for task %s: %s: %s", rollout.task.id, type(error).__name__, error
                )
        return crashed

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def group_advantages(rewards, group_size: int, scale_rewards: str):
    """GRPO advantages: reward minus its group's mean, divided by the group's (or the batch's) std."""
    import torch

    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    grouped = rewards.view(-1, group_size)
    advantages = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    if scale_rewards == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    elif scale_rewards == "batch":
        std = rewards.std().expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    else:
        return advantages
    return advantages / (std + 1e-4)
