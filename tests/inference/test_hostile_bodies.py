"""Bodies that reached the inference service's code and raised there (a 500, seen as the
gateway's 502), or that held the shared model: refused as 400s, or read as OpenAI means them."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from hivemind_common.errors import Invalid
from hivemind_gateway.openai.schemas import ChatBody
from hivemind_inference.generate import _call_for_template
from hivemind_inference.grammars import check_schema
from hivemind_inference.schemas import RANDOM_SEED, ChatRequest, usable_seed

CHAT = [{"role": "user", "content": "hi"}]


def test_nulls_from_openai_clients_are_the_defaults() -> None:
    """The gateway passed ``"temperature": null`` on; inference answered 422."""
    nulls = dict.fromkeys(
        ("temperature", "top_p", "n", "presence_penalty", "frequency_penalty", "stream")
    )
    got = ChatRequest.model_validate({"messages": CHAT, **nulls})
    assert (got.temperature, got.top_p, got.n, got.stream) == (1.0, 1.0, 1, False)
    assert ChatBody.model_validate({"model": "m", "messages": CHAT, "stream": None}).stream is None


@pytest.mark.parametrize("seed", [-1, RANDOM_SEED, 2 * RANDOM_SEED + RANDOM_SEED, 2**63 - 1])
def test_no_seed_reaches_llama_cpp_as_its_random_seed(seed: int) -> None:
    """llama.cpp reads 0xFFFFFFFF as "random" and takes seeds modulo 2**32, so "seed": -1 was a
    random answer the gateway cached as a seeded, repeatable one."""
    got = ChatRequest.model_validate({"messages": CHAT, "seed": seed}).seed
    assert got is not None and 0 <= got < RANDOM_SEED
    assert all(usable_seed(got + i) % 2**32 != 0xFFFFFFFF for i in range(128))


@pytest.mark.parametrize(
    "extra",
    [
        {"logit_bias": {str(i): 1 for i in range(301)}},  # a Python loop a token over each
        {"logit_bias": {"5": 1e308}},  # an infinite logit: NaN probabilities
        {"messages": [*CHAT, {"role": "assistant", "tool_calls": 5}]},
    ],
)
def test_bodies_inference_could_not_handle_are_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ChatRequest.model_validate({"messages": CHAT, **extra})
    if "messages" in extra:  # refused at the gateway already
        with pytest.raises(pydantic.ValidationError):
            ChatBody.model_validate({"model": "m", **extra})
    ok = {"logit_bias": {"5": -100, "6": 100}}
    assert ChatRequest.model_validate({"messages": CHAT, **ok}).logit_bias == {"5": -100, "6": 100}


def test_arguments_nested_past_the_parser_go_to_the_template_as_text() -> None:
    deep = "[" * 5000
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": deep}}
    assert _call_for_template(call)["function"]["arguments"] == deep  # was a RecursionError


@pytest.mark.parametrize("schema", [{"$schema": []}, {"$schema": {}}, {"$schema": 5}])
def test_a_schema_with_an_odd_dollar_schema_is_a_400(schema: dict[str, Any]) -> None:
    with pytest.raises(Invalid, match="not a valid JSON Schema"):
        check_schema(schema, "response_format")
