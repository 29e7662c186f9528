"""Input rules shared by the memory API's schemas: names, tags, text that Redis can store."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from fastapi import Depends, Request
from pydantic import AfterValidator, StringConstraints

from hivemind_common.errors import TooLarge

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,199}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_TAGS = 32
_ALLOWED_CONTROLS = frozenset("\n\r\t")


def clean_text(value: str) -> str:
    """Refuse text Redis or a prompt can't take: lone surrogates, NUL and other controls."""
    for ch in value:
        cat = unicodedata.category(ch)
        if cat == "Cs":
            raise ValueError("text contains a lone surrogate (invalid unicode)")
        if cat == "Cc" and ch not in _ALLOWED_CONTROLS:
            raise ValueError(f"text contains the control character U+{ord(ch):04X}")
    if not value.strip():
        raise ValueError("text must not be empty or only whitespace")
    return value


def check_key(value: str) -> str:
    if not KEY_RE.match(value):
        raise ValueError(
            "must be 1-200 characters: letters, digits and _ . : @ + / -, starting with a letter "
            "or digit"
        )
    return value


def check_tag(value: str) -> str:
    if not TAG_RE.match(value):
        raise ValueError("tags are 1-64 letters, digits, '_', '.', ':' or '-'")
    return value


def check_id(value: str) -> str:
    if not ID_RE.match(value):
        raise ValueError("ids are 1-128 letters, digits, '_', '.', ':' or '-'")
    return value


def check_tags(tags: list[str]) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return list(dict.fromkeys(tags))


Tag = Annotated[str, StringConstraints(strict=True), AfterValidator(check_tag)]
Tags = Annotated[list[Tag], AfterValidator(check_tags)]
Identifier = Annotated[str, StringConstraints(strict=True), AfterValidator(check_id)]
Query = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=4000), AfterValidator(clean_text)
]


async def limit_body(request: Request) -> None:
    """A dependency: refuse bodies over ``max_body_bytes`` before parsing them."""
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body is {declared} bytes; the limit is {limit}")
    if (
        declared is None
        and request.method in ("POST", "PUT", "PATCH")
        and len(await request.body()) > limit
    ):
        raise TooLarge(f"body is over the limit of {limit} bytes")


BodyLimit = Depends(limit_body)
