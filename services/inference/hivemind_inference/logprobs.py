"""Token log-probabilities without ``logits_all``, in OpenAI's chat and legacy shapes.

llama-cpp-python only returns logprobs for models loaded with ``logits_all=True``, which keeps
``n_ctx x n_vocab`` floats and slows every prompt eval. The distribution a token was sampled
from is the context's last logits row at the moment it is sampled, so a :class:`TokenTrace`
(the hook of :class:`~hivemind_inference.tracing.TracingLlama`) reads that row per token, takes
its log-softmax and keeps the chosen token's logprob and the top alternatives: the raw model
distribution, before penalties, biases and temperature, as OpenAI reports it.

The trace is then lined up with the text the client got (:class:`Aligner`): end-of-generation
tokens and a stop sequence are not part of it, and a token that straddles the start of a stop
sequence is cut to the text that was kept, so the tokens always concatenate to the content.
"""

from __future__ import annotations

import codecs
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hivemind_common.errors import Invalid
from hivemind_inference.engine import GenerationCancelled

MAX_TOP_LOGPROBS = 20  # OpenAI's bound for chat; the legacy endpoint allows 5


@dataclass(slots=True)
class Step:
    """One sampled token: its bytes, its logprob and the best alternatives (best first)."""

    token: int
    piece: bytes
    logprob: float
    top: list[tuple[bytes, float]]


@dataclass
class TokenTrace:
    """Per-generation hook: stops on ``cancel``, counts tokens, records logprobs when asked.

    ``top`` is None when no logprobs were asked for (then nothing but the count is kept),
    otherwise how many alternatives each step keeps (0 to 20).
    """

    llama: Any
    top: int | None = None
    cancel: threading.Event | None = None
    count: int = 0
    steps: list[Step] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # every answer token, to name a stop found
    eog: bool = False  # ended by an end-of-generation token (not by a stop string)

    def __call__(self, token: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise GenerationCancelled()
        if self.llama.is_eog(token):
            self.eog = True
            return  # the end-of-generation token is never part of the answer
        self.count += 1
        self.tokens.append(token)
        if self.top is not None:
            self.steps.append(self._step(token))

    def _step(self, token: int) -> Step:
        n_vocab = self.llama.n_vocab()
        row = np.ctypeslib.as_array(self.llama._ctx.get_logits_ith(-1), shape=(n_vocab,))
        peak = float(row.max())
        log_z = peak + float(np.log(np.exp(row - peak, dtype=np.float64).sum()))
        top: list[tuple[bytes, float]] = []
        if self.top:
            best = np.argpartition(row, n_vocab - self.top)[n_vocab - self.top :]
            best = best[np.argsort(row[best])[::-1]]
            top = [(self._piece(int(i)), float(row[i]) - log_z) for i in best]
        return Step(token, self._piece(token), float(row[token]) - log_z, top)

    def _piece(self, token: int) -> bytes:
        return bytes(self.llama.detokenize([token]))


@dataclass
class Aligned:
    """A step as the client sees it: its text (complete characters) and its (cut) bytes."""

    text: str
    raw: bytes
    step: Step


class Aligner:
    """Hands out a trace's steps as the text they spelled is emitted (stream or whole)."""

    def __init__(self, trace: TokenTrace) -> None:
        self.trace = trace
        self.index = 0
        self.emitted = 0  # bytes of text the client got
        self.consumed = 0  # bytes of the steps handed out
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _hand(self, step: Step, raw: bytes, *, final: bool = False) -> Aligned:
        self.index += 1
        self.consumed += len(raw)
        return Aligned(self._decoder.decode(raw, final=final), raw, step)

    def take(self, text: str) -> list[Aligned]:
        """The steps whose bytes are now wholly inside the emitted text."""
        self.emitted += len(text.encode())
        steps = self.trace.steps
        out: list[Aligned] = []
        while self.index < len(steps):
            step = steps[self.index]
            if self.consumed + len(step.piece) > self.emitted:
                break
            out.append(self._hand(step, step.piece))
        return out

    def rest(self) -> list[Aligned]:
        """At the end: the step cut by a stop sequence, if any; what follows it is not text."""
        steps = self.trace.steps
        if self.index < len(steps) and self.consumed < self.emitted:
            step = steps[self.index]
            return [self._hand(step, step.piece[: self.emitted - self.consumed], final=True)]
        return []

    def all(self, text: str) -> list[Aligned]:
        """Every step of a finished generation whose text is ``text``."""
        return [*self.take(text), *self.rest()]


# --- OpenAI shapes ------------------------------------------------------------------------------
def _chat_entry(token: str, raw: bytes, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(raw)}


def chat_logprobs(aligned: list[Aligned]) -> dict[str, Any]:
    """``choices[i].logprobs`` of a chat completion (or of one chunk)."""
    content = []
    for a in aligned:
        entry = _chat_entry(a.text, a.raw, a.step.logprob)
        entry["top_logprobs"] = [
            _chat_entry(raw.decode("utf-8", errors="replace"), raw, lp) for raw, lp in a.step.top
        ]
        content.append(entry)
    return {"content": content, "refusal": None}


def text_logprobs(aligned: list[Aligned], *, offset: int) -> dict[str, Any]:
    """``choices[i].logprobs`` of a legacy completion; ``offset`` is the first token's offset."""
    tokens: list[str] = []
    offsets: list[int] = []
    token_logprobs: list[float] = []
    top_logprobs: list[dict[str, float]] = []
    for a in aligned:
        tokens.append(a.text)
        offsets.append(offset)
        offset += len(a.text)
        token_logprobs.append(a.step.logprob)
        # the chosen token is always listed, so there may be one more than asked for
        alternatives = {raw.decode("utf-8", errors="replace"): lp for raw, lp in a.step.top}
        alternatives[a.text] = a.step.logprob
        top_logprobs.append(alternatives)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }


def chat_top(logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """How many alternatives a chat asks for (None: no logprobs); 400 on a bad combination."""
    if top_logprobs is not None and not logprobs:
        raise Invalid(
            "top_logprobs needs logprobs set to true", param="top_logprobs", code="invalid_value"
        )
    if not logprobs:
        return None
    return top_logprobs or 0
