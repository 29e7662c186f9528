"""Relationships between documents: Markdown links, relative paths, Python and JS imports.

A document's outgoing references are stored with it as *targets*: normalised paths relative to
the collection's root (``docs/retrieval.md``), or Python module paths written as file paths
(``hivemind_gateway/rag/service.py``). They are resolved against the sources actually ingested
when a search asks for neighbours, so a link to a page ingested later still resolves.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

MAX_LINKS = 200

_MD_LINK = re.compile(r"\[[^\]\n]{0,300}\]\(\s*<?([^)\s>]{1,500})>?(?:\s+\"[^\"]*\")?\s*\)")
# [ \t], not \s: with MULTILINE, \s also matches newlines, and a run of blank lines made the
# search quadratic. Between "from" and "import" stand dots or a name, never nothing: two runs of
# spaces with nothing between them split a long run of spaces every way (quadratic, and the
# regex engine holds the GIL, so one such line stalled every request of the process)
_PY_FROM = re.compile(
    r"^[ \t]*from[ \t]+(?:(\.+)([A-Za-z_][\w.]*)?|([A-Za-z_][\w.]*))[ \t]+import\b", re.MULTILINE
)
_PY_IMPORT = re.compile(
    r"^[ \t]*import[ \t]+([A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*)", re.MULTILINE
)
# a JS relative path in quotes, then what stands just before it: "from", "import", "require(" or
# "import(" (a scan from each "import" over what could be a long list of names was ~500 steps a
# character on hostile text; the paths are rare, the look back is short)
_JS_PATH = re.compile(r"""['"](\.{1,2}/[^'"\n]{1,300})['"]""")
_JS_BEFORE = re.compile(r"""(?:\bfrom|\bimport|\brequire\s*\(|\bimport\s*\()\s*$""")
JS_LOOK_BACK = 40


def _join(base_dir: str, target: str) -> str | None:
    path = posixpath.normpath(posixpath.join(base_dir, target))
    if path.startswith("../") or path == ".." or path.startswith("/"):
        return path.lstrip("/") if path.startswith("/") else None
    return path


def find_links(source: str, text: str, doc_type: str, language: str) -> list[str]:
    """Targets (paths) that ``text``, stored as ``source``, links to or imports."""
    base_dir = posixpath.dirname(source)
    found: list[str] = []
    if doc_type in ("markdown", "text"):
        for match in _MD_LINK.finditer(text):
            target = match.group(1).split("#", 1)[0].split("?", 1)[0]
            if not target or "://" in target or target.startswith(("mailto:", "#")):
                continue
            joined = _join(base_dir, target)
            if joined:
                found.append(joined)
    if language == "python":
        package = base_dir
        for match in _PY_FROM.finditer(text):
            dots, name = match.group(1) or "", match.group(2) or match.group(3) or ""
            if dots:
                up = package
                for _ in range(len(dots) - 1):
                    up = posixpath.dirname(up)
                rel = posixpath.join(up, *name.split(".")) if name else up
                found.append(rel + ".py")
            elif name:
                found.append("/".join(name.split(".")) + ".py")
        for match in _PY_IMPORT.finditer(text):
            for name in match.group(1).split(","):
                found.append("/".join(name.strip().split(".")) + ".py")
    if language == "js":
        for match in _JS_PATH.finditer(text):
            before = text[max(0, match.start() - JS_LOOK_BACK) : match.start()]
            if not _JS_BEFORE.search(before):
                continue
            joined = _join(base_dir, match.group(1))
            if joined:
                found.append(joined)
    out = [t for t in dict.fromkeys(found) if t != source]
    return out[:MAX_LINKS]


_JS_EXTS = ("", ".js", ".ts", ".tsx", ".jsx", ".mjs", "/index.js", "/index.ts")


def target_paths(target: str) -> list[str]:
    """The paths ``target`` may name: itself, a Python module's package ``__init__.py``, a JS
    import with any of the usual extensions. A source is the target when it is one of these
    paths or ends in ``/`` and one (sources may carry a root the link does not)."""
    if not target:
        return []
    candidates = [target]
    if target.endswith(".py"):
        candidates.append(target[:-3] + "/__init__.py")
    elif "." not in posixpath.basename(target):
        candidates.extend(target + ext for ext in _JS_EXTS[1:])
    return candidates


def _tail(path: str, parts: int) -> str:
    return "/".join(path.split("/")[-parts:])


class SourceIndex:
    """Sources by the last one and the last two segments of their paths: a target path resolves
    to the sources equal to it or ending in ``/<path>``, looked for among those sharing its own
    last two segments (its last one, for a bare name: all of those match), never in a scan of
    them all. (A map of every tail of every path cost the square of a path's depth: 500 sources
    500 directories deep took seconds of the event loop per expanded search.)"""

    def __init__(self, sources: Iterable[str]) -> None:
        self._by_tail: dict[str, list[str]] = {}
        for source in sources:
            self._by_tail.setdefault(_tail(source, 1), []).append(source)
            if "/" in source:
                self._by_tail.setdefault(_tail(source, 2), []).append(source)

    def get(self, path: str, default: Iterable[str] = ()) -> list[str]:
        """The sources ``path`` names."""
        if not path:
            return list(default)
        candidates = self._by_tail.get(_tail(path, 2 if "/" in path else 1), ())
        found = [s for s in candidates if s == path or s.endswith("/" + path)]
        return found if found else list(default)
