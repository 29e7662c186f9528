"""The transaction's own packer writes exactly the bytes redis-py writes, and hands anything
else back to redis-py."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from hivemind_common.redis.transaction import pack, resp

args = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
names = st.sampled_from(["HSET", "ZADD", "SCRIPT LOAD", "EXPIRE", b"GET", b"CLIENT SETNAME"])
commands = st.lists(st.tuples(names, st.lists(args, max_size=6)), min_size=1, max_size=8)


def _redis_py(cmds: list[tuple[Any, ...]]) -> bytes:
    return b"".join(Connection().pack_commands(cmds))


@settings(max_examples=300, deadline=None)
@given(commands)
def test_the_packer_writes_what_redis_py_writes(drawn: list[tuple[Any, list[Any]]]) -> None:
    cmds = [(name, *rest) for name, rest in drawn]
    assert resp(cmds) == _redis_py(cmds)


def test_other_argument_types_are_left_to_redis_py() -> None:
    conn = Connection()
    for odd in (True, memoryview(b"ab"), bytearray(b"ab"), None, [1]):
        cmds = [("SET", "k", odd)]
        assert resp(cmds) is None
        try:
            expected: Any = conn.pack_commands(cmds)
        except Exception as exc:  # redis-py refuses it: so must pack
            try:
                pack(conn, cmds)
            except type(exc):
                continue
            raise AssertionError(f"{odd!r} packed; redis-py refuses it") from exc
        assert pack(conn, cmds) == expected


class _Conn:
    """A connection whose WAIT reply never comes (redis-py answers such a read with None)."""

    host, port, socket_timeout = "fake", 6379, 0.1

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies

    async def send_packed_command(self, packed: Any, check_health: bool = True) -> None:
        return None

    async def read_response(self, timeout: float | None = None, **_: Any) -> Any:
        return self.replies.pop(0) if self.replies else None


class _Backend:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.short_of_replicas: dict[str, Any] = {}
        self.released: list[bool] = []

    async def primary_connection(self, slot: int) -> tuple[_Conn, Any]:
        async def release(broken: bool) -> None:
            self.released.append(broken)

        return self.conn, release

    async def on_error(self, exc: BaseException, client: Any) -> None:
        return None

    def current(self) -> Any:
        return None


def test_an_unanswered_wait_drops_the_connection() -> None:
    """The WAIT after EXEC that does not answer in time: the connection is released as broken
    (its late reply would otherwise be read as the next request's), and the write fails as a
    timeout rather than a 500."""
    import asyncio

    import pytest
    from redis import exceptions as rex

    from hivemind_common.redis.transaction import run_transaction

    backend = _Backend(_Conn(["OK", "QUEUED", [1]]))
    with pytest.raises(rex.TimeoutError):
        asyncio.run(
            run_transaction(
                backend,  # type: ignore[arg-type]
                0,
                (("SET", "k", "v"),),
                wait=(1, 10),
                retried=False,
                topology="sentinel",
            )
        )
    assert backend.released == [True]
