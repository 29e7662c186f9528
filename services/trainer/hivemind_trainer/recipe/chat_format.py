"""Format chats with the model's own chat template and label only the assistant's tokens.

The chat is rendered once; each assistant turn's character span is found by rendering the chat up
to that turn with and without it (``add_generation_prompt`` gives the header the model sees at
serve time). The span runs from the first character of the reply through its end-of-turn token;
anything the template puts after that token (a newline) stays unlabelled. Tokens are labelled by
their character offsets, so the labels agree with how the whole text is tokenised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hivemind_common.errors import Unprocessable

IGNORE = -100


@dataclass
class EncodedChat:
    """Token ids, labels (``IGNORE`` where no loss) and the assistant character spans."""

    input_ids: list[int]
    labels: list[int]
    spans: list[tuple[int, int]]
    text: str

    @property
    def trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def end_of_turn(tokenizer: Any, override: str | None = None) -> str:
    """The string that ends an assistant turn (``<|im_end|>`` for ChatML templates)."""
    token = override or tokenizer.eos_token
    if not token:
        raise Unprocessable("the tokenizer has no eos token; set the recipe's end_token")
    return str(token)


def render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    return str(text)


def assistant_spans(
    tokenizer: Any, messages: list[dict[str, str]], end_token: str
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered chat and the (start, end) character span of every assistant reply."""
    full = render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prefix = render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (full.startswith(through) and through.startswith(prefix)):
            raise Unprocessable("the chat template does not render turns as a growing prefix")
        region = through[len(prefix) :]
        cut = region.rfind(end_token)
        stop = len(prefix) + cut + len(end_token) if cut >= 0 else len(through)
        spans.append((len(prefix), stop))
    return full, spans


def encode_chat(
    tokenizer: Any, messages: list[dict[str, str]], *, end_token: str | None = None
) -> EncodedChat:
    """Token ids and assistant-only labels of one chat."""
    end = end_of_turn(tokenizer, end_token)
    text, spans = assistant_spans(tokenizer, messages, end)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    for j, (start, stop) in enumerate(enc["offset_mapping"]):
        if stop <= start:
            continue
        for s0, s1 in spans:
            if s0 <= start < s1:
                labels[j] = ids[j]
                break
    return EncodedChat(input_ids=ids, labels=labels, spans=spans, text=text)


def answer_only(tokenizer: Any, chat: EncodedChat, answer: str) -> EncodedChat:
    """``chat`` with labels kept only on the tokens of ``answer`` in its last reply (its last
    occurrence there): the loss of what was said, apart from how. A chat whose last reply does
    not contain ``answer`` is refused (a general set out of step with its answers)."""
    start, stop = chat.spans[-1]
    at = chat.text.rfind(answer, start, stop)
    if not answer or at < 0:
        raise Unprocessable(f"answer {answer[:40]!r} is not in the chat's last reply")
    enc = tokenizer(chat.text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [IGNORE] * len(chat.input_ids)
    for j, (s0, s1) in enumerate(enc["offset_mapping"]):
        if s1 > s0 and s0 < at + len(answer) and s1 > at:  # overlaps the answer
            labels[j] = chat.input_ids[j]
    return EncodedChat(input_ids=chat.input_ids, labels=labels, spans=chat.spans, text=chat.text)
