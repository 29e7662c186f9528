"""Fill-in-the-middle on a model that has FIM tokens, and the clear refusal on one that has not.

``coder`` is a tiny random llama whose vocabulary carries ``<fim_prefix>``, ``<fim_suffix>`` and
``<fim_middle>`` (see ``tiny_fim``); it is served beside SmolLM2 by one inference service.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from inference.serving import shared_fim_inference_url

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture
def fim(internal_token: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {internal_token}"}
    url = shared_fim_inference_url(internal_token)
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        yield client


def _count(client: httpx.Client, text: str) -> int:
    r = client.post("/tokenize", json={"model": "coder", "content": text})
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


def test_the_model_card_says_which_model_can_fill_in_the_middle(fim: httpx.Client) -> None:
    cards = {c["id"]: c for c in fim.get("/v1/models").json()["data"]}
    assert cards["coder"]["fim"] is True
    assert cards["default"]["fim"] is False


def test_suffix_wraps_prefix_and_suffix_in_the_models_fim_tokens(fim: httpx.Client) -> None:
    body = {"model": "coder", "prompt": PREFIX, "max_tokens": 4, "temperature": 0}
    plain = fim.post("/v1/completions", json=body)
    filled = fim.post("/v1/completions", json={**body, "suffix": SUFFIX})
    assert plain.status_code == 200 and filled.status_code == 200, filled.text
    assert plain.json()["usage"]["prompt_tokens"] == _count(fim, PREFIX)
    # <fim_prefix> prefix <fim_suffix> suffix <fim_middle>: three tokens more than the two texts
    expected = _count(fim, PREFIX) + _count(fim, SUFFIX) + 3
    assert filled.json()["usage"]["prompt_tokens"] == expected
    assert filled.headers["x-hivemind-model-version"] == "fim1"
    assert filled.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_streamed_fill_in_the_middle_ends_with_done(fim: httpx.Client) -> None:
    body = {"model": "coder", "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 3, "stream": True}
    with fim.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and len(events) >= 2


def test_the_model_without_fim_tokens_refuses_suffix_on_the_same_service(
    fim: httpx.Client,
) -> None:
    r = fim.post(
        "/v1/completions",
        json={"model": "default", "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 4},
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "fim_not_supported" and err["param"] == "suffix"
    assert "fill-in-the-middle" in err["message"]
