"""Whose prompt the inference service is working on, without naming the tenant.

llama.cpp keeps the last prompt's state and resumes a request from the longest prefix it shares
with it (and, with ``HIVEMIND_PROMPT_CACHE_MB``, from saved states of earlier prompts). A prefix
found there answers the first token sooner, so a tenant who sent another tenant's prompt could
tell from the timing that someone had sent it. The gateway names the caller's tenant in this
header, as a digest; the inference service keeps each one's prompt states apart and starts a
request of another tenant than the last from an empty context.
"""

from __future__ import annotations

import hashlib

PARTITION_HEADER = "x-hivemind-partition"
MAX_PARTITION_CHARS = 64


def partition_of(tenant: str) -> str:
    """The header's value for ``tenant``: a digest (tenant names stay out of inference's logs)."""
    digest = hashlib.sha256(b"hivemind-prompt-partition\0" + tenant.encode("utf-8", "replace"))
    return digest.hexdigest()[:32]


def partition_from(value: str | None) -> str:
    """The partition a request names (a caller without the header shares the empty one)."""
    return (value or "")[:MAX_PARTITION_CHARS]
