"""The gateway's input rules under the names its schemas and routers use (facts, memory, rag,
docs).

The rules themselves live in one place, :mod:`hivemind_common.ids` (ids, keys, tags) and
:mod:`hivemind_common.text` (what text may hold); this module gives them local names, and holds
the one rule only the gateway's bodies have: the size of a memory's or a document's metadata.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator

from hivemind_common.ids import FACT_KEY_PATTERN, ID_PATTERN, MAX_TAGS, Identifier, Tag, Tags
from hivemind_common.text import SearchQuery as Query
from hivemind_common.text import check_json_text
from hivemind_common.text import check_not_blank as clean_text

KEY_RE = re.compile(FACT_KEY_PATTERN)
ID_RE = re.compile(ID_PATTERN)

MAX_METADATA_BYTES = 16_384
"""Largest ``metadata`` of a memory or a document, as the JSON it is stored as: it is kept with
the item and sent back in every listing (500 a page), so only the body limit bounded it."""


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Metadata whose strings (keys too) are acceptable text, at most ``MAX_METADATA_BYTES``."""
    check_json_text(value)
    size = len(json.dumps(value))  # as stored: ASCII, other characters escaped
    if size > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata is {size} bytes as stored JSON; the limit is {MAX_METADATA_BYTES}"
        )
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(check_metadata)]
"""A memory's or a document's ``metadata`` object (see ``check_metadata``)."""

__all__ = [
    "ID_RE",
    "KEY_RE",
    "MAX_METADATA_BYTES",
    "MAX_TAGS",
    "Identifier",
    "Metadata",
    "Query",
    "Tag",
    "Tags",
    "check_metadata",
    "clean_text",
]
