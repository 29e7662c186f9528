"""ACL users and TLS (``rediss://``) against real servers; configuration errors are not retried."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis import exceptions as rex

from hivemind_common.redis import connect_redis
from support.redis_servers import RedisProcess, redis_server_binary, start_redis
from support.waiting import free_port, wait_until


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if subject == issuer[0]:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, False)
    return builder.sign(issuer[1], hashes.SHA256())


def _write_pki(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _cert("hivemind-test-ca", ca_key, ("hivemind-test-ca", ca_key))
    server = _cert("127.0.0.1", server_key, ("hivemind-test-ca", ca_key))
    paths = {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, dict[str, Path]]]:
    """A redis-server that speaks only TLS, with a certificate for 127.0.0.1 from a test CA."""
    pki = _write_pki(tmp_path / "pki")
    port = free_port()
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            *("--port", "0", "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""),
            *("--tls-port", str(port), "--tls-auth-clients", "no"),
            *("--tls-cert-file", str(pki["cert"]), "--tls-key-file", str(pki["key"])),
            *("--tls-ca-cert-file", str(pki["ca"])),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisProcess(port=port, directory=tmp_path, process=proc)
    try:

        def answers() -> bool:
            with redis.Redis("127.0.0.1", port, ssl=True, ssl_ca_certs=str(pki["ca"])) as c:
                return bool(c.ping())

        wait_until(answers, timeout=10, what="TLS redis")
        yield port, pki
    finally:
        server.stop()


async def test_rediss_url_with_the_ca_from_the_query_talks_tls(
    tls_server: tuple[int, dict[str, Path]],
) -> None:
    port, pki = tls_server
    r = connect_redis(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pki['ca']}")
    try:
        await r.set("hm:{t:a}:tls", "yes")
        assert await r.get("hm:{t:a}:tls") == "yes"
        assert list(await r.transaction(("HSET", "hm:{t:a}:h", "f", "v"))) == [1]
    finally:
        await r.aclose()


async def test_a_certificate_that_does_not_verify_fails_at_once_without_retries(
    tls_server: tuple[int, dict[str, Path]],
) -> None:
    port, _ = tls_server
    r = connect_redis(f"rediss://127.0.0.1:{port}/0")  # system CAs do not know the test CA
    try:
        started = time.monotonic()
        with pytest.raises(rex.ConnectionError):
            await r.get("hm:{t:a}:x")
        assert time.monotonic() - started < 5
        assert r.stats.retried_operations == 0
    finally:
        await r.aclose()


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis(tmp_path / "acl")
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "app", "on", ">s3cret-pw", "~hm:*", "+@all")
    try:
        yield server
    finally:
        server.stop()


async def test_acl_user_and_password_from_the_url_are_used(acl_server: RedisProcess) -> None:
    r = connect_redis(f"redis://app:s3cret-pw@127.0.0.1:{acl_server.port}/0")
    try:
        await r.set("hm:{t:a}:acl", "1")
        assert await r.acl_whoami() == "app"
        with pytest.raises(rex.NoPermissionError):
            await r.set("outside:the:prefix", "1")
        assert r.stats.retried_operations == 0
    finally:
        await r.aclose()


async def test_a_wrong_password_is_refused_at_once_without_retries(
    acl_server: RedisProcess,
) -> None:
    r = connect_redis(f"redis://app:wrong@127.0.0.1:{acl_server.port}/0")
    try:
        with pytest.raises(rex.AuthenticationError):
            await r.get("hm:{t:a}:x")
        assert r.stats.retried_operations == 0
    finally:
        await r.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_acl_user_in_a_cluster_or_sentinel_url_is_used_on_every_data_node(
    topology: str, request: pytest.FixtureRequest
) -> None:
    group = request.getfixturevalue(f"redis_{topology}")
    request.getfixturevalue(f"redis_{topology}_url")  # flushed
    data_nodes = group.nodes if topology == "cluster" else group.servers
    for node in data_nodes:  # per node and not persisted: made here, removed below
        with node.client() as admin:
            admin.execute_command("ACL", "SETUSER", "app", "on", ">s3cret-pw", "~hm:*", "+@all")
    scheme, rest = group.url.split("://", 1)
    r = connect_redis(f"{scheme}://app:s3cret-pw@{rest}")
    try:
        for i in range(10):  # spread over every cluster primary
            await r.set(f"hm:{{t:{i}}}:acl", str(i))
        assert await r.acl_whoami() == "app"
        assert (await r.transaction(("SET", "hm:{t:a}:acl", "x"), durable=True)).acknowledged
        with pytest.raises(rex.NoPermissionError):
            await r.set("outside:the:prefix", "1")
    finally:
        await r.aclose()
        for node in data_nodes:
            with node.client() as admin:
                admin.execute_command("ACL", "DELUSER", "app")


@pytest.mark.slow
async def test_wrong_sentinel_credentials_fail_at_once_without_retries(
    redis_sentinel_url: str,
) -> None:
    r = connect_redis(f"{redis_sentinel_url}?sentinel_username=nobody&sentinel_password=nope")
    try:
        started = time.monotonic()
        with pytest.raises(rex.AuthenticationError):
            await r.get("hm:{t:a}:x")
        assert time.monotonic() - started < 5
        assert r.stats.retried_operations == 0
    finally:
        await r.aclose()
