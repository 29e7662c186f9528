"""Bounded per-model queue (429 with Retry-After) and generation stopped by a disconnect."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from inference.serving import running_inference

from support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_queue(redis_url: str, internal_token: str) -> Iterator[httpx.Client]:
    with running_inference(internal_token, redis_url, max_queue=1) as url:
        headers = {"Authorization": f"Bearer {internal_token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            yield client


def _depth(client: httpx.Client) -> int:
    return int(client.get("/admin/models").json()["data"][0]["queue_depth"])


def test_a_full_queue_answers_429_and_a_disconnect_frees_it(tiny_queue: httpx.Client) -> None:
    long_body = {
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": 900,
        "temperature": 0.8,
        "stream": True,
    }
    with tiny_queue.stream("POST", "/v1/chat/completions", json=long_body) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        next(line for line in lines if line.startswith("data: {"))  # generation is under way
        refused = tiny_queue.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "rate_limit_error"
    # the client went away long before 900 tokens: the slot is released within seconds
    wait_until(lambda: _depth(tiny_queue) == 0, timeout=8, what="queue to drain")
    ok = tiny_queue.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert ok.status_code == 200


def test_a_whole_response_client_that_gives_up_stops_its_generation(
    tiny_queue: httpx.Client,
) -> None:
    body = {
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": 900,
        "temperature": 0.8,
    }
    impatient = httpx.Client(
        base_url=tiny_queue.base_url, headers=tiny_queue.headers, timeout=httpx.Timeout(1.5)
    )
    with impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/v1/chat/completions", json=body)
    wait_until(lambda: _depth(tiny_queue) == 0, timeout=8, what="generation to stop")
