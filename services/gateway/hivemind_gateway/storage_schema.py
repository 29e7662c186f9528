"""The storage schema of facts and memories: how each is kept in a Redis hash, and how the
search index reads it back (its item, its vector bytes, its change-stream command)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from hivemind_common import keys
from hivemind_gateway.search.index import DocRef, Item, mentions_time


def fact_text(key: str, value: str) -> str:
    """What a fact is searched by and injected as."""
    return f"{key}: {value}"


def load_tags(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    try:
        tags = json.loads(raw)
    except ValueError:
        return ()
    return tuple(str(t) for t in tags) if isinstance(tags, list) else ()


def load_json(raw: str | None, default: Any) -> Any:
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


# the record field an item's version comes from (the vector backfill compares it in Redis)
VERSION_FIELD = {"fact": "updated_at", "memory": "created_at", "doc": "updated_at"}


def fact_item(key: str, record: dict[str, str]) -> Item:
    return Item(
        kind="fact",
        id=key,
        text=fact_text(key, record.get("value", "")),
        tags=load_tags(record.get("tags")),
        version=record.get(VERSION_FIELD["fact"], ""),
        key=key,
    )


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from an ISO 8601 date(-time) or a number; None when unreadable.

    A date without a zone is read as UTC: what matters is the order of memories, not the hour.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)  # an int beyond a float's range overflows
        except OverflowError:
            return None
        return seconds if math.isfinite(seconds) else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def memory_item(memory_id: str, record: dict[str, str]) -> Item:
    """The index's view of a stored memory: its speaker and time come from its metadata."""
    text = record.get("text", "")
    metadata = load_json(record.get("metadata"), {})
    if not isinstance(metadata, dict):
        metadata = {}
    speaker = metadata.get("speaker")
    when = metadata.get("occurred_at", metadata.get("date"))
    return Item(
        kind="memory",
        id=memory_id,
        text=text,
        tags=load_tags(record.get("tags")),
        session_id=record.get("session_id") or None,
        version=record.get(VERSION_FIELD["memory"], ""),
        speaker=speaker.strip()[:200] if isinstance(speaker, str) else "",
        when=parse_time(when),
        temporal=mentions_time(text),
    )


def _int(raw: str | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return 0


def doc_chunk_item(chunk_id: str, record: dict[str, str]) -> Item:
    """The index's view of a stored document chunk (``hivemind_gateway.docs``)."""
    ref = DocRef(
        doc_id=record.get("doc_id", ""),
        collection=record.get("collection", ""),
        source=record.get("source", ""),
        start_line=_int(record.get("start_line")),
        end_line=_int(record.get("end_line")),
        heading=record.get("heading", ""),
        context=record.get("context", ""),
    )
    return Item(
        kind="doc",
        id=chunk_id,
        text=record.get("text", ""),
        version=record.get(VERSION_FIELD["doc"], ""),
        doc=ref,
    )


def item_from_record(kind: str, item_id: str, record: dict[str, str]) -> Item:
    if kind == "doc":
        return doc_chunk_item(item_id, record)
    return fact_item(item_id, record) if kind == "fact" else memory_item(item_id, record)


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(raw: bytes | None, dim: int | None = None) -> np.ndarray | None:
    if not raw or len(raw) % 4:
        return None
    vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if dim is not None and vec.shape[0] != dim:
        return None
    return vec


def change_command(
    tenant: str, op: str, kind: str, item_id: str, version: str, has_vec: bool
) -> tuple[Any, ...]:
    """The XADD that tells every gateway an item changed (they re-read it from Redis)."""
    return (
        "XADD", keys.changes(tenant), "MAXLEN", "~", keys.CHANGES_MAXLEN, "*",
        "op", op, "kind", kind, "id", item_id, "v", version, "vec", "1" if has_vec else "0",
    )  # fmt: skip
