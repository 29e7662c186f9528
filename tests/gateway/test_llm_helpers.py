"""The LLM helper routes (generate, code-assist, complete) over the real SmolLM2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inference.serving import gateway_with_llm

from support.gateway import RunningGateway


@pytest.fixture
def gw(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    with gateway_with_llm(redis_url, internal_token, data_dir) as running:
        yield running


def test_generate_answers_under_a_mode(gw: RunningGateway) -> None:
    with gw.client(role="read") as c:
        r = c.post(
            "/v1/llm/generate", json={"prompt": "Name a fruit.", "mode": "concise", "max_tokens": 8}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] and body["model"] == "default" and body["version"] == "base"
    assert body["method"] == "chat"


def test_code_assist_takes_code_task_and_language(gw: RunningGateway) -> None:
    with gw.client(role="read") as c:
        r = c.post(
            "/v1/llm/code-assist",
            json={
                "code": "def add(a, b):\n    return a - b",
                "task": "fix",
                "language": "python",
                "max_tokens": 16,
            },
        )
    assert r.status_code == 200, r.text
    assert r.json()["text"]


def test_complete_falls_back_to_an_instruction_without_fim_tokens(gw: RunningGateway) -> None:
    with gw.client(role="read") as c:
        r = c.post(
            "/v1/llm/complete",
            json={"prefix": "def square(x):\n    return ", "suffix": "\n", "max_tokens": 8},
        )
    assert r.status_code == 200, r.text
    assert r.json()["method"] == "chat"  # SmolLM2 has no FIM tokens


def test_helpers_validate_their_bodies_as_problem_documents(gw: RunningGateway) -> None:
    with gw.client(role="read") as c:
        r = c.post("/v1/llm/generate", json={"prompt": "", "mode": "telepathy"})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        unknown = c.post("/v1/llm/generate", json={"prompt": "hi", "model": "nope"})
        assert unknown.status_code == 404
