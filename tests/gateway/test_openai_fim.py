"""``/v1/completions`` with ``suffix`` through the gateway, with the official openai client.

The inference service behind this gateway serves ``coder`` (a tiny model whose vocabulary has FIM
tokens) beside SmolLM2 (``default``, which has none).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from inference.serving import gateway_with_llm, shared_fim_inference_url

from support.gateway import RunningGateway

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture
def gw(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    url = shared_fim_inference_url(internal_token)
    with gateway_with_llm(redis_url, internal_token, data_dir, inference_url=url) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key(role="read"), max_retries=0)


def _tokens(internal_token: str, text: str) -> int:
    inference = shared_fim_inference_url(internal_token)
    r = httpx.post(
        inference + "/tokenize",
        json={"model": "coder", "content": text},
        headers={"Authorization": f"Bearer {internal_token}"},
        timeout=30,
    )
    return int(r.json()["count"])


def test_suffix_fills_in_the_middle_on_a_model_with_fim_tokens(
    client: openai.OpenAI, internal_token: str
) -> None:
    done = client.completions.create(
        model="coder", prompt=PREFIX, suffix=SUFFIX, max_tokens=4, temperature=0
    )
    assert done.model == "coder"
    assert done.choices[0].finish_reason in ("stop", "length")
    assert done.usage is not None
    expected = _tokens(internal_token, PREFIX) + _tokens(internal_token, SUFFIX) + 3
    assert done.usage.prompt_tokens == expected  # prefix, suffix and the three FIM tokens


def test_the_same_request_on_a_model_without_fim_tokens_is_a_clear_400(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="default", prompt=PREFIX, suffix=SUFFIX, max_tokens=4)
    assert err.value.code == "fim_not_supported"
    assert err.value.param == "suffix"


def test_the_models_list_marks_the_fim_model(client: openai.OpenAI) -> None:
    models = {m.id: m.model_extra or {} for m in client.models.list()}
    assert models["coder"]["fim"] is True and models["default"]["fim"] is False


def test_the_complete_helper_uses_fim_when_the_model_has_it(gw: RunningGateway) -> None:
    with gw.client(role="read") as c:
        r = c.post(
            "/v1/llm/complete",
            json={"model": "coder", "prefix": PREFIX, "suffix": SUFFIX, "max_tokens": 4},
        )
    assert r.status_code == 200, r.text
    assert r.json()["method"] == "fim" and r.json()["version"] == "fim1"
