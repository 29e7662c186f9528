"""The one JSON encoder of Hive-Mind's request paths: compact UTF-8 bytes, never a crash on text.

orjson does the work; what it refuses (integers past 64 bits, strings holding lone surrogates
that slipped in from elsewhere) goes through the standard library with ASCII escapes, which can
encode any ``str``. The gateway's bodies to inference and embedding, its response-cache digests
and tool-cache values, and the MCP bridge's calls to the gateway all come from here.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON as bytes; sorted keys when asked (stable digests)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, sort_keys=sort_keys)
        return text.encode("ascii")


def dumps_str(value: Any, *, sort_keys: bool = False) -> str:
    """:func:`dumps` as text, for Redis fields and log lines."""
    return dumps(value, sort_keys=sort_keys).decode("utf-8")


loads = orjson.loads

__all__ = ["dumps", "dumps_str", "loads"]
