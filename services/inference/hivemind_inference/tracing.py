"""A ``Llama`` that reports every sampled token to a per-request hook.

``Llama.generate`` is what every completion (chat or text, stream or not) drives; wrapping it is
the one place that sees each token id as it is sampled, while the context still holds the logits
it was sampled from. The hook is how a generation is traced for logprobs, counted, and stopped
when its client has gone (an exception raised there unwinds ``create_completion`` cleanly).

This module imports llama_cpp, so it is only imported when a model loads.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import llama_cpp
from llama_cpp import Llama

TokenHook = Callable[[int], None]


class TracingLlama(Llama):  # type: ignore[misc]
    """``Llama`` whose ``generate`` calls ``on_token(token)`` for each sampled token."""

    on_token: TokenHook | None = None

    def generate(
        self, tokens: Sequence[int], *args: Any, **kwargs: Any
    ) -> Generator[int, Sequence[int] | None, None]:
        hook = self.on_token  # read once: the copy's thread runs one generation at a time
        inner = super().generate(tokens, *args, **kwargs)
        try:
            sent: Sequence[int] | None = None
            while True:
                try:
                    token = inner.send(sent)
                except StopIteration:
                    return
                if hook is not None:
                    hook(token)  # may raise (a cancelled generation): the finally closes inner
                sent = yield token
        finally:
            inner.close()

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ...), which never reach the text."""
        return bool(llama_cpp.llama_vocab_is_eog(self._model.vocab, token))
