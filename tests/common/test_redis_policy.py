"""Which operations the connector repeats after a failure, and when."""

from __future__ import annotations

import pytest
from redis import exceptions as rex

from hivemind_common.redis.policy import (
    backoff_delay,
    command_name,
    is_idempotent,
    is_retryable,
    never_applied,
)


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "expected"),
    [
        ("SET", ("k", "v"), {}, True),
        ("SET", ("k", "v"), {"nx": True}, False),
        ("SET", ("k", "v", "NX", "PX", 100), {}, False),
        ("HSET", ("k", "f", "v"), {}, True),
        ("DEL", ("k",), {}, True),
        ("ZADD", ("k", {"m": 1}), {}, True),
        ("ZADD", ("k", {"m": 1}), {"incr": True}, False),
        ("INCR", ("k",), {}, False),
        ("LPUSH", ("k", "v"), {}, False),
        ("XADD", ("s", {"f": "v"}), {}, False),
        ("XADD", ("s", {"f": "v"}), {"id": "5-1"}, True),
        ("XADD", ("s", {"f": "v"}, "5-1"), {}, True),
        ("XREADGROUP", ("g", "c"), {"streams": {"s": ">"}}, False),
        ("XREADGROUP", ("g", "c"), {"streams": {"s": "0"}}, True),
        ("EVALSHA", ("sha", 0), {}, False),
        ("GET", ("k",), {}, True),
    ],
)
def test_commands_are_classified_by_whether_repeating_them_changes_state(
    name: str, args: tuple[object, ...], kwargs: dict[str, object], expected: bool
) -> None:
    assert is_idempotent(name, args, kwargs) is expected


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("s", "9-1", "f", "v"), True),
        (("s", "*", "f", "v"), False),
        (("s", "MAXLEN", "~", 100, "*", "f", "v"), False),
        (("s", "NOMKSTREAM", "MINID", "5", "LIMIT", 10, "7-1", "f", "v"), True),
    ],
)
def test_raw_xadd_is_idempotent_only_with_an_explicit_id(
    words: tuple[object, ...], expected: bool
) -> None:
    assert is_idempotent("XADD", words, raw=True) is expected
    assert is_idempotent("XREADGROUP", ("GROUP", "g", "c", "STREAMS", "s", ">"), raw=True) is False


def test_method_and_raw_command_names_map_to_redis_commands() -> None:
    assert command_name("delete", ()) == "DEL"
    assert command_name("hset", ()) == "HSET"
    assert command_name("execute_command", ("xadd", "s")) == "XADD"


def test_refused_connection_proves_the_command_never_ran() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as exc:
            raise rex.ConnectionError("Error 111 connecting") from exc
    except rex.ConnectionError as err:
        assert never_applied(err)
    assert never_applied(rex.ReadOnlyError("READONLY"))
    assert not never_applied(rex.ConnectionError("Connection closed by server."))
    assert not never_applied(rex.TimeoutError("Timeout reading"))


def test_failover_errors_are_retryable_but_auth_and_syntax_errors_are_not() -> None:
    for err in (
        rex.ConnectionError(),
        rex.TimeoutError(),
        rex.ClusterDownError("x"),
        rex.TryAgainError(),
    ):
        assert is_retryable(err)
    for err in (rex.AuthenticationError(), rex.ResponseError("WRONGTYPE"), rex.NoPermissionError()):
        assert not is_retryable(err)


def test_backoff_grows_and_stays_bounded() -> None:
    assert backoff_delay(0) < 0.03
    assert all(backoff_delay(n) <= 0.5 * 1.25 for n in range(50))
