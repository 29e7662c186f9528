"""How the command line shows values to a person (one format for every command)."""

from __future__ import annotations

import datetime as dt


def when(ts: float | None) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SS UTC`` ("never" for none or zero)."""
    if not ts:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
