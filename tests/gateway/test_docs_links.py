"""Link targets resolve to ingested sources by path tail, the same as a scan would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hivemind_gateway.docs.links import SourceIndex, find_links, target_paths

names = st.sampled_from(["a", "b", "docs", "src", "pkg", "x.py", "y.md", "__init__.py", "z.ts"])
paths = st.lists(names, min_size=1, max_size=4).map("/".join)


def _scan(target: str, sources: list[str]) -> set[str]:
    """What the neighbour lookup once did for every source: compare each one."""
    return {s for s in sources for c in target_paths(target) if s == c or s.endswith("/" + c)}


@settings(max_examples=300, deadline=None)
@given(sources=st.lists(paths, max_size=12, unique=True), target=paths)
def test_the_suffix_map_finds_exactly_what_a_scan_finds(sources: list[str], target: str) -> None:
    suffixes = SourceIndex(sources)
    found = {s for p in target_paths(target) for s in suffixes.get(p, [])}
    assert found == _scan(target, sources)


def test_imports_and_links_resolve_to_their_files() -> None:
    sources = ["repo/pkg/mod.py", "repo/pkg/sub/__init__.py", "docs/deploy.md", "web/util.ts"]
    suffixes = SourceIndex(sources)

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


def test_every_import_form_is_found() -> None:
    py = "from . import a\nfrom ..pkg.b import c\nfrom os import path\nimport x.y, z\n"
    assert find_links("repo/p/q/m.py", py, "code", "python") == [
        "repo/p/q.py", "repo/p/pkg/b.py", "os.py", "x/y.py", "z.py",
    ]  # fmt: skip
    js = (
        "import {\n  a,\n  b,\n} from './a'\nimport './side'\nexport * from \"../c\"\n"
        "const d = require(\n  './d')\nconst e = await import('./e')\nconst s = 'x ./no'\n"
        "const f = './f'  // a path that is not imported\n"
    )
    assert find_links("web/src/app.js", js, "code", "js") == [
        "web/src/a", "web/src/side", "web/c", "web/src/d", "web/src/e",
    ]  # fmt: skip


def _within(seconds: float, fn: object, *args: object) -> object:
    """``fn(*args)``, which must finish before the deadline (a hostile input once took
    minutes: the check is for that, with a margin of hundreds of times the real cost)."""
    import threading

    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)  # type: ignore[operator]
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {seconds} s"
    return result[0]


def test_hostile_runs_of_spaces_and_import_words_are_linear() -> None:
    # "from" then 200k spaces and tabs: the old pattern split the run every way (minutes)
    spaces = "from" + " \t" * 100_000 + "x\n"
    assert _within(20, find_links, "a.py", spaces * 3, "code", "python") == []
    # "import" over and over (the old pattern looked up to 500 characters ahead of each one:
    # linear, but ~8 us a word; now each quoted relative path looks 40 characters back)
    words = "import " * 200_000 + "'./x'"
    assert _within(20, find_links, "a.js", words, "code", "js") == ["x"]
