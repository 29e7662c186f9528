"""The one rule for every id and name a caller or a service hands us.

Each kind of name has one pattern here, used by the gateway's routes and bodies, the MCP tools,
the model registry and the key schema. None of them may hold whitespace, braces or control
characters; only the kinds that end a Redis key (fact keys, session and memory ids, tags) may
hold ``:`` (see :mod:`hivemind_common.keys`, where a free-form id is always the last part).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from hivemind_common.errors import Invalid

# Model names and versions, tool names, trainer config names: short, path-safe, no ':'.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Session and memory ids.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# Fact keys: ids that may also hold '@', '+' and '/' ("hosts/aurora", "user@host").
FACT_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,199}$"
# A prefix of a fact key (may start with any of its characters).
FACT_PREFIX_PATTERN = r"^[A-Za-z0-9_.:@+/-]{1,200}$"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
# Opaque ids we mint (jobs) and digests callers compute (tool-cache input hashes).
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
# Short labels callers choose (where a learning sample came from: "api", "claude-code").
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
# Tenants: what the hash tag {t:<tenant>} can hold.
TENANT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

MAX_TAGS = 32

_NAME_RE = re.compile(NAME_PATTERN)
_ID_RE = re.compile(ID_PATTERN)
_FACT_KEY_RE = re.compile(FACT_KEY_PATTERN)
_TAG_RE = re.compile(TAG_PATTERN)
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_TENANT_RE = re.compile(TENANT_PATTERN)


def valid_name(value: str) -> bool:
    """Model names, versions and tool names: short path-safe words."""
    return bool(_NAME_RE.fullmatch(value))


def valid_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


def valid_fact_key(value: str) -> bool:
    return bool(_FACT_KEY_RE.fullmatch(value))


def valid_tag(value: str) -> bool:
    return bool(_TAG_RE.fullmatch(value))


def valid_token(value: str) -> bool:
    return bool(_TOKEN_RE.fullmatch(value))


def valid_tenant(value: str) -> bool:
    """Tenants are short names with no braces or colons, so they can't break a hash tag."""
    return bool(_TENANT_RE.fullmatch(value))


def check_name(value: str, what: str = "name") -> str:
    """``value``, or ``Invalid`` naming the offending parameter."""
    if not valid_name(value):
        raise Invalid(f"invalid {what}: {value!r}", param=what)
    return value


def _dedupe_tags(tags: list[str]) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return list(dict.fromkeys(tags))


# pydantic field types: the pattern shows in the OpenAPI and MCP tool schemas too
Name = Annotated[str, StringConstraints(strict=True, pattern=NAME_PATTERN)]
Identifier = Annotated[str, StringConstraints(strict=True, pattern=ID_PATTERN)]
FactKey = Annotated[str, StringConstraints(strict=True, pattern=FACT_KEY_PATTERN)]
Tag = Annotated[str, StringConstraints(strict=True, pattern=TAG_PATTERN)]
# the length is checked before the items: a body of 2M bad tags made 2M errors (seconds, GiBs)
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_dedupe_tags)]
Token = Annotated[str, StringConstraints(strict=True, pattern=TOKEN_PATTERN)]

__all__ = [
    "FACT_KEY_PATTERN",
    "FACT_PREFIX_PATTERN",
    "ID_PATTERN",
    "LABEL_PATTERN",
    "MAX_TAGS",
    "NAME_PATTERN",
    "TAG_PATTERN",
    "TENANT_PATTERN",
    "TOKEN_PATTERN",
    "FactKey",
    "Identifier",
    "Name",
    "Tag",
    "Tags",
    "Token",
    "check_name",
    "valid_fact_key",
    "valid_id",
    "valid_name",
    "valid_tag",
    "valid_tenant",
    "valid_token",
]
