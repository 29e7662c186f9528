"""The hot path (``hivemind_gateway.hot_path``) answers its two routes exactly as the framework
does: two gateways on one Redis, one with it and one without, are asked the same things and
must give the same statuses, bodies, content types and headers that matter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import RunningGateway, create_api_key, revoke_api_key, running_gateway
from support.waiting import wait_until

VOLATILE = {"updated_at", "created_at", "expires_in"}


@pytest.fixture
def pair(
    redis_url: str, internal_token: str, tmp_path: Path
) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    common: dict[str, Any] = {
        "embedding_url": "http://127.0.0.1:9",
        "inference_url": "http://127.0.0.1:9",
        "trainer_url": "http://127.0.0.1:9",
    }
    with (
        running_gateway(redis_url, internal_token, tmp_path / "hot", **common) as hot,
        running_gateway(
            redis_url, internal_token, tmp_path / "plain", gateway_hot_path=False, **common
        ) as plain,
    ):
        plain.keys = hot.keys  # one set of keys, in the one Redis
        yield hot, plain


def _key(redis_url: str, *, role: str = "write", rpm: int | None = None) -> str:
    return create_api_key(redis_url, tenant="acme", role=role, rpm=rpm)


def _ask(gw: RunningGateway, method: str, path: str, key: str | None, **kw: Any) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        return c.request(method, path, headers=headers, **kw)


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"]
    for header in ("retry-after", "www-authenticate"):
        assert (header in a.headers) == (header in b.headers), header
    ja, jb = a.json(), b.json()
    if isinstance(ja, dict):
        ja = {k: v for k, v in ja.items() if k not in VOLATILE}
        jb = {k: v for k, v in jb.items() if k not in VOLATILE}
    assert ja == jb


def test_every_answer_of_the_two_routes_is_the_frameworks(
    pair: tuple[RunningGateway, RunningGateway], redis_url: str
) -> None:
    hot, plain = pair
    key = hot.key()
    reader = _key(redis_url, role="read")
    _ask(plain, "PUT", "/v1/facts/db.port", key, json={"value": "5432", "tags": ["db"]})
    cases: list[tuple[str, str, str | None, dict[str, Any]]] = [
        ("GET", "/v1/facts/db.port", key, {}),
        ("GET", "/v1/facts/db.port", reader, {}),
        ("GET", "/v1/facts/missing.one", key, {}),  # 404
        ("GET", "/v1/facts/db.port", "hm_nosuchkey_secret", {}),  # 401
        ("GET", "/v1/facts/db.port", "garbage", {}),  # malformed key: 401
        ("GET", "/v1/facts/db.port", None, {}),  # no key: 401
        ("GET", "/v1/facts/-bad", key, {}),  # the route's pattern: 422
        ("GET", "/v1/facts/a%0A", key, {}),  # a final newline is not a key
        ("PUT", "/v1/sessions/s1/context", key, {"json": {"context": "on the auth bug"}}),
        ("PUT", "/v1/sessions/s1/context", key, {"json": {"context": "x", "files": ["a.py"]}}),
        ("PUT", "/v1/sessions/s1/context", reader, {"json": {"context": "x"}}),  # 403
        ("PUT", "/v1/sessions/s1/context", key, {"json": {"context": "x", "extra": 1}}),  # 422
        ("PUT", "/v1/sessions/s1/context", key, {"json": {"context": 5}}),  # 422
        ("PUT", "/v1/sessions/s1/context", key, {"json": {"context": "a\x00b"}}),  # bad text
        ("PUT", "/v1/sessions/s1/context", key, {"content": b"{not json"}),  # 422
        ("PUT", "/v1/sessions/s1/context", key, {"content": b'{"context": NaN}'}),
        (
            "PUT",
            "/v1/sessions/s1/context",
            key,
            {"content": b'{"context": "x"}', "headers": {"content-type": "text/plain"}},
        ),
        ("PUT", "/v1/sessions/bad%20id/context", key, {"json": {"context": "x"}}),
        ("PUT", "/v1/sessions/s1/context", "hm_nosuchkey_secret", {"json": {"context": "x"}}),
        ("PUT", "/v1/sessions/s1/context", "hm_nosuchkey_secret", {"json": {"context": 5}}),
    ]
    for method, path, who, kw in cases:
        _same(_ask(hot, method, path, who, **kw), _ask(plain, method, path, who, **kw))
    # a repeated header: both read its first value
    bearer = ("authorization", f"Bearer {key}")
    basic = ("authorization", "Basic x")
    as_text, as_json = ("content-type", "text/plain"), ("content-type", "application/json")
    repeated: list[tuple[str, str, list[tuple[str, str]], bytes | None]] = [
        ("GET", "/v1/facts/db.port", [basic, bearer], None),
        ("GET", "/v1/facts/db.port", [bearer, basic], None),
        ("PUT", "/v1/sessions/s1/context", [bearer, as_text, as_json], b'{"context": "x"}'),
        ("PUT", "/v1/sessions/s1/context", [bearer, as_json, as_text], b'{"context": "x"}'),
    ]
    for method, path, raw, content in repeated:
        answers = []
        for gw in (hot, plain):
            with httpx.Client(base_url=gw.url, timeout=30) as c:
                request = c.build_request(method, path, content=content)
                names = {n for n, _ in raw}
                kept = [(n, v) for n, v in request.headers.multi_items() if n not in names]
                request.headers = httpx.Headers([*kept, *raw])
                answers.append(c.send(request))
        _same(*answers)


def test_every_answer_of_the_search_routes_is_the_frameworks(
    pair: tuple[RunningGateway, RunningGateway], redis_url: str
) -> None:
    hot, plain = pair
    key = hot.key()
    reader = _key(redis_url, role="read")
    _ask(plain, "PUT", "/v1/facts/db.port", key, json={"value": "postgres listens on 5432"})
    for text, session in (("the staging deploy runs on tuesday", "s1"), ("redis on the nas", "s2")):
        r = _ask(plain, "POST", "/v1/memories", key, json={"text": text, "session_id": session})
        assert r.status_code in (200, 201), r.text
    search = {"query": "when does the staging deploy run"}

    def found(gw: RunningGateway) -> bool:
        answer = _ask(gw, "POST", "/v1/memories/search", key, json=search).json()
        return len(answer.get("data", [])) >= 1

    for gw in (hot, plain):  # both indexes have caught up with the writes
        wait_until(lambda gw=gw: found(gw), timeout=30, what="the memory in the index")
    mem, rag = "/v1/memories/search", "/v1/rag/context"
    cases: list[tuple[str, str, str | None, dict[str, Any]]] = [
        ("POST", mem, key, {"json": search}),
        ("POST", mem, reader, {"json": {**search, "top_k": 1, "session_id": "s1"}}),
        ("POST", mem, key, {"json": {**search, "session_id": "s2"}}),
        ("POST", mem, key, {"json": {**search, "top_k": 0}}),  # 422
        ("POST", mem, key, {"json": {**search, "nope": 1}}),  # 422
        ("POST", mem, key, {"json": {"query": ""}}),
        ("POST", mem, key, {"content": b'{"query": NaN}'}),
        ("POST", mem, None, {"json": search}),  # 401
        ("POST", mem, "hm_nosuchkey_secret", {"json": search}),
        ("POST", rag, key, {"json": {"query": "which port does postgres listen on"}}),
        ("POST", rag, reader, {"json": {"query": "staging deploy day", "explain": True}}),
        ("POST", rag, key, {"json": {"query": "postgres", "budget_tokens": 10}}),
        ("POST", rag, key, {"json": {"query": "postgres", "budget_tokens": -1}}),  # 422
        ("POST", rag, key, {"json": {"query": "x", "collections": ["a"], "skip_collections": []}}),
        ("POST", rag, key, {"content": b"[]"}),
        ("POST", rag, None, {"json": {"query": "postgres"}}),
        ("POST", rag + "s", key, {"json": {"query": "postgres"}}),  # not the route: 404
    ]
    for method, path, who, kw in cases:
        _same(_ask(hot, method, path, who, **kw), _ask(plain, method, path, who, **kw))


def test_a_request_is_counted_once_against_its_rate(
    pair: tuple[RunningGateway, RunningGateway], redis_url: str
) -> None:
    """Three lookups of a fact that is not there, then a fourth: with ``rpm=3`` the first three
    are 404 and the fourth 429 on either gateway (a hot-path answer is not counted twice)."""
    hot, _ = pair
    key = _key(redis_url, rpm=3)
    statuses = [_ask(hot, "GET", "/v1/facts/nothing.here", key).status_code for _ in range(4)]
    if statuses[-1] == 404:  # a minute's window turned over between the requests: once more
        statuses = [_ask(hot, "GET", "/v1/facts/nothing.here", key).status_code for _ in range(4)]
    assert statuses[:3].count(404) >= 2 and statuses[-1] == 429, statuses
    limited = _ask(hot, "GET", "/v1/facts/nothing.here", key)
    assert limited.status_code == 429 and "retry-after" in limited.headers


def test_request_ids_and_metrics_are_kept(pair: tuple[RunningGateway, RunningGateway]) -> None:
    hot, _ = pair
    key = hot.key()
    _ask(hot, "PUT", "/v1/facts/k1", key, json={"value": "v"})
    got = _ask(hot, "GET", "/v1/facts/k1", key, headers={"X-Request-Id": "trace-17"})
    assert got.status_code == 200 and got.headers["x-request-id"] == "trace-17"
    minted = _ask(hot, "GET", "/v1/facts/k1", key, headers={"X-Request-Id": "no spaces"})
    assert (
        minted.headers["x-request-id"] != "no spaces" and len(minted.headers["x-request-id"]) == 16
    )
    metrics = _ask(hot, "GET", "/metrics", None).text
    assert 'route="/v1/facts/{key:path}",service="gateway",status="2xx"' in metrics


def _served(gw: RunningGateway, method: str, template: str) -> float:
    """hivemind_http_requests_total of one route's 2xx answers (the registry is the process')."""
    label = f'method="{method}",route="{template}",service="gateway",status="2xx"'
    for line in _ask(gw, "GET", "/metrics", None).text.splitlines():
        if line.startswith("hivemind_http_requests_total{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_hot_routes_carry_the_apps_own_templates(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    """The framework's own metrics count each route under the template the hot path uses."""
    from hivemind_gateway.hot_path import ROUTES

    _, plain = pair
    key = plain.key()
    _ask(plain, "PUT", "/v1/facts/k3", key, json={"value": "v"})
    asks = {
        "/v1/facts/{key:path}": ("/v1/facts/k3", {}),
        "/v1/sessions/{session_id}/context": (
            "/v1/sessions/s3/context",
            {"json": {"context": "x"}},
        ),
        "/v1/memories/search": ("/v1/memories/search", {"json": {"query": "v"}}),
        "/v1/rag/context": ("/v1/rag/context", {"json": {"query": "v"}}),
    }
    assert set(asks) == {route.template for route in ROUTES}
    for route in ROUTES:
        before = _served(plain, route.method, route.template)
        path, kw = asks[route.template]
        assert _ask(plain, route.method, path, key, **kw).status_code == 200
        assert _served(plain, route.method, route.template) == before + 1, route


