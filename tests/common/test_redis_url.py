"""HIVEMIND_REDIS_URL: the four forms of SPEC.md parse, anything else is refused with a reason."""

from __future__ import annotations

import pytest

from hivemind_common.errors import Invalid
from hivemind_common.redis import connect_redis, parse_redis_url


def test_standalone_url_with_acl_user_password_and_db() -> None:
    t = parse_redis_url("redis://app:s%40cret@10.0.0.5:6380/3")
    assert (t.topology, t.nodes, t.db) == ("standalone", (("10.0.0.5", 6380),), 3)
    assert (t.username, t.password, t.tls) == ("app", "s@cret", False)
    assert t.wait_replicas == 0  # no replicas assumed: durable writes skip WAIT


def test_password_only_userinfo_is_the_default_user_password() -> None:
    t = parse_redis_url("redis://:pw@h:1/0")
    assert (t.username, t.password) == (None, "pw")
    t = parse_redis_url("redis://pw@h:1")
    assert (t.username, t.password) == (None, "pw")


def test_rediss_passes_tls_options_through() -> None:
    t = parse_redis_url(
        "rediss://h:6379/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required&ssl_check_hostname=false"
    )
    kw = t.connection_kwargs()
    assert kw["ssl"] is True
    assert kw["ssl_ca_certs"] == "/etc/ca.pem"
    assert kw["ssl_cert_reqs"] == "required"
    assert kw["ssl_check_hostname"] is False


def test_cluster_url_lists_every_startup_node_and_waits_for_one_replica() -> None:
    t = parse_redis_url("redis+cluster://u:p@a:7000,b:7001,c:7002")
    assert t.topology == "cluster"
    assert t.nodes == (("a", 7000), ("b", 7001), ("c", 7002))
    assert (t.username, t.password, t.wait_replicas, t.wait_timeout_ms) == ("u", "p", 1, 500)


def test_sentinel_url_names_the_service_and_optionally_the_db() -> None:
    t = parse_redis_url("redis+sentinel://u:p@s1:26379,s2:26380/mymaster/2?wait_timeout_ms=250")
    assert (t.topology, t.service, t.db) == ("sentinel", "mymaster", 2)
    assert t.nodes == (("s1", 26379), ("s2", 26380))
    assert (t.wait_replicas, t.wait_timeout_ms) == (1, 250)
    assert parse_redis_url("redis+sentinel://s1:26379/m?db=4").db == 4


def test_query_options_tune_durability_and_timeouts() -> None:
    t = parse_redis_url("redis://h:1/0?wait_replicas=2&socket_timeout=1.5&retry_deadline=5")
    assert (t.wait_replicas, t.socket_timeout, t.retry_deadline) == (2, 1.5, 5.0)


def test_password_is_not_in_the_repr() -> None:
    assert "hunter2" not in repr(parse_redis_url("redis://u:hunter2@h:1/0"))
    assert "hunter2" not in repr(connect_redis("redis+cluster://u:hunter2@h:1"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("localhost:6379", "must look like"),
        ("http://h:1", "unsupported scheme"),
        ("redis://h:notaport/0", "port must be"),
        ("redis://h:70000/0", "port must be"),
        ("redis://h:1/abc", "db must be"),
        ("redis://h:1/99", "db must be"),
        ("redis://a:1,b:2/0", "exactly one host"),
        ("redis+cluster://a:1,b:2/5", "only database 0"),
        ("redis+cluster://a:1,,b:2", "empty host"),
        ("redis+sentinel://s:26379", "name the Sentinel service"),
        ("redis+sentinel://s:26379/m/1/x", "path must be"),
        ("redis://h:1/0?colour=blue", "unknown option"),
        ("redis://h:1/0?wait_timeout_ms=0", "wait_timeout_ms must be"),
        ("redis://h:1/0?ssl_ca_certs=/x", "TLS options need a rediss"),
        ("rediss://h:1/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be"),
        ("redis://:1/0", "missing host"),
    ],
)
def test_bad_urls_are_refused_with_a_clear_reason(url: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason) as info:
        connect_redis(url)
    assert info.value.status == 400


def test_connect_does_no_io() -> None:
    client = connect_redis("redis+sentinel://127.0.0.1:9/nothing-listens-here")
    assert client.topology == "sentinel"
    client = connect_redis("redis+cluster://127.0.0.1:9")
    assert client.topology == "cluster"


def test_non_ascii_digits_and_repeated_options_are_refused() -> None:
    for url in (
        "redis://h:\u00b9/0",  # a superscript one: str.isdigit() says yes, int() says no
        "redis://h:6379/0?wait_replicas=\u00b2",
        "redis://h:6379/0?durability=strong&durability=available",
    ):
        with pytest.raises(Invalid):
            parse_redis_url(url)
