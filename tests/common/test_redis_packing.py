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
