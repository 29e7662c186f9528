"""Reply shapes that differ between clients and protocols."""

from __future__ import annotations

from typing import Any


def as_dict(raw: Any) -> dict[str, str]:
    """A hash reply (a dict, or a flat list inside MULTI on some clients) as a dict."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    it = iter(raw or [])
    return {str(k): str(v) for k, v in zip(it, it, strict=False)}
