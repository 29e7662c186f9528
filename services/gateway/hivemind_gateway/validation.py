"""The gateway's input rules under the names its schemas and routers use (facts, memory, rag).

The rules themselves live in one place, :mod:`hivemind_common.ids` (ids, keys, tags) and
:mod:`hivemind_common.text` (what text may hold); this module only gives them local names.
"""

from __future__ import annotations

import re

from hivemind_common.ids import FACT_KEY_PATTERN, ID_PATTERN, MAX_TAGS, Identifier, Tag, Tags
from hivemind_common.text import SearchQuery as Query
from hivemind_common.text import check_not_blank as clean_text

KEY_RE = re.compile(FACT_KEY_PATTERN)
ID_RE = re.compile(ID_PATTERN)

__all__ = ["ID_RE", "KEY_RE", "MAX_TAGS", "Identifier", "Query", "Tag", "Tags", "clean_text"]
