"""Console sign-in over plain HTTP: the cookie's flags, CSRF on every state-changing call made
with it, what a read key's session can reach, and the API additions the console reads."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie

import httpx
import pytest

from hivemind_common import keys
from support.gateway import RunningGateway

COOKIE = "hm_console"


@contextmanager
def signed_in(gw: RunningGateway, tenant: str, role: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client holding a console session (cookie sent by hand), and the session's CSRF token."""
    with httpx.Client(base_url=gw.url, timeout=30) as anon:
        resp = anon.post("/console/signin", data={"api_key": gw.key(tenant, role)})
    assert resp.status_code == 303, resp.text
    session_id = SimpleCookie(resp.headers["set-cookie"])[COOKIE].value
    headers = {"cookie": f"{COOKIE}={session_id}"}
    with httpx.Client(base_url=gw.url, timeout=30, headers=headers) as client:
        page = client.get("/console/memory")
        match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert match, page.text[:500]
        yield client, match.group(1)


def test_sign_in_sets_an_httponly_samesite_strict_cookie_holding_no_key(
    console: RunningGateway,
) -> None:
    key = console.key("acme", "write")
    with httpx.Client(base_url=console.url, timeout=30) as http:
        resp = http.post("/console/signin", data={"api_key": key})
    assert resp.status_code == 303
    assert resp.headers["location"] == "/console/overview"
    raw = resp.headers["set-cookie"]
    morsel = SimpleCookie(raw)[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/"
    assert not morsel["secure"]  # plain http here; see the https test below
    assert key not in raw and key.split("_")[2] not in raw
    assert 40 <= len(morsel.value) <= 64
    # the session is kept server-side with a TTL, and holds no key either
    import redis as redis_sync

    r = redis_sync.Redis.from_url(console.redis_url, decode_responses=True)
    stored = r.hgetall(keys.console_session(morsel.value))
    assert stored["tenant"] == "acme" and stored["role"] == "write"
    assert key not in str(stored)
    assert 0 < r.ttl(keys.console_session(morsel.value)) <= keys.CONSOLE_SESSION_TTL_S


def test_the_cookie_is_secure_when_the_console_is_served_over_https(
    console: RunningGateway,
) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as http:
        resp = http.post(
            "/console/signin",
            data={"api_key": console.key("acme", "read")},
            headers={"x-forwarded-proto": "https"},  # a TLS proxy in front (trusted loopback)
        )
    assert resp.status_code == 303
    assert SimpleCookie(resp.headers["set-cookie"])[COOKIE]["secure"] is True


def test_a_wrong_key_or_a_form_from_another_site_signs_nobody_in(
    console: RunningGateway,
) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as http:
        wrong = http.post("/console/signin", data={"api_key": "hm_abc_def"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        assert "unknown API key" in wrong.text
        empty = http.post("/console/signin", data={})
        assert empty.status_code == 401
        forged = http.post(
            "/console/signin",
            data={"api_key": console.key("acme", "read")},
            headers={"origin": "https://evil.example"},
        )
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
        # a sandboxed frame or data: page posts with an opaque origin and no referrer
        opaque = http.post(
            "/console/signin",
            data={"api_key": console.key("acme", "read")},
            headers={"origin": "null"},
        )
        assert opaque.status_code == 403 and "set-cookie" not in opaque.headers
        # pages need a session; a made-up cookie is no session
        page = http.get("/console/memory", headers={"cookie": f"{COOKIE}={'x' * 43}"})
        assert page.status_code == 303 and page.headers["location"] == "/console/signin"
        api = http.get("/v1/facts", headers={"cookie": f"{COOKIE}={'x' * 43}"})
        assert api.status_code == 401


def test_state_changing_calls_with_the_cookie_need_the_sessions_csrf_token(
    console: RunningGateway,
) -> None:
    with signed_in(console, "acme", "write") as (client, csrf):
        assert client.get("/v1/facts").status_code == 200  # reading needs no token
        for headers in (
            {},
            {"x-csrf-token": "wrong"},
            {"x-csrf-token": ""},
            {"x-csrf-token": b"\xff" * 43},  # not ASCII: a mismatch, never a 500
        ):
            put = client.put("/v1/facts/k", json={"value": "v"}, headers=headers)
            assert put.status_code == 403, headers
            assert put.json()["type"].endswith("csrf_failed")
        post = client.post("/v1/memories", json={"text": "hello"})
        assert post.status_code == 403
        assert client.get("/v1/facts/k").status_code == 404  # nothing was written
        ok = client.put("/v1/facts/k", json={"value": "v"}, headers={"x-csrf-token": csrf})
        assert ok.status_code == 200
        gone = client.delete("/v1/facts/k")
        assert gone.status_code == 403
        assert client.delete("/v1/facts/k", headers={"x-csrf-token": csrf}).status_code == 204
        # another session's token is no good here
        with signed_in(console, "acme", "write") as (_, other_csrf):
            assert other_csrf != csrf
            crossed = client.put(
                "/v1/facts/k", json={"value": "v"}, headers={"x-csrf-token": other_csrf}
            )
            assert crossed.status_code == 403
        # a bearer key still works as before, with no CSRF token (no cookie involved)
        keyed = console.client("acme", "write").put("/v1/facts/k2", json={"value": "v"})
        assert keyed.status_code == 200


# POST routes a read key may call: they search, retrieve, generate or count, and store nothing
READ_LEVEL_POSTS = {
    "/v1/facts/search",
    "/v1/memories/search",
    "/v1/docs/search",
    "/v1/rag/context",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/v1/llm/generate",
    "/v1/llm/code-assist",
    "/v1/llm/complete",
    "/v1/tokenize",
    "/v1/chunk",
}
UNSAFE = {"post", "put", "patch", "delete"}


def test_a_read_keys_session_reaches_no_state_changing_route(console: RunningGateway) -> None:
    console.client("acme", "write").put("/v1/facts/seeded", json={"value": "stays"})
    spec = console.app.openapi()
    routes = [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/v1/")
        for method in operations
        if method in UNSAFE and not (method == "post" and path in READ_LEVEL_POSTS)
    ]
    for known in ("/v1/models/{name}/promote", "/v1/keys", "/v1/learning/train", "/v1/docs"):
        assert ("POST", known) in routes
    assert len(routes) >= 15
    with signed_in(console, "acme", "read") as (client, csrf):
        for method, path in routes:
            url = re.sub(r"\{[^}]+\}", "seeded", path)
            resp = client.request(method, url, json={}, headers={"x-csrf-token": csrf})
            assert resp.status_code == 403, (method, path, resp.status_code, resp.text[:200])
        # the read session's pages show no control that changes state
        memory = client.get("/console/memory").text
        assert 'id="fact-new"' not in memory
        assert "train-now" not in client.get("/console/learning").text
        keys_page = client.get("/console/keys")
        assert keys_page.status_code == 403 and 'id="key-new"' not in keys_page.text
    assert console.client("acme", "read").get("/v1/facts/seeded").json()["value"] == "stays"


def test_revoking_the_key_or_signing_out_ends_the_session(console: RunningGateway) -> None:
    admin = console.client("acme", "admin")
    made = admin.post("/v1/keys", json={"role": "write"}).json()
    console.keys[("acme", "temp")] = made["key"]
    with signed_in(console, "acme", "temp") as (client, csrf):
        assert client.get("/v1/facts").status_code == 200
        assert admin.delete(f"/v1/keys/{made['key_id']}").status_code == 204
        deadline = time.monotonic() + 10
        while client.get("/v1/facts").status_code != 401:
            assert time.monotonic() < deadline, "a revoked key's session still works"
            time.sleep(0.05)
        assert client.get("/console/memory").status_code == 303
    with signed_in(console, "acme", "write") as (client, csrf):
        # signing in again from the same browser ends the session it had
        again = client.post("/console/signin", data={"api_key": console.key("acme", "read")})
        assert again.status_code == 303
        assert client.get("/v1/facts").status_code == 401
        fresh = SimpleCookie(again.headers["set-cookie"])[COOKIE].value
        client.headers["cookie"] = f"{COOKIE}={fresh}"
        assert client.get("/v1/facts").status_code == 200
        page = client.get("/console/memory").text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        refused = client.post("/console/signout", data={"csrf_token": "wrong"})
        assert refused.status_code == 403
        assert client.get("/v1/facts").status_code == 200
        out = client.post("/console/signout", data={"csrf_token": csrf})
        assert out.status_code == 303
        assert SimpleCookie(out.headers["set-cookie"])[COOKIE].value == ""
        assert client.get("/v1/facts").status_code == 401


def test_pages_forbid_other_origins_and_assets_ship_with_the_package(
    console: RunningGateway,
) -> None:
    with signed_in(console, "acme", "operator") as (client, _):
        for slug in (
            "overview",
            "memory",
            "suggestions",
            "learning",
            "models",
            "calculator",
            "keys",
        ):
            page = client.get(f"/console/{slug}")
            assert page.status_code == 200, slug
            csp = page.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "connect-src 'self'" in csp
            assert page.headers["x-frame-options"] == "DENY"
            # every script and stylesheet is the gateway's own
            for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
                assert src.startswith(("/", "#", "data:")), (slug, src)
        for asset in ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css", "console.js"):
            assert client.get(f"/console/static/{asset}").status_code == 200


def test_the_calculator_page_runs_the_training_memory_estimator(console: RunningGateway) -> None:
    from hivemind_common.train_estimate import ModelShape, estimate_memory
    from hivemind_gateway.console.calculator import BASES

    with signed_in(console, "acme", "read") as (client, _):
        page = client.get(
            "/console/calculator",
            params={
                "base": "Qwen2.5-Coder-7B",
                "mode": "qlora",
                "optimizer": "adamw",
                "dtype": "bfloat16",
                "device": "cuda",
                "seq_len": "2048",
                "batch": "2",
                "lora_rank": "16",
                "checkpointing": "on",
            },
        )
        assert page.status_code == 200
        expected = estimate_memory(
            ModelShape.from_hf_config(BASES["Qwen2.5-Coder-7B"]),
            mode="qlora",
            optimizer="adamw",
            dtype="bfloat16",
            device="cuda",
            seq_len=2048,
            batch=2,
            lora_rank=16,
            checkpointing=True,
        )
        assert f"{expected.total / 1048576:,.0f} MiB" in page.text
        bad = client.get("/console/calculator", params={"batch": "0", "mode": "nope"})
        assert bad.status_code == 200 and "batch must be a whole number" in bad.text
        assert "mode must be one of" in bad.text


def test_rag_history_counts_each_verdict_per_bucket(console: RunningGateway) -> None:
    writer = console.client("acme", "write")
    writer.put("/v1/facts/deploy.day", json={"value": "Deploys happen on Thursday afternoons"})
    for query in ("which day do deploys happen", "when is the deploy", "zebra quantum flux"):
        assert writer.post("/v1/rag/context", json={"query": query}).status_code == 200
    history = writer.get("/v1/rag/history", params={"hours": 2, "bucket_s": 600}).json()
    assert history["bucket_s"] == 600
    assert len(history["buckets"]) in (12, 13)
    totals = {
        q: sum(b[q] for b in history["buckets"]) for q in ("good", "weak", "miss", "fallback")
    }
    assert sum(totals.values()) == 3
    other = console.client("other", "read").get("/v1/rag/history").json()
    assert sum(b[q] for b in other["buckets"] for q in totals) == 0  # tenants stay apart
    too_many = writer.get("/v1/rag/history", params={"hours": 500, "bucket_s": 60})
    assert too_many.status_code == 400
    assert writer.get("/v1/rag/history", params={"hours": "nan"}).status_code in (400, 422)


@pytest.mark.parametrize(("role", "sees"), [("operator", True), ("admin", False)])
def test_suite_wide_stats_sections_are_for_operators(
    console: RunningGateway, role: str, sees: bool
) -> None:
    stats = console.client("acme", role).get("/v1/stats").json()
    assert stats["redis"]["topology"] == "standalone"
    assert ("nodes" in stats["redis"]) is sees
    assert ("total" in stats["requests"]) is sees
    assert ("free_bytes" in stats["disk"]) is sees


def test_odd_input_to_the_console_is_refused_not_a_500(console: RunningGateway) -> None:
    boundary = "X"
    body = (  # a UTF-7 form field decodes to a lone surrogate, which could not be hashed
        f'--{boundary}\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n'
        f"hm_a_+2AA-\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"content-type": f"multipart/form-data; charset=utf-7; boundary={boundary}"}
    with httpx.Client(base_url=console.url, timeout=30) as anon:
        r = anon.post("/console/signin", content=body, headers=headers)
        assert r.status_code in (400, 401, 422) or (r.status_code == 200 and "sign" in r.text)
        # the same surrogate in the key id, which names a Redis key: its encoding raised a 500
        in_id = body.replace(b"hm_a_+2AA-", b"hm_+2AA-_x")
        r = anon.post("/console/signin", content=in_id, headers=headers)
        assert r.status_code == 401 and "malformed API key" in r.text, r.text
        # an Origin (or Referer) that is not a URL at all: another site, not a 500
        for name in ("origin", "referer"):
            r = anon.post("/console/signin", data={"api_key": "x"}, headers={name: "http://[::1"})
            assert r.status_code == 403, (name, r.status_code)
        # a cookie whose session id ends in a newline ("$" matched before it): not a 400
        cookie = {"cookie": f'{COOKIE}="{"a" * 43}\\012"'}
        assert anon.get("/v1/facts", headers=cookie).status_code == 401
        assert anon.get("/console/signin", headers=cookie).status_code == 200
    with signed_in(console, "acme", "read") as (client, _):
        page = client.get("/console/calculator", params={"seq_len": "\u00b2"})  # isdigit()
        assert page.status_code == 200 and "seq len must be a whole number" in page.text


def test_pages_keep_no_copies_in_the_browsers_storage(console: RunningGateway) -> None:
    """htmx kept the last ten pages (facts, memories, a new key, the CSRF token) in
    sessionStorage for its back button, whatever no-store said."""
    import json as json_lib

    with signed_in(console, "acme", "read") as (client, _):
        page = client.get("/console/memory").text
    found = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", page)
    assert found, page[:400]
    config = json_lib.loads(found.group(1))
    assert config["historyCacheSize"] == 0 and config["refreshOnHistoryMiss"] is True
