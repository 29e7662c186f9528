"""Checks run on the encoded data before training; a failure stops the run.

They look at the labels from the outside (not at how masking made them), so a template quirk or
a masking bug shows up here instead of in a model that learned to write its users' prompts:

- the share of labelled tokens is in range (not nothing, not everything);
- every assistant turn has exactly one trained region, ending with the end-of-turn token;
- no trained region contains prompt or system text or a turn header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hivemind_common.errors import Unprocessable
from hivemind_trainer.recipe.chat_format import IGNORE, EncodedChat


@dataclass
class ValidationReport:
    chats: int = 0
    tokens: int = 0
    trained: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def trained_share(self) -> float:
        return self.trained / self.tokens if self.tokens else 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "chats": self.chats,
            "tokens": self.tokens,
            "trained": self.trained,
            "trained_share": round(self.trained_share, 4),
            "problems": self.problems[:20],
        }


class ValidationFailed(Unprocessable):
    code = "training_data_invalid"
    title = "Training data failed validation"


def regions(labels: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of labelled tokens as (start, end) token indices."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for i, lab in enumerate([*labels, IGNORE]):
        if lab != IGNORE and start is None:
            start = i
        elif lab == IGNORE and start is not None:
            out.append((start, i))
            start = None
    return out


def check_chat(
    chat: EncodedChat, messages: list[dict[str, str]], tokenizer: Any, end_id: int, header: str
) -> list[str]:
    """Problems of one chat (empty when it is fine)."""
    problems: list[str] = []
    found = regions(chat.labels)
    turns = sum(1 for m in messages if m["role"] == "assistant")
    if len(found) != turns:
        problems.append(f"{len(found)} trained regions for {turns} assistant turns")
    prompts = [
        m["content"] for m in messages if m["role"] != "assistant" and len(m["content"]) >= 8
    ]
    replies = "\n".join(m["content"] for m in messages if m["role"] == "assistant")
    for start, end in found:
        if chat.input_ids[end - 1] != end_id:
            problems.append("a trained region does not end with the end-of-turn token")
        text = tokenizer.decode(chat.input_ids[start:end], skip_special_tokens=False)
        if header and header in text:
            problems.append("a trained region contains a turn header")
        for prompt in prompts:
            if prompt in text and prompt not in replies:
                problems.append("a trained region contains prompt or system text")
                break
    return problems


def validate(
    chats: list[EncodedChat],
    conversations: list[list[dict[str, str]]],
    tokenizer: Any,
    *,
    end_token: str,
    min_share: float,
    max_share: float,
) -> ValidationReport:
    """Check every chat and the overall trained share; raise :class:`ValidationFailed` if bad."""
    report = ValidationReport(chats=len(chats))
    end_id = tokenizer.convert_tokens_to_ids(end_token)
    header = _turn_header(tokenizer)
    for chat, messages in zip(chats, conversations, strict=True):
        report.tokens += len(chat.input_ids)
        report.trained += sum(1 for x in chat.labels if x != IGNORE)
        report.problems.extend(check_chat(chat, messages, tokenizer, end_id, header))
    if not report.chats:
        report.problems.append("no chats to train on")
    elif not min_share <= report.trained_share <= max_share:
        report.problems.append(
            f"trained share {report.trained_share:.3f} outside [{min_share}, {max_share}]"
        )
    if not report.ok:
        raise ValidationFailed(
            f"training data failed validation: {report.problems[0]}",
            extra={"validation": report.as_dict()},
        )
    return report


def _turn_header(tokenizer: Any) -> str:
    """What the template writes before a user turn's text (e.g. ``<|im_start|>user``)."""
    probe = "\x00probe\x00"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": probe}], tokenize=False, add_generation_prompt=False
    )
    head = str(text).split(probe)[0]
    # the last line of what precedes the user's text: the user turn's own header
    lines = [ln for ln in head.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
