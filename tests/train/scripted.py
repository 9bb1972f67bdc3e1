"""A tokenizer and a processor for scripted policies: the prompt's text is what the policy reads,
and response ids are the response's bytes, so a test decides what the "model" writes."""

from __future__ import annotations


class ByteTokenizer:
    all_special_ids: list[int] = []

    def convert_ids_to_tokens(self, ids):
        return [chr(i) for i in ids]

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode()


class TemplateProcessor:
    tokenizer = ByteTokenizer()

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        return messages[0]["content"][-1]["text"]
