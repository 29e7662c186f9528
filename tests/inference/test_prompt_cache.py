"""The prompt cache keeps each interleaved session's prompt state, on the shipped SmolLM2."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hivemind_common.models_paths import default_llm_gguf
from hivemind_inference import generate
from hivemind_inference.engine import ModelCopy
from hivemind_inference.schemas import ChatRequest


def _chat(copy: ModelCopy, system: str) -> None:
    req = ChatRequest(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi"}],
        max_tokens=1,
        temperature=0,
    )
    generate.chat_once(copy, req, threading.Event(), 1)


def test_two_sessions_each_keep_their_saved_prompt_state() -> None:
    copy = ModelCopy(
        name="default",
        version="base",
        gguf=Path(default_llm_gguf()),
        lora=None,
        n_ctx=512,
        threads=1,
    )
    copy.load()
    try:
        copy.enter("tenant", 64 * 1024 * 1024)
        _chat(copy, "You work on project alpha.")
        _chat(copy, "You work on project beta.")
        cache = copy.llama.cache
        assert cache is not None and len(cache.cache_state) == 2
        # the next turn of session alpha finds its own state by prefix, not beta's
        alpha = copy.llama.tokenize(b"<|im_start|>system\nYou work on project alpha.", special=True)
        saved = cache._find_longest_prefix_key(tuple(alpha))
        assert saved is not None and list(saved[: len(alpha)]) == alpha
        copy.enter("tenant", 64 * 1024 * 1024)  # a second call keeps the same cache
        assert copy.llama.cache is cache
    finally:
        copy.close()


def _copy() -> ModelCopy:
    copy = ModelCopy(name="default", version="base", gguf=Path(default_llm_gguf()), lora=None,
                     n_ctx=512, threads=1)  # fmt: skip
    copy.load()
    return copy


def _evaluated(copy: ModelCopy, system: str) -> int:
    """Prompt tokens the model evaluated for one chat (what it resumed from is not counted)."""
    counted: list[int] = []
    real = copy.llama.eval

    def spy(tokens: list[int]) -> None:
        counted.append(len(tokens))
        real(tokens)

    copy.llama.eval = spy
    try:
        _chat(copy, system)
    finally:
        del copy.llama.eval
    return counted[0]


def test_another_tenants_prompt_is_never_resumed_from() -> None:
    """llama.cpp resumes a prompt from the longest prefix it shares with the last one: a
    tenant that sent another's prompt got its first token sooner (a timing side channel)."""
    copy = _copy()
    try:
        prompt = "You work on project alpha, whose deploy key is in the vault."
        copy.enter("tenant-a")
        whole = _evaluated(copy, prompt)
        copy.enter("tenant-a")
        assert _evaluated(copy, prompt) < whole  # its own prompt: resumed
        copy.enter("tenant-b")
        assert _evaluated(copy, prompt) == whole  # another tenant's: evaluated from nothing
        copy.enter("tenant-b")
        assert _evaluated(copy, prompt) < whole
    finally:
        copy.close()


def test_each_tenant_resumes_only_from_its_own_saved_states() -> None:
    copy = _copy()
    try:
        mb = 1024 * 1024
        copy.enter("tenant-a", 64 * mb)
        _chat(copy, "You work on project alpha.")
        alpha_cache = copy.llama.cache
        copy.enter("tenant-b", 64 * mb)
        assert copy.llama.cache is not alpha_cache and len(copy.llama.cache.cache_state) == 0
        _chat(copy, "You work on project beta.")
        copy.enter("tenant-a", 64 * mb)
        assert copy.llama.cache is alpha_cache and len(alpha_cache.cache_state) == 1
        # the states kept for every tenant together stay within the budget: the least
        # recently used tenant's go first
        copy.enter("tenant-c", 1)
        assert list(copy._caches) == ["tenant-c"]
        copy.enter("tenant-c", 0)  # the cache turned off drops every saved state
        copy.enter("tenant-a", 0)
        assert copy.llama.cache is None and not copy._caches
    finally:
        copy.close()


def test_a_chat_template_that_does_not_compile_is_a_load_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """llama-cpp-python compiles a GGUF's chat template while it loads, and a jinja2 error
    there escaped the load's error handling: the admin load route answered a 500, and a
    serving version with such a template kept inference from starting."""
    import jinja2
    import llama_cpp.llama_chat_format as chat_format

    from hivemind_common.errors import Unprocessable

    def broken(**kwargs: object) -> object:
        raise jinja2.TemplateSyntaxError("unexpected '}'", 1)

    monkeypatch.setattr(chat_format, "Jinja2ChatFormatter", broken)
    copy = ModelCopy(name="default", version="base", gguf=Path(default_llm_gguf()), lora=None,
                     n_ctx=256, threads=1)  # fmt: skip
    with pytest.raises(Unprocessable, match="unexpected"):
        copy.load()
    assert copy.llama is None
