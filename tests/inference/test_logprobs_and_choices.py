"""Token logprobs (chat and legacy shapes, whole and streamed) and ``n`` choices, on SmolLM2.

The model is loaded without ``logits_all``; logprobs come from the logits each token was sampled
from, so at temperature 0 the chosen token is the most likely one.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

ASK = {"messages": [{"role": "user", "content": "Name three colors."}], "max_tokens": 12}


def _events(client: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_chat_logprobs_line_up_with_the_content(inference: httpx.Client) -> None:
    r = inference.post(
        "/v1/chat/completions",
        json={**ASK, "temperature": 0, "logprobs": True, "top_logprobs": 3},
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    entries = choice["logprobs"]["content"]
    assert entries and "".join(e["token"] for e in entries) == choice["message"]["content"]
    for e in entries:
        assert e["logprob"] <= 0
        assert bytes(e["bytes"]) == e["token"].encode()
        assert len(e["top_logprobs"]) == 3
        best = max(t["logprob"] for t in e["top_logprobs"])
        assert e["logprob"] == best  # greedy: the chosen token is the most likely one
    assert r.json()["usage"]["completion_tokens"] == len(entries)


def test_streamed_chat_logprobs_match_the_whole_answer(inference: httpx.Client) -> None:
    body = {**ASK, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    whole = inference.post("/v1/chat/completions", json=body).json()["choices"][0]
    chunks = _events(inference, "/v1/chat/completions", body)
    streamed: list[dict[str, Any]] = []
    for chunk in chunks:
        choice = chunk["choices"][0]
        part = (choice.get("logprobs") or {}).get("content") or []
        assert "".join(e["token"] for e in part) == (choice["delta"].get("content") or "")
        streamed += part
    assert [e["token"] for e in streamed] == [e["token"] for e in whole["logprobs"]["content"]]
    for a, b in zip(streamed, whole["logprobs"]["content"], strict=True):
        assert abs(a["logprob"] - b["logprob"]) < 1e-3


def test_a_stop_sequence_inside_a_token_cuts_that_token(inference: httpx.Client) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0, "logprobs": 0}
    whole = inference.post("/v1/completions", json=body).json()["choices"][0]
    text, tokens = whole["text"], whole["logprobs"]["tokens"]
    boundaries = {sum(len(t) for t in tokens[:i]) for i in range(len(tokens) + 1)}
    # a stop that starts one character into a token, where the text first contains it
    stop = next(t[1:3] for t in tokens if len(t) >= 3 and text.index(t[1:3]) not in boundaries)
    cut = inference.post("/v1/completions", json={**body, "stop": [stop]}).json()["choices"][0]
    assert cut["text"] == text[: text.index(stop)]
    assert "".join(cut["logprobs"]["tokens"]) == cut["text"]
    assert cut["logprobs"]["tokens"][-1] not in tokens  # the last token was cut to fit


def test_legacy_completion_logprobs_have_offsets_and_alternatives(inference: httpx.Client) -> None:
    prompt = "Once upon a time"
    r = inference.post(
        "/v1/completions",
        json={"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2},
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    lp = choice["logprobs"]
    assert "".join(lp["tokens"]) == choice["text"]
    assert lp["text_offset"][0] == len(prompt)
    for i, token in enumerate(lp["tokens"]):
        assert lp["token_logprobs"][i] <= 0
        assert lp["top_logprobs"][i][token] == lp["token_logprobs"][i]
        assert max(lp["top_logprobs"][i].values()) == lp["token_logprobs"][i]
        if i:
            assert lp["text_offset"][i] == lp["text_offset"][i - 1] + len(lp["tokens"][i - 1])
    chunks = _events(
        inference, "/v1/completions", {"prompt": prompt, "max_tokens": 6, "logprobs": 2}
    )
    tokens = [t for c in chunks for t in c["choices"][0]["logprobs"]["tokens"]]
    assert "".join(tokens) == "".join(c["choices"][0]["text"] for c in chunks)


def test_bad_logprobs_requests_are_400s(inference: httpx.Client) -> None:
    bad = [
        ("/v1/chat/completions", {**ASK, "top_logprobs": 2}, "top_logprobs"),
        ("/v1/chat/completions", {**ASK, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/v1/completions", {"prompt": "hi", "logprobs": 6}, "logprobs"),
        ("/v1/completions", {"prompt": "hi", "logprobs": 1, "echo": True}, "logprobs"),
    ]
    for path, body, param in bad:
        r = inference.post(path, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param


def test_n_choices_stream_with_their_index_and_summed_usage(inference: httpx.Client) -> None:
    body = {
        **ASK,
        "n": 3,
        "seed": 11,
        "temperature": 0.9,
        "stream_options": {"include_usage": True},
    }
    chunks = _events(inference, "/v1/chat/completions", body)
    texts: dict[int, str] = {}
    finished: set[int] = set()
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
            if choice["finish_reason"]:
                finished.add(choice["index"])
    assert finished == {0, 1, 2} and all(texts.values())
    assert len({c["id"] for c in chunks}) == 1
    whole = inference.post("/v1/chat/completions", json={**body, "stream": False}).json()
    assert [c["message"]["content"] for c in whole["choices"]] == [texts[i] for i in range(3)]
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]


def test_n_text_choices_stream_too(inference: httpx.Client) -> None:
    chunks = _events(
        inference, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4, "n": 2}
    )
    assert {c["choices"][0]["index"] for c in chunks} == {0, 1}


def test_n_above_the_services_cap_is_a_400(inference: httpx.Client) -> None:
    r = inference.post("/v1/chat/completions", json={**ASK, "n": 9, "stream": True})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "n"
