"""Newest-first pages over a sorted set of ids scored by time, continued by a keyset cursor.

An offset cursor shifts when an item is added at the top (the next page repeats one) or an
expired one is dropped (the next page skips one). The cursor here names the last item seen,
``<score>:<id>``; the next page starts strictly after it in (score desc, id desc) order, which
is ZREVRANGE's order, so concurrent writes never repeat or skip an item that stays put.
"""

from __future__ import annotations

import re
from typing import Any

from hivemind_common.errors import Invalid
from hivemind_common.ids import ID_PATTERN

# "<score>:<memory id>", the id by the one id rule
CURSOR_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?:" + ID_PATTERN.removeprefix("^"))


def _parse(cursor: str) -> tuple[float, str]:
    if not CURSOR_RE.match(cursor):
        raise Invalid("cursor is not a next_cursor this API gave out", param="cursor")
    score, _, member = cursor.partition(":")
    return float(score), member


async def recency_page(
    redis: Any, index: str, *, limit: int, cursor: str | None
) -> tuple[list[str], str | None]:
    """(ids of one page, the cursor of the next or None)."""
    if cursor is None:
        rows = await redis.zrevrange(index, 0, limit, withscores=True)
    else:
        score, last = _parse(cursor)
        # items tied on the cursor's score come first in the range; ask for enough to pass them
        ties = int(await redis.zcount(index, score, score))
        rows = await redis.zrevrangebyscore(
            index, score, "-inf", start=0, num=limit + ties + 1, withscores=True
        )
        rows = [(m, s) for m, s in rows if s < score or (s == score and m < last)]
    page = rows[:limit]
    if len(rows) <= limit or not page:
        return [m for m, _ in page], None
    member, score_ = page[-1]
    return [m for m, _ in page], f"{score_!r}:{member}"
