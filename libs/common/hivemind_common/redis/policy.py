"""Which Redis operations may be repeated after a failure, and the bounded backoff between tries.

The rule (one place, used by single commands and by transactions):

- An error that proves the command was never applied (connection refused, no primary known,
  READONLY, CLUSTERDOWN, TRYAGAIN, LOADING, MOVED/ASK inside MULTI, no free connection) makes
  *any* operation safe to retry.
- An error with an unknown outcome (connection reset or timeout after the command was sent) is
  retried only when every command is idempotent: repeating it leaves the same state. Counting
  commands (INCR*, *PUSH, *POP, APPEND), ``SET … NX|GET``, ``XADD`` with an automatic ``*`` id,
  ``XREADGROUP`` with ``>``, scripts and ``PUBLISH`` are not; ``SET``, ``HSET``, ``DEL``,
  ``SADD``, ``ZADD`` (without ``INCR``), ``EXPIRE``, ``XADD`` with an explicit id, ``XACK`` and
  every read are. A retried idempotent write may report a different count (``HSET`` → 0).
- Retries back off exponentially (20 ms doubling to 500 ms, with jitter) until the target's
  ``retry_deadline`` (30 s by default, long enough for a Sentinel or Cluster failover).
- What the caller then sees: :class:`~hivemind_common.errors.Unavailable` (503) when the
  deadline passed or a non-idempotent command was cut off mid-flight (it may have run);
  redis-py's own error for everything else (WRONGTYPE, NOPERM, wrong password, a TLS
  certificate that does not verify), never retried.
- A durable transaction under ``?durability=strong`` that no replica acknowledged
  (:class:`NotReplicated`) counts as a failure: refused before it ran when the primary is known
  to lack replicas (safe to repeat anything), else retried only when idempotent; the caller then
  sees :class:`~hivemind_common.errors.Unavailable` (503 with ``Retry-After``), never success.
- Blocking reads (``XREAD``/``XREADGROUP`` ``block=``, ``BLPOP``) must block for less than the
  socket timeout (5 s, ``?socket_timeout=``), or the read times out and counts as a failure.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Histogram
from redis import exceptions as rex
from redis.asyncio.sentinel import MasterNotFoundError

RETRIED_OPERATIONS = Counter(
    "hivemind_redis_retried_operations_total",
    "Redis operations that failed once and were tried again, by topology and error kind.",
    ["topology", "kind"],
)
FAILED_OPERATIONS = Counter(
    "hivemind_redis_failed_operations_total",
    "Redis operations that still failed after the retry policy gave up.",
    ["topology"],
)
WAIT_SECONDS = Histogram(
    "hivemind_redis_wait_seconds",
    "Time spent in WAIT after a durable transaction.",
    ["topology"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
WAIT_SHORTFALL = Counter(
    "hivemind_redis_wait_shortfall_total",
    "Durable transactions whose WAIT timed out before enough replicas acknowledged.",
    ["topology"],
)


class NotReplicated(Exception):
    """A durable write (``?durability=strong``) that fewer replicas acknowledged than wanted.

    ``applied`` says whether the primary ran it: False when it was refused beforehand because the
    primary has too few replicas connected (nothing written, safe to repeat), True when ``WAIT``
    fell short after ``EXEC`` (on the primary only; a failover now could lose it).
    """

    def __init__(self, node: str, replicas: int, wanted: int, *, applied: bool) -> None:
        self.node, self.replicas, self.wanted, self.applied = node, replicas, wanted, applied
        done = "written on" if applied else "refused by"
        super().__init__(
            f"{done} primary {node} with {replicas} of {wanted} replica acknowledgement(s)"
        )


# Errors whose presence proves the server did not apply the command.
REJECTED_ERRORS: tuple[type[BaseException], ...] = (
    rex.ReadOnlyError,
    rex.ClusterDownError,
    rex.TryAgainError,
    rex.BusyLoadingError,
    MasterNotFoundError,
    rex.SlotNotCoveredError,
    rex.MaxConnectionsError,
    rex.AskError,  # MovedError is a subclass
)
# Errors after which the outcome is unknown but the node or topology may have changed.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)
# Errors that never heal by retrying, even though they subclass ConnectionError.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    rex.AuthenticationError,
    rex.AuthorizationError,
    rex.AuthenticationWrongNumberOfArgsError,
    rex.NoPermissionError,
    ssl.SSLCertVerificationError,
)

_NOT_IDEMPOTENT = frozenset(
    {
        "INCR",
        "INCRBY",
        "INCRBYFLOAT",
        "DECR",
        "DECRBY",
        "HINCRBY",
        "HINCRBYFLOAT",
        "ZINCRBY",
        "APPEND",
        "LPUSH",
        "RPUSH",
        "LPUSHX",
        "RPUSHX",
        "LINSERT",
        "LPOP",
        "RPOP",
        "LMOVE",
        "BLMOVE",
        "RPOPLPUSH",
        "BRPOPLPUSH",
        "BLPOP",
        "BRPOP",
        "LMPOP",
        "BLMPOP",
        "SPOP",
        "SMOVE",
        "ZPOPMIN",
        "ZPOPMAX",
        "BZPOPMIN",
        "BZPOPMAX",
        "ZMPOP",
        "BZMPOP",
        "GETDEL",
        "GETSET",
        "GETEX",
        "SETNX",
        "HSETNX",
        "MSETNX",
        "RENAME",
        "RENAMENX",
        "PUBLISH",
        "SPUBLISH",
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "SCRIPT",
        "FUNCTION",
        "XAUTOCLAIM",
        "XCLAIM",
        "XGROUP",
        "XSETID",
        "PFADD",
        "SETRANGE",
        "COPY",
        "RESTORE",
        "MULTI",
        "EXEC",
        "WATCH",
        "FLUSHALL",
        "FLUSHDB",
        "LOCK",
        "SORT",
        "MIGRATE",
    }
)
# redis-py method names that differ from the command they send.
_METHOD_TO_COMMAND = {
    "delete": "DEL",
    "set_": "SET",
    "zincrby": "ZINCRBY",
    "incr": "INCR",
    "decr": "DECR",
}


def command_name(method: str, args: Sequence[Any]) -> str:
    """The Redis command a wrapped method or ``execute_command`` call sends, upper case."""
    if method == "execute_command" and args:
        first = args[0]
        return (first.decode() if isinstance(first, bytes) else str(first)).split(" ")[0].upper()
    return _METHOD_TO_COMMAND.get(method, method).upper()


def raw_name(cmd: Sequence[Any]) -> str:
    """The command name of a raw command tuple (``("HSET", key, ...)``), upper case."""
    first = cmd[0]
    return (first.decode() if isinstance(first, bytes) else str(first)).upper()


def _upper_args(args: Sequence[Any]) -> list[str]:
    return [a.upper() if isinstance(a, str) else "" for a in args]


def is_idempotent(
    name: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    raw: bool = False,
) -> bool:
    """Whether repeating this command after an unknown outcome leaves the same state.

    ``args``/``kwargs`` are those of redis-py's method, or with ``raw=True`` the words after the
    command name in a raw call (``execute_command``, transaction tuples).
    """
    kwargs = kwargs or {}
    if name in _NOT_IDEMPOTENT:
        return False
    words = _upper_args(args)
    if name == "SET":
        return not (kwargs.get("nx") or kwargs.get("get") or "NX" in words or "GET" in words)
    if name == "ZADD":
        return not (kwargs.get("incr") or "INCR" in words)
    if name == "XADD":
        if raw:
            stream_id = _raw_xadd_id(list(args))
        else:  # xadd(name, fields, id="*", ...)
            stream_id = kwargs.get("id", args[2] if len(args) > 2 else "*")
        return stream_id not in ("*", b"*")
    if name == "XREADGROUP":
        if raw:
            return ">" not in words
        streams = kwargs.get("streams", args[2] if len(args) > 2 else {}) or {}
        return all(v not in (">", b">") for v in streams.values())
    return True


def _raw_xadd_id(args: list[Any]) -> Any:
    """The id of a raw ``XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] n [LIMIT c]] id f v …`` call."""
    i = 1
    words = _upper_args(args)
    while i < len(args):
        w = words[i]
        if w == "NOMKSTREAM":
            i += 1
        elif w in ("MAXLEN", "MINID"):
            i += 2 if words[i + 1] not in ("=", "~") else 3
        elif w == "LIMIT":
            i += 2
        else:
            return args[i]
    return "*"


def never_applied(exc: BaseException) -> bool:
    """True when the error proves the server did not run the command (safe to repeat anything)."""
    if isinstance(exc, REJECTED_ERRORS):
        return True
    if isinstance(exc, NotReplicated):
        return not exc.applied
    return any(isinstance(c, ConnectionRefusedError) for c in _causes(exc))


def _causes(exc: BaseException) -> list[BaseException]:
    """The error and what it was raised from (redis-py wraps socket and TLS errors)."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not c for c in chain):
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return chain


def is_retryable(exc: BaseException) -> bool:
    """Errors that a failover or a moved slot can cause; anything else goes to the caller.

    Wrong credentials, missing ACL permissions and a TLS certificate that does not verify are
    configuration errors: no retry heals them.
    """
    if any(isinstance(c, PERMANENT_ERRORS) for c in _causes(exc)):
        return False
    return isinstance(exc, REJECTED_ERRORS + TRANSIENT_ERRORS + (NotReplicated,))


def error_kind(exc: BaseException) -> str:
    """A low-cardinality label for the metrics."""
    return type(exc).__name__


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before try number ``attempt + 1``: 20 ms doubling to 500 ms, ±25 % jitter."""
    base = min(0.5, 0.02 * (2 ** min(attempt, 10)))
    return base * random.uniform(0.75, 1.25)
