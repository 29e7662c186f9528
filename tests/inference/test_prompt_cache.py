"""The prompt cache keeps each interleaved session's prompt state, on the shipped SmolLM2."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

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


def _answer(copy: ModelCopy, question: str) -> str:
    req = ChatRequest(
        messages=[{"role": "user", "content": question}], max_tokens=24, temperature=0
    )
    out = generate.chat_once(copy, req, threading.Event(), 24)
    return str(out["choices"][0]["message"]["content"])


def test_a_greedy_chat_answers_the_same_from_the_cached_prompt_or_a_fresh_one() -> None:
    """Asked again, a prompt is resumed from the cache and its last token decoded alone; the
    first time it was decoded in the prompt's batch, whose logits differ in the last bits. At
    temperature 0 the same question got two answers in turn (AVX2, SmolLM2):
    "The sea is a vast, mysterious, ..." and "The sea is a vast and mysterious realm ..."."""
    copy = _copy()
    try:
        copy.enter("tenant")
        sea = "Write a short sentence about the sea."
        answers = [_answer(copy, q) for q in (sea, sea, "Name a color.", sea, sea)]
        # asked again at once: resumed from the whole prompt but its last token, both times
        # (after another question, the prompt is resumed from a shorter prefix: its batch
        # differs from the first time's, so only the next repeat is promised the same)
        assert answers[1] == answers[0] and answers[4] == answers[3], answers
    finally:
        copy.close()


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
        # the states of every tenant together stay within the budget: only the current
        # tenant's cache grows, up to what the others leave; the others are dropped, least
        # recently used first, until they hold at most half
        kept = alpha_cache.cache_size + copy._caches["tenant-b"].cache_size
        budget = 2 * kept + 2 * 1024
        copy.enter("tenant-c", budget)
        assert list(copy._caches) == ["tenant-b", "tenant-a", "tenant-c"]  # both fit in half
        assert copy.llama.cache.capacity_bytes == budget - kept
        copy.enter("tenant-d", kept // 2)  # b, then a, go (c saved nothing)
        assert list(copy._caches) == ["tenant-c", "tenant-d"]
        assert copy.llama.cache.capacity_bytes == kept // 2
        copy.enter("tenant-d", 0)  # the cache turned off drops every saved state
        assert copy.llama.cache is None and not copy._caches
    finally:
        copy.close()


def test_every_generating_route_enters_the_partition_its_header_names(
    inference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered: list[str] = []
    real = ModelCopy.enter

    def spy(self: ModelCopy, partition: str, cache_bytes: int = 0) -> None:
        entered.append(partition)
        real(self, partition, cache_bytes)

    monkeypatch.setattr(ModelCopy, "enter", spy)
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    text = {"prompt": "Hello", "max_tokens": 1}
    header = "x-hivemind-partition"
    assert inference.post("/v1/chat/completions", json=chat, headers={header: "a"}).is_success
    with inference.stream(
        "POST", "/v1/chat/completions", json={**chat, "stream": True}, headers={header: "b"}
    ) as r:
        assert r.status_code == 200 and "[DONE]" in r.read().decode()
    assert inference.post("/v1/completions", json=text, headers={header: "c"}).is_success
    with inference.stream("POST", "/v1/completions", json={**text, "stream": True}) as r:
        assert r.status_code == 200 and "[DONE]" in r.read().decode()
    long = "x" * 500  # bounded: a header is not a way to grow the service's memory
    assert inference.post("/v1/completions", json=text, headers={header: long}).is_success
    assert entered == ["a", "b", "c", "", "x" * 64]


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
