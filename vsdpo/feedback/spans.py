"""A completion's text and the character span of each of its tokens, the one decoding both trainers use.

Credit reaches tokens through these spans (vsdpo.feedback.credit): the renderer names source lines,
the lines are character ranges of the completion, and a token gets the credit of the characters it
spans. Both trainers decode here, so that the same token ids get the same spans, hence the same
credit, in ``vsdpo.train`` and in ``vsdpo.integrations.trl``.

Two ways, the first that applies:

- byte-level BPE (GPT-2, Qwen, the tiny tokenizer): every token is a run of bytes, so its byte span
  is exact (checked: the bytes decode as the tokenizer decodes the whole); byte spans become
  character spans, a character going to the token that holds its first byte (a token that holds only
  the continuation bytes of a character gets an empty span);
- any other tokenizer: decoding runs over a short window that follows the text, and a token's span is
  what decoding it adds to the window (a character split over several tokens goes to the token that
  completes it). Linear in the number of tokens, as the first way is.

Special tokens (the end-of-turn token, say) are dropped from the text and get an empty span.
"""

from __future__ import annotations

from transformers.convert_slow_tokenizer import bytes_to_unicode

BYTE_DECODER = {char: byte for byte, char in bytes_to_unicode().items()}  # byte-level BPE's alphabet
# A UTF-8 character spans at most four bytes, so at most four byte-level tokens.
MAX_HELD_TOKENS = 4


def decode_with_spans(tokenizer, token_ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``token_ids`` (special tokens dropped) and each token's ``(start, end)`` in it.

    The spans tile the text in order: the first starts at 0, each starts where the one before ended,
    and the last ends at ``len(text)``.
    """
    token_ids = [int(token_id) for token_id in token_ids]
    exact = _byte_level_spans(tokenizer, token_ids)
    return exact if exact is not None else _windowed_spans(tokenizer, token_ids)


def _byte_level_spans(tokenizer, token_ids: list[int]) -> tuple[str, list[tuple[int, int]]] | None:
    """Exact spans from the tokens' bytes; None when a token is not byte-level, the bytes are not
    UTF-8 throughout (a replacement character would shift every span after it), or they are not what
    the tokenizer decodes."""
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(token_ids)
    data = bytearray()
    byte_spans = []
    for token_id, piece in zip(token_ids, pieces, strict=True):
        start = len(data)
        if token_id not in special:
            if piece is None or any(char not in BYTE_DECODER for char in piece):
                return None
            data.extend(BYTE_DECODER[char] for char in piece)
        byte_spans.append((start, len(data)))
    text = bytes(data).decode("utf-8", errors="replace")
    if len(text.encode("utf-8")) != len(data):
        return None
    # Pieces in the byte alphabet need not be bytes (a WordPiece "##ing" is printable ASCII too): the
    # bytes must decode as the tokenizer decodes them.
    if text != tokenizer.decode(token_ids, skip_special_tokens=True):
        return None
    # The characters begun before each byte (a UTF-8 continuation byte is 0b10xxxxxx).
    begun_before = [0] * (len(data) + 1)
    for position, byte in enumerate(data):
        begun_before[position + 1] = begun_before[position] + ((byte & 0xC0) != 0x80)
    return text, [(begun_before[start], begun_before[end]) for start, end in byte_spans]


def _windowed_spans(tokenizer, token_ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """Spans from decoding a window that follows the text (any tokenizer).

    The window keeps the chunk decoded last, so that a tokenizer that drops a leading space when a
    decode starts at a token (SentencePiece's ``▁``) drops it from the window's first chunk only, which
    was counted already. A token that ends on an incomplete character is held (up to
    ``MAX_HELD_TOKENS``) until the token that completes it. (Only byte sequences that are not UTF-8 at
    all can decode differently in pieces than whole.)
    """
    text, spans = "", []
    start = settled_end = 0  # the window is token_ids[start:]; token_ids[start:settled_end] is in `text`
    settled = ""
    for index in range(len(token_ids)):
        current = tokenizer.decode(token_ids[start : index + 1], skip_special_tokens=True)
        incomplete = current.endswith("\ufffd") and index - settled_end + 1 < MAX_HELD_TOKENS
        piece = ""
        if len(current) > len(settled) and (not incomplete or index + 1 == len(token_ids)):
            piece = current[len(settled) :]
            start, settled_end = settled_end, index + 1
            settled = tokenizer.decode(token_ids[start:settled_end], skip_special_tokens=True)
        spans.append((len(text), len(text) + len(piece)))
        text += piece
    return text, spans
