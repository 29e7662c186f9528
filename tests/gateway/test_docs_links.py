"""Link targets resolve to ingested sources by path tail, the same as a scan would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hivemind_gateway.docs.links import find_links, suffix_map, target_paths

names = st.sampled_from(["a", "b", "docs", "src", "pkg", "x.py", "y.md", "__init__.py", "z.ts"])
paths = st.lists(names, min_size=1, max_size=4).map("/".join)


def _scan(target: str, sources: list[str]) -> set[str]:
    """What the neighbour lookup once did for every source: compare each one."""
    return {s for s in sources for c in target_paths(target) if s == c or s.endswith("/" + c)}


@settings(max_examples=300, deadline=None)
@given(sources=st.lists(paths, max_size=12, unique=True), target=paths)
def test_the_suffix_map_finds_exactly_what_a_scan_finds(sources: list[str], target: str) -> None:
    suffixes = suffix_map(sources)
    found = {s for p in target_paths(target) for s in suffixes.get(p, [])}
    assert found == _scan(target, sources)


def test_imports_and_links_resolve_to_their_files() -> None:
    sources = ["repo/pkg/mod.py", "repo/pkg/sub/__init__.py", "docs/deploy.md", "web/util.ts"]
    suffixes = suffix_map(sources)

    def resolve(target: str) -> list[str]:
        return [s for p in target_paths(target) for s in suffixes.get(p, [])]

    links = find_links("repo/pkg/main.py", "import pkg.mod\nfrom pkg.sub import x\n",
                       "code", "python")  # fmt: skip
    assert [resolve(t) for t in links] == [["repo/pkg/sub/__init__.py"], ["repo/pkg/mod.py"]]
    assert resolve(find_links("docs/a.md", "[d](deploy.md#ports)", "markdown", "")[0]) == [
        "docs/deploy.md"
    ]
    assert resolve(find_links("web/app.ts", "import {u} from './util'", "code", "js")[0]) == [
        "web/util.ts"
    ]
    assert resolve("") == [] and resolve("nothing/here.md") == []
