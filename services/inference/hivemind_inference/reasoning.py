"""Reasoning text of reasoning models (``<think> ... </think>``), split from the answer.

Models such as DeepSeek-R1 distills and Qwen3 write their reasoning between ``<think>`` tags,
either opened by the model or already by the template's generation prompt. The reasoning goes
to ``reasoning_content``; the answer after ``</think>`` stays ``content``.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"


def _held(text: str, tag: str) -> int:
    """Length of the end of ``text`` that could be the start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


@dataclass
class ThinkSplitter:
    """Feed text pieces; get (reasoning, content) pieces back."""

    started: bool = False  # the prompt ended with <think>
    _state: str = "start"  # start | thinking | answer
    _buf: str = ""

    def __post_init__(self) -> None:
        if self.started:
            self._state = "thinking"

    def feed(self, text: str) -> tuple[str, str]:
        self._buf += text
        reasoning, content = "", ""
        if self._state == "start":
            stripped = self._buf.lstrip()
            if stripped.startswith(OPEN):
                self._buf = stripped[len(OPEN) :]
                self._state = "thinking"
            elif OPEN.startswith(stripped):
                return "", ""  # maybe the opening tag, not complete yet
            else:
                self._state = "answer"
        if self._state == "thinking":
            at = self._buf.find(CLOSE)
            if at >= 0:
                reasoning = self._buf[:at]
                self._buf = self._buf[at + len(CLOSE) :].lstrip("\n")
                self._state = "answer"
            else:
                keep = _held(self._buf, CLOSE)
                reasoning = self._buf[: len(self._buf) - keep]
                self._buf = self._buf[len(self._buf) - keep :]
                return reasoning, ""
        if self._state == "answer":
            content, self._buf = self._buf, ""
        return reasoning, content

    def finish(self) -> tuple[str, str]:
        """Whatever is held back: unfinished reasoning stays reasoning."""
        rest, self._buf = self._buf, ""
        if self._state == "thinking":
            return rest, ""
        return "", rest
