"""The console's pages: their paths, titles and the least role that may open each."""

from __future__ import annotations

from dataclasses import dataclass

from hivemind_common.auth import Principal, Role


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    role: Role = "read"


PAGES: tuple[Page, ...] = (
    Page("overview", "Overview"),
    Page("memory", "Memory"),
    Page("suggestions", "Suggestions"),
    Page("learning", "Learning"),
    Page("models", "Models"),
    Page("calculator", "Calculator"),
    Page("keys", "Keys", role="admin"),
)
BY_SLUG = {page.slug: page for page in PAGES}


def pages_for(principal: Principal) -> list[Page]:
    """The pages a principal's role may open (the navigation shows only these)."""
    return [page for page in PAGES if principal.allows(page.role)]
