"""Fuzz every gateway route from its own OpenAPI document: no input answers a 5xx.

A real gateway runs against a real Redis with the shipped SmolLM2 and MiniLM services behind it,
and takes an admin key. For each operation, hypothesis draws path and query parameters and a
body: shaped like the route's schema (each property present or not, of its type or of any),
any JSON at all, or bytes that are not JSON; strings include lone surrogates and control
characters. Generation routes get ``max_tokens: 2`` so a draw never waits on a long answer.
Examples per route are few (``FUZZ_EXAMPLES``): the point is breadth on every route, cheaply.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inference.serving import gateway_with_llm

from support.gateway import RunningGateway
from support.redis_servers import RedisProcess

FUZZ_EXAMPLES = int(os.environ.get("HIVEMIND_FUZZ_EXAMPLES", "10"))
TOKEN = "test-internal-token-not-secret"
GENERATING = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/messages",
    "/v1/llm/",
    "/v1/responses",
)

_CHAT = [{"role": "user", "content": "hi"}]
# A valid body per route: draws mutate one part of it, so the fuzz also reaches past validation.
VALID: dict[tuple[str, str], Any] = {
    ("POST", "/v1/chat/completions"): {"model": "default", "messages": _CHAT},
    ("POST", "/v1/completions"): {"model": "default", "prompt": "def f():"},
    ("POST", "/v1/embeddings"): {"input": ["hello", "world"]},
    ("POST", "/v1/messages"): {"model": "default", "max_tokens": 2, "messages": _CHAT},
    ("POST", "/v1/messages/count_tokens"): {"model": "default", "messages": _CHAT},
    ("POST", "/v1/responses"): {"model": "default", "input": "hi", "max_output_tokens": 2},
    ("POST", "/v1/facts/search"): {"query": "which port", "top_k": 3},
    ("PUT", "/v1/facts/{key}"): {"value": "port 8090", "tags": ["net"]},
    ("POST", "/v1/sessions"): {"id": "s1", "context": "work", "files": ["a.py"], "task": "t"},
    ("PUT", "/v1/sessions/{session_id}/context"): {"context": "work", "files": ["a.py"]},
    ("POST", "/v1/memories"): {"text": "a note", "session_id": "s1", "metadata": {"k": "v"}},
    ("POST", "/v1/memories/batch"): {"memories": [{"text": "one"}, {"text": "two"}]},
    ("POST", "/v1/memories/search"): {"query": "note", "session_id": "s1", "tags": []},
    ("PUT", "/v1/cache/{tool}/{input_hash}"): {"value": {"hits": [1, "a"]}, "ttl_s": 60},
    ("POST", "/v1/rag/context"): {"query": "which port", "budget_tokens": 64},
    ("POST", "/v1/llm/generate"): {"prompt": "say hi", "mode": "concise"},
    ("POST", "/v1/llm/code-assist"): {"code": "x = 1", "task": "explain", "language": "py"},
    ("POST", "/v1/llm/complete"): {"prefix": "def f(", "suffix": "):"},
    ("POST", "/v1/learning/samples"): {
        "messages": [*_CHAT, {"role": "assistant", "content": "hello"}],
        "rating": 1,
    },
    ("POST", "/v1/learning/train"): {"model": "default"},
    ("POST", "/v1/models/{name}/promote"): {"version": "v1"},
    ("POST", "/v1/keys"): {"role": "read", "name": "fuzz"},
    ("POST", "/v1/docs"): {"source": "docs/a.md", "text": "# A\n\nbody\n", "collection": "c"},
    ("POST", "/v1/docs/search"): {"query": "body", "top_k": 3, "path_prefix": "docs/", "expand": 1},
    ("POST", "/v1/tokenize"): {"text": "hello world", "ids": True},
    ("POST", "/v1/chunk"): {"text": "a b c\n\nd e f", "chunk_tokens": 32, "overlap_tokens": 4},
}
ODD = ["\ud800", "\udfff", "\x00", "\x1b", "\x7f", "\x85"]
PATH_VALUES = ["s1", "a.key", "hosts/aurora", "v1", "default", "web_search", "abc123", "x:y"]


def _spec() -> dict[str, Any]:
    from hivemind_gateway.app import create_app
    from hivemind_gateway.settings import GatewaySettings

    return create_app(GatewaySettings(internal_token="unused")).openapi()


SPEC = _spec()  # building an app starts nothing; its lifespan never runs here
OPERATIONS = [
    (method.upper(), path, op)
    for path, methods in SPEC["paths"].items()
    for method, op in methods.items()
]


# --- strategies -------------------------------------------------------------------------------
# every code point, surrogates and controls included (hypothesis leaves out Cs by default)
odd_chars = st.characters(exclude_categories=())
texts = st.one_of(
    st.text(max_size=40),
    st.text(odd_chars, max_size=20),
    st.sampled_from(["", " ", "default", "auto", "user", "a:b", "..", "%2F", "\ud800", "\x00"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    texts,
)
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return SPEC["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


def _shaped(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped like ``schema`` often, anything sometimes."""
    schema = _resolve(schema)
    if depth > 3:
        return any_json
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([_shaped(s, depth + 1) for s in schema[key]] + [any_json])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | any_json
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if not props:
            return st.dictionaries(texts, any_json, max_size=3)
        fields = {name: _shaped(sub, depth + 1) for name, sub in props.items()}
        return st.fixed_dictionaries({}, optional=fields) | any_json
    if kind == "array":
        return st.lists(_shaped(schema.get("items", {}), depth + 1), max_size=3) | any_json
    if kind == "string":
        return texts
    if kind == "integer":
        return st.integers(min_value=-5, max_value=10**6) | any_json
    if kind == "number":
        return st.floats(min_value=-10, max_value=10, allow_nan=False) | any_json
    if kind == "boolean":
        return st.booleans() | any_json
    return any_json


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        out = [(*prefix, k) for k in value]
        for k, v in value.items():
            out += _leaf_paths(v, (*prefix, k))
        return out
    if isinstance(value, list):
        out = [(*prefix, i) for i in range(len(value))]
        for i, v in enumerate(value):
            out += _leaf_paths(v, (*prefix, i))
        return out
    return []


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` as it is, or with one part replaced by anything or removed."""
    body = json.loads(json.dumps(valid))
    paths = _leaf_paths(body)
    if not paths or draw(st.integers(0, 4)) == 0:
        return body
    where = draw(st.sampled_from(paths))
    parent = body
    for step in where[:-1]:
        parent = parent[step]
    current = parent[where[-1]]
    if isinstance(current, str) and draw(st.booleans()):  # odd text inside a valid body
        at = draw(st.integers(0, len(current)))
        parent[where[-1]] = current[:at] + draw(st.sampled_from(ODD)) + current[at:]
    elif isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
        del parent[where[-1]]
    else:
        parent[where[-1]] = draw(st.one_of(texts, any_json))
    return body


def _body(method: str, path: str, op: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return st.none() | st.binary(max_size=20)
    shaped = _shaped(content.get("schema", {}))
    options = [
        shaped.map(lambda v: json.dumps(v).encode()),
        any_json.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=40),
    ]
    valid = VALID.get((method, path))
    if valid is not None:  # most draws start from a valid body
        options = [mutated(valid).map(lambda v: json.dumps(v).encode())] * 3 + options
    return st.one_of(options)


def _param_value(param: dict[str, Any]) -> st.SearchStrategy[str]:
    schema = param.get("schema", {})
    values: st.SearchStrategy[Any] = st.sampled_from(PATH_VALUES) | texts
    if schema.get("type") == "integer" or "integer" in json.dumps(schema):
        values = st.integers(min_value=-3, max_value=10**4) | texts
    return values.map(str)


@st.composite
def requests(draw: st.DrawFn, method: str, path: str, op: dict[str, Any]) -> dict[str, Any]:
    url = path
    query: dict[str, bytes] = {}
    for param in op.get("parameters", []):
        value = draw(_param_value(param))
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", quote(_raw(value), safe="") or "x")
        elif param["in"] == "query" and draw(st.booleans()):
            query[param["name"]] = _raw(value)
    body = draw(_body(method, path, op))
    if body is not None and path.startswith(GENERATING):
        body = _short_generation(path, body)
    if query:
        url += "?" + urlencode(query)
    return {"url": url, "body": body}


def _raw(value: str) -> bytes:
    """The UTF-8 bytes a hostile client can send, lone surrogates included."""
    return value.encode("utf-8", "surrogatepass")


def _short_generation(path: str, body: bytes) -> bytes:
    """Keep a generating draw cheap: two tokens, one choice, no long tool loops."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        data["max_output_tokens" if path == "/v1/responses" else "max_tokens"] = 2
        data.pop("max_completion_tokens", None)
        data.pop("n", None)
        return json.dumps(data).encode()
    return body


# --- the run ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_gateway(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    redis_server.client().flushall()
    data_dir: Path = tmp_path_factory.mktemp("fuzz-var")
    with gateway_with_llm(redis_server.url, TOKEN, data_dir) as gw:
        yield gw


@pytest.fixture(scope="module")
def fuzz_client(fuzz_gateway: RunningGateway) -> Iterator[httpx.Client]:
    with fuzz_gateway.client(role="admin") as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_no_input_to_any_route_answers_5xx(
    fuzz_client: httpx.Client, method: str, path: str, op: dict[str, Any]
) -> None:
    @given(requests(method, path, op))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def one(request: dict[str, Any]) -> None:
        headers = {"content-type": "application/json"} if request["body"] is not None else {}
        resp = fuzz_client.request(
            method,
            request["url"],
            content=request["body"],
            headers=headers,
        )
        assert resp.status_code < 500, (
            f"{method} {request['url']} {request['body']!r:.300}"
            f" -> {resp.status_code} {resp.text[:300]}"
        )

    one()


def _with_odd_text(valid: Any) -> Iterator[tuple[str, Any]]:
    """``valid`` once per string in it, with that string made odd (each odd kind in turn)."""
    for where in _leaf_paths(valid):
        for odd in ("\ud800", "\x00"):
            body = json.loads(json.dumps(valid))
            parent = body
            for step in where[:-1]:
                parent = parent[step]
            if isinstance(parent[where[-1]], str):
                parent[where[-1]] += odd
                yield ".".join(map(str, where)), body


@pytest.mark.parametrize(
    ("method", "path"), sorted(VALID), ids=[f"{m} {p}" for m, p in sorted(VALID)]
)
def test_odd_text_in_each_field_of_a_valid_body_is_never_a_5xx(
    fuzz_client: httpx.Client, method: str, path: str
) -> None:
    """The sweep the random draws may miss: every string of a valid body, made odd."""
    url = path.format(
        key="a.key", session_id="s1", tool="web_search", input_hash="abc", name="default"
    )
    for where, body in _with_odd_text(VALID[(method, path)]):
        if path.startswith(GENERATING):
            body = json.loads(_short_generation(path, json.dumps(body).encode()))
        resp = fuzz_client.request(
            method,
            url,
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code < 500, (
            f"{method} {url} odd {where}: {resp.status_code} {resp.text[:200]}"
        )


def test_stream_options_that_are_not_an_object_are_a_400(fuzz_client: httpx.Client) -> None:
    """A passed-through stream_options of another type reached `.get` in the gateway: a 500."""
    ask = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    for odd in (True, "yes", [1], 3):
        resp = fuzz_client.post("/v1/chat/completions", json={**ask, "stream_options": odd})
        assert resp.status_code == 400, (odd, resp.status_code, resp.text[:200])


def test_token_id_input_to_embeddings_is_a_clear_400(fuzz_client: httpx.Client) -> None:
    for tokens in ([1, 2, 3], [[1, 2], [3]]):
        resp = fuzz_client.post("/v1/embeddings", json={"input": tokens})
        assert resp.status_code == 400 and "token ids" in resp.json()["error"]["message"]