def test_a_revoked_key_is_refused_on_the_hot_path(
    pair: tuple[RunningGateway, RunningGateway], redis_url: str
) -> None:
    hot, _ = pair
    key = _key(redis_url)
    _ask(hot, "PUT", "/v1/facts/k2", key, json={"value": "v"})
    assert _ask(hot, "GET", "/v1/facts/k2", key).status_code == 200  # now in the key cache

    revoke_api_key(redis_url, key)
    wait_until(lambda: _ask(hot, "GET", "/v1/facts/k2", key).status_code == 401, timeout=5)


def test_the_hot_path_takes_its_routes_and_leaves_the_rest(
    pair: tuple[RunningGateway, RunningGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hivemind_gateway import hot_path

    taken: list[str] = []
    answer = hot_path._answer

    async def counted(scope: Any, *args: Any) -> int:
        taken.append(f"{scope['method']} {scope['path']}")
        return await answer(scope, *args)

    monkeypatch.setattr(hot_path, "_answer", counted)
    hot, _ = pair
    key = hot.key()
    _ask(hot, "PUT", "/v1/facts/k4", key, json={"value": "v"})
    _ask(hot, "GET", "/v1/facts/k4", key)
    _ask(hot, "PUT", "/v1/sessions/s4/context", key, json={"context": "x"})
    _ask(hot, "PUT", "/v1/sessions/s4/context", key, json={"context": 5})
    _ask(hot, "GET", "/v1/facts", key)
    _ask(hot, "GET", "/v1/facts/k4", None)
    _ask(hot, "POST", "/v1/memories/search", key, json={"query": "v"})
    _ask(hot, "POST", "/v1/rag/context", key, json={"query": "v"})
    _ask(hot, "POST", "/v1/facts/search", key, json={"query": "v"})
    assert taken == [
        "GET /v1/facts/k4",
        "PUT /v1/sessions/s4/context",
        "POST /v1/memories/search",
        "POST /v1/rag/context",
    ]


def test_an_unexpected_error_is_the_apps_own_500_on_both_paths(
    pair: tuple[RunningGateway, RunningGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path caught only our errors and Redis's: anything else escaped to the server,
    a bare text/plain 500 without a request id."""
    from hivemind_gateway.facts import service

    async def broken(**kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "get_fact", broken)
    hot, plain = pair
    key = _key(hot.redis_url, role="read")
    a = _ask(hot, "GET", "/v1/facts/anything", key)
    b = _ask(plain, "GET", "/v1/facts/anything", key)
    assert a.status_code == 500 and a.headers["content-type"] == "application/problem+json"
    assert a.headers["x-request-id"]
    _same(a, b)
