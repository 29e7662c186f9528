"""Relationships between documents: Markdown links, relative paths, Python and JS imports.

A document's outgoing references are stored with it as *targets*: normalised paths relative to
the collection's root (``docs/retrieval.md``), or Python module paths written as file paths
(``hivemind_gateway/rag/service.py``). They are resolved against the sources actually ingested
when a search asks for neighbours, so a link to a page ingested later still resolves.
"""

from __future__ import annotations

import posixpath
import re

MAX_LINKS = 200

_MD_LINK = re.compile(r"\[[^\]\n]{0,300}\]\(\s*<?([^)\s>]{1,500})>?(?:\s+\"[^\"]*\")?\s*\)")
# [ \t], not \s: with MULTILINE, \s also matches newlines, and a run of blank lines made the
# search quadratic
_PY_FROM = re.compile(r"^[ \t]*from[ \t]+(\.*)([A-Za-z_][\w.]*)?[ \t]+import\b", re.MULTILINE)
_PY_IMPORT = re.compile(
    r"^[ \t]*import[ \t]+([A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*)", re.MULTILINE
)
_JS_IMPORT = re.compile(
    r"""(?:\bimport\s+(?:[^'";]{0,500}?\sfrom\s+)?|\brequire\s*\(\s*|\bimport\s*\(\s*)['"](\.{1,2}/[^'"]{1,300})['"]"""
)


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
            dots, name = match.group(1), match.group(2) or ""
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
        for match in _JS_IMPORT.finditer(text):
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


def suffix_map(sources: list[str]) -> dict[str, list[str]]:
    """Every tail of each source's path (``a/b/c.py``, ``b/c.py``, ``c.py``) -> the sources:
    a target resolves to ``suffixes[path]`` for each of its paths, without a scan."""
    out: dict[str, list[str]] = {}
    for source in sources:
        parts = source.split("/")
        for i in range(len(parts)):
            out.setdefault("/".join(parts[i:]), []).append(source)
    return out
