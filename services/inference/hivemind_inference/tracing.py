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

    def eval(self, tokens: Sequence[int]) -> None:
        """Decode ``tokens``, the last one on its own.

        A prompt met again is served from the cache: all its tokens but the last are kept, and
        the last is decoded again, alone, to get the logits to sample from. A batch's logits
        are not bit for bit those of a single token (llama.cpp's kernels differ by batch size),
        so at temperature 0 the same request answered "The sea is a vast, mysterious, ..." and,
        asked again, "The sea is a vast and mysterious realm ..." (AVX2, SmolLM2). Decoding
        the last token alone the first time too makes both paths sample from the same numbers,
        for one more decode of a token a request. (A draft model, which this service does not
        load, samples from several rows of one decode: it would need the batch whole.)
        """
        if len(tokens) > 1:
            super().eval(tokens[:-1])
            tokens = tokens[-1:]
        super().eval(tokens)

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ...), which never reach the text."""
        return bool(llama_cpp.llama_vocab_is_eog(self._model.vocab, token))
