"""MULTI/EXEC (and WAIT) on one primary connection, sent as one packet.

``WAIT`` counts the replicas that acknowledged everything written *on its own connection*, so it
must follow ``EXEC`` on the connection that ran the transaction; sending MULTI, the commands,
EXEC and WAIT in one packet costs one round trip plus the replication wait.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from redis import exceptions as rex

from hivemind_common.redis import policy
from hivemind_common.redis.topology import Backend

log = logging.getLogger(__name__)

REPLICA_RECHECK_S = 5.0  # how long a primary short of replicas is noted as such


class TransactionResult(list[Any]):
    """The EXEC replies, in order, plus what the durable wait saw.

    ``replicas`` is ``None`` when no WAIT ran, else the number of replicas that acknowledged
    within the bound; ``acknowledged`` is False when that is fewer than asked for.
    """

    replicas: int | None = None
    wanted_replicas: int = 0
    wait_ms: float = 0.0

    @property
    def acknowledged(self) -> bool:
        return self.replicas is None or self.replicas >= self.wanted_replicas


def _explicit_xadd(cmd: tuple[Any, ...]) -> bool:
    return policy.raw_name(cmd) == "XADD" and policy.is_idempotent("XADD", cmd[1:], raw=True)


def resp(
    commands: list[tuple[Any, ...]], encoding: str = "utf-8", errors: str = "strict"
) -> bytes | None:
    """The commands in the Redis protocol, as redis-py's encoder writes them (str in the
    connection's encoding, int and float by ``repr``, bytes as they are), or None for any other
    argument type (redis-py then packs, or refuses, the packet itself). redis-py encodes every
    argument through several calls; a session write's dozen commands spent a sixth of its time
    there (issue 17's profile)."""
    out: list[bytes] = []
    for head, *rest in commands:
        if isinstance(head, str):
            args = head.encode().split()
        elif type(head) is bytes:
            args = head.split() if b" " in head else [head]
        else:
            return None
        for arg in rest:
            kind = type(arg)
            if kind is str:
                args.append(arg.encode(encoding, errors))
            elif kind is bytes:
                args.append(arg)
            elif kind is int or kind is float:
                args.append(repr(arg).encode())
            else:
                return None
        out.append(b"*%d\r\n" % len(args))
        out.extend(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)
    return b"".join(out)


def pack(conn: Any, commands: list[tuple[Any, ...]]) -> Any:
    """What ``conn.send_packed_command`` sends for ``commands``."""
    encoder = getattr(conn, "encoder", None)
    packed = resp(
        commands,
        getattr(encoder, "encoding", "utf-8"),
        getattr(encoder, "encoding_errors", "strict"),
    )
    return packed if packed is not None else conn.pack_commands(commands)


async def _read(conn: Any, timeout: float | None = None) -> Any:
    try:
        return await conn.read_response(timeout=timeout)
    except rex.ResponseError as exc:  # an error reply; the connection itself is fine
        return exc


async def _read_all(conn: Any, count: int) -> list[Any]:
    """``count`` replies under one deadline (the connection's socket timeout) for all of them,
    not one timer per reply: a transaction of a dozen commands set and cancelled a dozen timers,
    a sixth of a session write's time in the gateway (issue 17's profile)."""
    bound = conn.socket_timeout or 5.0
    try:
        async with asyncio.timeout(bound):
            return [await _read(conn, timeout=math.inf) for _ in range(count)]
    except TimeoutError as exc:  # as redis-py words a read that timed out (and retries it)
        raise rex.TimeoutError(f"Timeout reading from {conn.host}:{conn.port}") from exc


def _shape(callbacks: dict[str, Any], cmd: tuple[Any, ...], raw: Any) -> Any:
    """Apply redis-py's reply callback (HGETALL → dict …) when it takes no options."""
    callback = callbacks.get(policy.raw_name(cmd))
    if callback is None:
        return raw
    try:
        return callback(raw)
    except Exception:  # a callback that needs options: keep the raw reply
        return raw


async def run_transaction(
    backend: Backend,
    slot: int,
    commands: tuple[tuple[Any, ...], ...],
    *,
    wait: tuple[int, int] | None,
    retried: bool,
    topology: str,
    strong: bool = False,
) -> TransactionResult:
    """One attempt: MULTI, commands, EXEC[, WAIT n ms]; raises redis errors for the retry policy.

    ``strong`` (``?durability=strong``): a primary known to lack replicas is asked again and, if
    still short, the write is refused before it runs; a WAIT that falls short raises
    :class:`~hivemind_common.redis.policy.NotReplicated` instead of returning the result.
    """
    conn, release = await backend.primary_connection(slot)
    node = f"{conn.host}:{conn.port}"
    until, connected = backend.short_of_replicas.get(node, (0.0, 0))
    known_short = wait is not None and until > time.monotonic() and connected < wait[0]
    wait_skipped: tuple[int, int] | None = None
    if known_short and not strong:
        wait_skipped, wait = wait, None  # known to lack replicas: don't pay the bound again
    refused: policy.NotReplicated | None = None
    broken = True
    wait_reply: Any = None
    replies: list[Any] = []
    try:
        if known_short and strong and wait is not None:  # has a replica come back?
            connected = await _connected_replicas(conn)
            if connected < wait[0]:
                refused = policy.NotReplicated(node, connected, wait[0], applied=False)
            else:
                backend.short_of_replicas.pop(node, None)
        if refused is None:
            packet: list[tuple[Any, ...]] = [("MULTI",), *commands, ("EXEC",)]
            if wait is not None:
                packet.append(("WAIT", wait[0], wait[1]))
            await conn.send_packed_command(pack(conn, packet), check_health=False)
            replies = await _read_all(conn, len(commands) + 2)
            exec_done = time.perf_counter()
            if wait is not None:
                bound = (conn.socket_timeout or 5.0) + wait[1] / 1000
                wait_reply = await _read(conn, timeout=bound)
                if wait_reply is None:
                    # redis-py answers a read that timed out with None and keeps the connection;
                    # the WAIT reply may still arrive and would be read as the next command's,
                    # so the connection is dropped (broken), never handed to another request
                    raise rex.TimeoutError(f"WAIT unanswered after {bound:.1f}s on {node}")
                wait_s = time.perf_counter() - exec_done
                if isinstance(wait_reply, int) and wait_reply < wait[0]:
                    await _note_replicas(backend, conn, node, wait[0])
        broken = False
    except Exception as exc:
        if policy.is_retryable(exc):
            await backend.on_error(exc, backend.current())
        raise
    finally:
        await release(broken)
    if refused is not None:
        policy.WAIT_SHORTFALL.labels(topology).inc()
        raise refused

    for reply in replies[:-1]:  # MULTI's OK and each QUEUED, or the reason it was refused
        if isinstance(reply, Exception):
            if policy.is_retryable(reply):
                await backend.on_error(reply, backend.current())
            raise reply
    exec_reply = replies[-1]
    if isinstance(exec_reply, Exception):
        raise exec_reply
    callbacks = getattr(backend.current(), "response_callbacks", {}) or {}
    result = TransactionResult()
    for cmd, raw in zip(commands, exec_reply, strict=True):
        if isinstance(raw, Exception):
            if retried and _explicit_xadd(cmd):
                result.append(cmd_id(cmd))  # the first, unacknowledged attempt added it
                continue
            raise raw
        result.append(_shape(callbacks, cmd, raw))
    if wait is not None:
        if isinstance(wait_reply, Exception):
            raise wait_reply
        result.replicas = int(wait_reply)
        result.wanted_replicas = wait[0]
        result.wait_ms = wait_s * 1000
        policy.WAIT_SECONDS.labels(topology).observe(wait_s)
    elif wait_skipped is not None:
        result.replicas, result.wanted_replicas = 0, wait_skipped[0]
    if result.replicas is not None and result.replicas < result.wanted_replicas:
        policy.WAIT_SHORTFALL.labels(topology).inc()
        if strong:
            raise policy.NotReplicated(node, result.replicas, result.wanted_replicas, applied=True)
        if wait_skipped is None:  # a WAIT ran and fell short (a skipped one was logged once)
            log.warning(
                "redis %s: a durable write on %s was acknowledged by %d of %d replica(s) "
                "and returned anyway (durability=available)",
                topology,
                node,
                result.replicas,
                result.wanted_replicas,
            )
    return result


async def _connected_replicas(conn: Any) -> int:
    """``connected_slaves`` of the primary behind ``conn`` (INFO replication)."""
    await conn.send_command("INFO", "replication", check_health=False)
    info = await conn.read_response()
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("connected_slaves:"):
            return int(line.split(":", 1)[1])
    return 0


async def _note_replicas(backend: Backend, conn: Any, node: str, wanted: int) -> None:
    """After a short WAIT: if the primary has fewer replicas connected than wanted (say, its
    replica was just promoted away in a failover), note it for a while: ``available`` writes skip
    WAIT there, ``strong`` writes ask again before writing."""
    connected = await _connected_replicas(conn)
    if connected < wanted:
        until = time.monotonic() + REPLICA_RECHECK_S
        backend.short_of_replicas[node] = (until, connected)
        log.warning(
            "redis primary %s has %d replica(s), durable writes want %d: noted for %.0fs",
            node,
            connected,
            wanted,
            REPLICA_RECHECK_S,
        )


def cmd_id(cmd: tuple[Any, ...]) -> Any:
    """The explicit id of a raw XADD tuple."""
    return policy._raw_xadd_id(list(cmd[1:]))
