"""Body caps are enforced before anything parses a body, on a real uvicorn server."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import Request

from hivemind_common.body_limit import BodyLimits

MIB = 1024 * 1024
JSON = {"content-type": "application/json"}


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _declared_only(url: str, method: str, path: str, length: int) -> tuple[int, dict, Any]:
    """Send headers declaring ``length`` bytes, and no body at all; read the answer."""
    host, port = _address(url)
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        status, headers, body = _read_response(sock)
    return status, headers, json.loads(body)


def test_a_declared_two_gigabyte_chat_body_is_refused_before_any_of_it_is_sent(gateway) -> None:
    status, headers, body = _declared_only(gateway.url, "POST", "/v1/chat/completions", 2**31)
    assert status == 413
    assert headers["connection"] == "close"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "payload_too_large"
    assert str(2**31) in body["error"]["message"]


def test_a_declared_oversized_native_body_is_refused_as_a_problem_document(gateway) -> None:
    status, headers, body = _declared_only(gateway.url, "PUT", "/v1/facts/some.key", 2 * MIB)
    assert status == 413
    assert headers["content-type"].startswith("application/problem+json")
    assert body["code"] == "payload_too_large"
    assert body["instance"] == "/v1/facts/some.key"


def test_a_declared_oversized_anthropic_body_is_refused_in_anthropics_envelope(gateway) -> None:
    status, _, body = _declared_only(gateway.url, "POST", "/v1/messages", 2**31)
    assert status == 413
    assert body["type"] == "error"
    assert body["error"]["type"] == "request_too_large"


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _offer_chunked(url: str, key: str | None) -> tuple[int, dict[str, Any], int]:
    """Offer 128 MiB of chunked body; (status, answer, bytes the server took before it)."""
    host, port = _address(url)
    frame = _chunk(b"x" * MIB)
    offered = 128 * MIB
    sent = 0
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n{auth}"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.setblocking(False)
        pending = memoryview(frame)
        answered = False
        while sent < offered:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                answered = True
                break
            assert writable, "the server neither answered nor read within 30 s"
            try:
                n = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                answered = True  # closed on us: the answer is already waiting
                break
            sent += n
            pending = pending[n:]
            if not pending:
                pending = memoryview(frame)
        assert answered, f"the server read all {sent} bytes without answering"
        sock.setblocking(True)
        status, _, body = _read_response(sock)
    return status, json.loads(body), sent


def test_an_endless_chunked_body_is_cut_off_long_before_64_mib(gateway) -> None:
    """128 MiB offered without a length, with some key: 413 once the cap is passed."""
    status, body, sent = _offer_chunked(gateway.url, "hm_000000000000_not-a-real-key-at-all")
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert sent < 64 * MIB


def test_an_unauthenticated_chunked_body_is_refused_before_it_is_read(gateway) -> None:
    """No key at all: 401 at once, the body never read (only socket buffers take any)."""
    status, body, sent = _offer_chunked(gateway.url, None)
    assert status == 401
    assert "missing API key" in body["error"]["message"]
    assert sent < 16 * MIB


def test_a_chunked_body_over_a_small_route_cap_is_refused_in_the_route_format(gateway) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"value": "'
        for _ in range(3):  # 3 MiB, over the 1 MiB cap of the facts routes
            yield b"v" * MIB
        yield b'"}'

    with gateway.client() as c:
        resp = c.put("/v1/facts/big.value", content=body(), headers=JSON)
    assert resp.status_code == 413
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "payload_too_large"


def test_bodies_under_the_cap_are_served_as_before(gateway) -> None:
    def body() -> Iterator[bytes]:  # chunked, under the cap
        yield b'{"value": '
        yield json.dumps("v" * 1000).encode()
        yield b"}"

    with gateway.client() as c:
        resp = c.put("/v1/facts/small.value", content=body(), headers=JSON)
        assert resp.status_code == 200, resp.text
        assert c.get("/v1/facts/small.value").json()["value"] == "v" * 1000


@pytest.mark.parametrize(
    ("path", "cap"),
    [
        ("/v1/chat/completions", 8),
        ("/v1/facts", 1),
        ("/v1/facts/a/b", 1),
        ("/v1/factsheet", 4),  # a prefix only counts up to a '/'
        ("/v1/memories/batch", 2),
        ("/v1/docs", 4),
    ],
)
def test_the_longest_matching_route_prefix_sets_the_cap(path: str, cap: int) -> None:
    limits = BodyLimits.of(4, [("/v1/facts", 1), ("/v1/chat/completions", 8), ("/v1/memories", 2)])
    assert limits.cap_for(path) == cap


def test_every_gateway_route_family_has_its_cap_from_settings(tmp_path) -> None:
    from hivemind_gateway.settings import GatewaySettings

    settings = GatewaySettings(
        data_dir=tmp_path,
        max_body_bytes=5000,
        max_body_bytes_chat=6000,
        max_body_bytes_completions=7000,
        max_body_bytes_embeddings=8000,
        max_body_bytes_facts=9000,
        max_body_bytes_memories=10000,
        max_body_bytes_learning=11000,
    )
    limits = settings.body_limits()
    assert limits.cap_for("/v1/chat/completions") == 6000
    assert limits.cap_for("/v1/messages") == 6000
    assert limits.cap_for("/v1/completions") == 7000
    assert limits.cap_for("/v1/embeddings") == 8000
    assert limits.cap_for("/v1/facts/x") == 9000
    assert limits.cap_for("/v1/memories/search") == 10000
    assert limits.cap_for("/v1/sessions/s1/context") == 10000
    assert limits.cap_for("/v1/learning/samples") == 11000
    assert limits.cap_for("/v1/rag/context") == 5000


def test_an_oversized_body_to_an_internal_service_is_refused_too(tmp_path) -> None:
    """Every service built on base_app gets the layer (here with a tiny default cap)."""
    from hivemind_common.service_app import base_app
    from support.servers import serve_app

    app = base_app(service="probe", body_limits=BodyLimits.of(1024))

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    with serve_app(app) as url:
        assert httpx.post(url + "/echo", content=b"x" * 100).json() == {"read": 100}
        resp = httpx.post(url + "/echo", content=iter([b"x" * 800, b"x" * 800]))
        assert resp.status_code == 413
        assert resp.json()["code"] == "payload_too_large"
