"""The audit trail: who changed what, when, from where, and how it ended.

Every state-changing admin and operator action (keys, tenants, train, promote, rollback, cleanup,
imports) is recorded here, by the gateway's routes and by the CLI alike, in one capped stream
(:func:`hivemind_common.keys.audit_stream`) and in the service log. Reads are never recorded.
An entry never carries a secret: the key *id* says who, never the key.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from hivemind_common import keys
from hivemind_common.errors import HivemindError, Invalid
from hivemind_common.redis import HivemindRedis

log = logging.getLogger("hivemind.audit")

OUTCOMES = ("ok", "denied", "failed", "error")
CLI_SOURCE = "cli"
READ_CHUNK = 500  # entries read per round trip while filtering
READ_SCAN_MAX = 20_000  # entries looked at for one page, so a rare filter cannot run forever
_FIELDS = ("ts", "action", "key_id", "tenant", "target", "source", "outcome", "detail")


@dataclass
class AuditEntry:
    """One recorded action; ``id`` is the stream id (its time order is the page cursor)."""

    action: str
    key_id: str
    tenant: str
    source: str
    target: str = ""
    outcome: str = "ok"
    detail: str = ""
    ts: float = field(default_factory=time.time)
    id: str = ""

    def public(self) -> dict[str, Any]:
        return asdict(self)


def cli_actor() -> str:
    """Who runs a CLI command: the local user (the CLI holds Redis itself, no key)."""
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local:unknown"


async def record(redis: HivemindRedis, entry: AuditEntry) -> str:
    """Append ``entry`` to the audit stream and the log; returns its id."""
    fields = {name: str(getattr(entry, name)) for name in _FIELDS}
    fields["ts"] = f"{entry.ts:.3f}"
    entry_id = await redis.xadd(
        keys.audit_stream(), fields, maxlen=keys.AUDIT_MAXLEN, approximate=True
    )
    entry.id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    log.info(
        "audit action=%s outcome=%s key_id=%s tenant=%s target=%s source=%s%s",
        entry.action, entry.outcome, entry.key_id, entry.tenant, entry.target, entry.source,
        f" detail={entry.detail}" if entry.detail else "",
    )  # fmt: skip
    return entry.id


@asynccontextmanager
async def audited(
    redis: HivemindRedis, action: str, *, key_id: str, tenant: str, source: str, target: str = ""
) -> AsyncIterator[AuditEntry]:
    """Record ``action`` when the block ends: ``ok``, ``denied`` (401/403), ``failed`` (another
    of our errors) or ``error`` (anything else), then let the error go on. The block may fill
    in ``target`` and ``detail`` (say, the new key's id) on the entry it is given."""
    entry = AuditEntry(action=action, key_id=key_id, tenant=tenant, source=source, target=target)
    try:
        yield entry
    except HivemindError as exc:
        entry.outcome = "denied" if exc.status in (401, 403) else "failed"
        entry.detail = entry.detail or f"{exc.code}: {exc}"[:300]
        await _record_quietly(redis, entry)
        raise
    except BaseException as exc:
        entry.outcome = "error"
        entry.detail = entry.detail or type(exc).__name__
        await _record_quietly(redis, entry)
        raise
    await record(redis, entry)


def cli_audited(
    redis: HivemindRedis, action: str, *, tenant: str = "", target: str = ""
) -> AbstractAsyncContextManager[AuditEntry]:
    """:func:`audited` for a command run on the host: the local user, from ``cli``."""
    return audited(
        redis, action, key_id=cli_actor(), tenant=tenant, source=CLI_SOURCE, target=target
    )


async def key_tenant(redis: HivemindRedis, key_id: str) -> str:
    """The tenant of an API key by its id ("" when unknown), so a revocation is filed under the
    tenant whose key it was."""
    tenant = await redis.hget(keys.api_key(key_id), "tenant")
    return _decode(tenant) if tenant is not None else ""


async def _record_quietly(redis: HivemindRedis, entry: AuditEntry) -> None:
    # the action's own error matters more than the audit write's; the log still has the entry
    try:
        await record(redis, entry)
    except Exception as exc:
        log.error("audit write failed (%s) for %s", type(exc).__name__, entry.public())


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry_id: Any, raw: dict[Any, Any]) -> AuditEntry:
    f = {_decode(k): _decode(v) for k, v in raw.items()}
    return AuditEntry(
        action=f.get("action", ""),
        key_id=f.get("key_id", ""),
        tenant=f.get("tenant", ""),
        source=f.get("source", ""),
        target=f.get("target", ""),
        outcome=f.get("outcome", ""),
        detail=f.get("detail", ""),
        ts=float(f.get("ts", 0) or 0),
        id=_decode(entry_id),
    )


_MAX_ID_PART = 2**64 - 1  # a stream id is two unsigned 64-bit numbers


def _before(entry_id: str) -> str:
    """The stream id just older than ``entry_id`` (XREVRANGE's max is inclusive); Invalid for
    a cursor no page could have given (out of range, or nothing older than it)."""
    ms_text, _, seq_text = entry_id.partition("-")
    if not (ms_text.isdigit() and (seq_text.isdigit() or not seq_text)) or len(entry_id) > 41:
        raise Invalid(f"not a cursor this API gave out: {entry_id[:64]!r}", param="before")
    ms, seq = int(ms_text), int(seq_text or 0)
    if ms > _MAX_ID_PART or seq > _MAX_ID_PART or (ms == 0 and seq == 0):
        raise Invalid(f"not a cursor this API gave out: {entry_id!r}", param="before")
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_MAX_ID_PART}"


async def read(
    redis: HivemindRedis,
    *,
    tenant: str | None = None,
    action: str | None = None,
    since: float | None = None,
    before: str | None = None,
    limit: int = 100,
) -> tuple[list[AuditEntry], str | None]:
    """Newest first, filtered; returns (entries, cursor of the next page or None).

    ``action`` matches exactly or as a prefix ending in ``.`` (``keys.`` for every key action);
    ``since`` is a Unix time; ``before`` is the cursor a previous page returned.
    """
    if since is not None and not 0 <= since <= 1e11:  # NaN fails this too
        raise Invalid("since must be a Unix time between 0 and 1e11", param="since")
    low = f"{int(since * 1000)}-0" if since is not None else "-"
    high = _before(before) if before else "+"
    found: list[AuditEntry] = []
    looked = 0
    while looked < READ_SCAN_MAX:
        chunk = await redis.xrevrange(keys.audit_stream(), max=high, min=low, count=READ_CHUNK)
        if not chunk:
            return found, None
        for entry_id, raw in chunk:
            looked += 1
            entry = _entry(entry_id, raw)
            if tenant is not None and entry.tenant != tenant:
                continue
            if action is not None and not _action_matches(entry.action, action):
                continue
            found.append(entry)
            if len(found) == limit:
                return found, entry.id
        high = _before(_decode(chunk[-1][0]))
        if len(chunk) < READ_CHUNK:
            return found, None
    # looked at enough for one page: hand back where to go on
    return found, _decode(chunk[-1][0])


def _action_matches(have: str, want: str) -> bool:
    return have == want or (want.endswith(".") and have.startswith(want))
