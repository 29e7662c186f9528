"""Split a document into chunks that follow its structure, sized in the served model's tokens.

* Markdown: one section per heading (outside code fences), named by its heading path
  (``Install > From source``); a heading with nothing under it joins the section after it.
* Python: one section per top-level definition (``ast``; decorators and the comments just above
  belong to it); a class too large for one chunk is split into its methods (``class A > def f``).
  Statements between definitions form ``module`` sections.
* Other code (JS/TS, Go, Rust, Java, C and the like): a language-aware pattern finds the lines
  that open a top-level definition; the comment block just above a definition goes with it.
* Plain text: paragraphs (blank-line separated), packed together up to the chunk size.

A section that fits is one chunk. A larger one is cut into windows of whole lines (a line longer
than a chunk is cut by tokens) of at most ``size`` tokens, each starting ``overlap`` tokens
before the previous one ended (at most half of that window back). Sections never share text.
Every window moves forward by at least one line (or one token), and ``0 <= overlap < size`` is
checked first, so no input loops.

Every chunk also fits the embedder: at most ``max_chars`` characters and, when the embedder's
tokenizer is installed, at most half of its word-piece window (the header line embedded before
it, source, heading and summary, has the other half). A window's size is found from each line's
counts (served tokens, word pieces) and then checked on the joined text.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import PurePosixPath
from typing import Literal, Protocol

from hivemind_common import python_ast
from hivemind_common.errors import Invalid

DocType = Literal["markdown", "code", "text"]

MIN_CHUNK_TOKENS = 16
MAX_CHUNK_TOKENS = 2048
MAX_CHARS = 4000  # the gateway embeds at most this many characters of an item
HEADING_SEP = " > "

MARKDOWN_EXTS = frozenset({".md", ".markdown", ".mdx", ".mkd"})
CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python",
    ".js": "js", ".jsx": "js", ".mjs": "js", ".cjs": "js", ".ts": "js", ".tsx": "js",
    ".go": "go",
    ".rs": "rust",
    ".java": "c", ".kt": "c", ".kts": "c", ".scala": "c", ".cs": "c", ".swift": "c",
    ".c": "c", ".h": "c", ".cc": "c", ".cpp": "c", ".hpp": "c", ".cxx": "c",
    ".rb": "ruby", ".sh": "shell", ".bash": "shell", ".php": "c", ".lua": "ruby",
}  # fmt: skip


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...

    def count_many(self, texts: list[str]) -> list[int]: ...

    def encode(self, text: str) -> object: ...


class LimitCounter(Protocol):
    limit: int

    def count(self, text: str) -> int: ...

    # word pieces of each text without the special tokens: a whole-line text's pieces never
    # span a line break (the embedder splits at whitespace), so lines' counts add up
    def count_many(self, texts: list[str]) -> list[int]: ...

    def specials(self) -> int: ...


@dataclass(frozen=True)
class Chunk:
    text: str
    start_line: int  # 1-based, inclusive
    end_line: int
    heading: str
    tokens: int


@dataclass(frozen=True)
class Section:
    start: int  # 0-based line index, inclusive
    end: int  # exclusive
    heading: str
    pack: bool = False  # paragraphs of plain text: pack several into one chunk


# a line ends at \n, \r\n or \r only, as editors and Python's own line numbers count them:
# str.splitlines also splits at U+2028, U+0085, form feeds and the like, and every citation
# after one was off by a line
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def split_lines(text: str) -> list[str]:
    """The lines of ``text``, each with its line break."""
    return _LINE.findall(text)


def chunk_sizes(
    chunk_tokens: int | None, overlap_tokens: int | None, default_size: int, default_overlap: int
) -> tuple[int, int]:
    """The sizes a request asks for, checked (``check_sizes``). An overlap left out is the
    default, unless the chunk is too small for it: then it keeps the default's share of the
    chunk (32 of 256 is 3 of 24). A caller who set only a small ``chunk_tokens`` was refused
    for a field it never sent."""
    size = default_size if chunk_tokens is None else chunk_tokens
    overlap = default_overlap if overlap_tokens is None else overlap_tokens
    if overlap_tokens is None and isinstance(size, int) and overlap >= size:  # else: checked
        overlap = min(default_overlap * size // default_size, max(0, size - 1))
    check_sizes(size, overlap)
    return size, overlap


def check_sizes(size: int, overlap: int) -> None:
    """``Invalid`` unless MIN <= size <= MAX and 0 <= overlap < size. A window never steps back
    more than half of its own length, whatever the overlap: a window cut short by the
    character cap or the embedder's limit, stepping back a full overlap, would move on by a
    token or a line, and the output would grow as size x input."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise Invalid("chunk_tokens must be an integer", param="chunk_tokens")
    if isinstance(overlap, bool) or not isinstance(overlap, int):
        raise Invalid("overlap_tokens must be an integer", param="overlap_tokens")
    if not MIN_CHUNK_TOKENS <= size <= MAX_CHUNK_TOKENS:
        raise Invalid(
            f"chunk_tokens must be between {MIN_CHUNK_TOKENS} and {MAX_CHUNK_TOKENS}",
            param="chunk_tokens",
        )
    if not 0 <= overlap < size:
        raise Invalid("overlap_tokens must be at least 0 and less than chunk_tokens",
                      param="overlap_tokens")  # fmt: skip


def detect(source: str, declared: str | None = None) -> tuple[DocType, str]:
    """(type, language) of a document from its declared type or its source's extension."""
    suffix = PurePosixPath(source.split("?", 1)[0]).suffix.lower()
    if declared in ("markdown", "text"):
        return declared, ""  # type: ignore[return-value]
    if declared == "code" or suffix in CODE_LANGUAGES:
        return "code", CODE_LANGUAGES.get(suffix, "c")
    if suffix in MARKDOWN_EXTS:
        return "markdown", ""
    return "text", ""


# the comment marker only; the rest of the line is trimmed in Python (a regex that also trimmed
# the tail backtracked cubically on a line of spaces)
_COMMENT_LINE = re.compile(r"[ \t]*(?://+|#+!?|/\*+|\*+|--+|;+)")
MAX_SUMMARY = 160


def summary(text: str, doc_type: DocType, language: str) -> str:
    """A document's one-line summary for chunk headers: a Python module docstring's first
    line, or the first line of the comment a code file opens with ("" for other documents)."""
    if doc_type != "code":
        return ""
    if language == "python":
        try:
            doc = ast.get_docstring(python_ast.parse(text)) or ""
        except (SyntaxError, ValueError, RecursionError, MemoryError, SystemError):
            doc = ""
        first = next((ln.strip() for ln in doc.splitlines() if ln.strip()), "")
        return first[:MAX_SUMMARY]
    for line in text.splitlines()[:20]:
        if not line.strip() or line.startswith("#!"):
            continue
        found = _COMMENT_LINE.match(line)
        if not found:
            return ""
        rest = line[found.end() :].strip()
        return rest.removesuffix("*/").rstrip()[:MAX_SUMMARY]
    return ""


# --- sections -------------------------------------------------------------------------------------
# an ATX heading's marker and text; its closing #s are trimmed in Python (a lazy group before
# optional tails backtracked cubically on a heading of many spaces)
_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(.*)")


def heading_title(text: str) -> str:
    """A heading's text without its closing sequence of #s and the spaces around it."""
    return text.rstrip(" \t").rstrip("#").strip(" \t")


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def markdown_sections(lines: Sequence[str]) -> list[Section]:
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    start, heading, fence = 0, "", ""
    for i, line in enumerate(lines):
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            continue
        if opened:
            fence = opened.group(1)
            continue
        found = _HEADING.match(line.rstrip("\r\n"))
        if not found:
            continue
        if i > start:
            sections.append(Section(start, i, heading))
        level, title = len(found.group(1)), heading_title(found.group(2))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title[:120]))
        start, heading = i, HEADING_SEP.join(t for _, t in stack)
    sections.append(Section(start, len(lines), heading))
    # a heading with nothing under it joins the section after it
    merged: list[Section] = []
    carry: int | None = None
    for s in sections:
        first = carry if carry is not None else s.start
        body_blank = all(not ln.strip() for ln in lines[s.start + 1 : s.end])
        if s.heading and body_blank and s is not sections[-1]:
            carry = first
            continue
        merged.append(Section(first, s.end, s.heading))
        carry = None
    return [s for s in merged if any(ln.strip() for ln in lines[s.start : s.end])]


def _python_nodes(
    body: list[ast.stmt], lines: Sequence[str], lo: int, hi: int, prefix: str
) -> list[tuple[int, int, str]]:
    """(start, end, heading) for each statement of ``body`` between lines lo..hi."""
    out: list[tuple[int, int, str]] = []
    for node in body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
        last = node.end_lineno or node.lineno
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            heading = f"{prefix}def {node.name}"
        elif isinstance(node, ast.ClassDef):
            heading = f"{prefix}class {node.name}"
        else:
            heading = ""
        out.append((max(first, lo), min(last, hi), heading))
    return out


def _group(
    nodes: list[tuple[int, int, str]], lines: Sequence[str], lo: int, hi: int, rest: str
) -> list[Section]:
    """Definitions as their own sections (with the comment lines just above them); the other
    statements between them grouped under ``rest``."""
    sections: list[Section] = []
    cursor = lo
    run: int | None = None  # start of a run of plain statements

    def close_run(upto: int) -> None:
        begin = run if run is not None else cursor
        if any(ln.strip() for ln in lines[begin:upto]):
            sections.append(Section(begin, upto, rest))

    for start, end, heading in nodes:
        if not heading:
            if run is None:
                run = cursor
            cursor = end
            continue
        top = start
        while top > cursor and lines[top - 1].lstrip().startswith(("#", "//")):
            top -= 1
        close_run(top)
        run = None
        sections.append(Section(top, end, heading))
        cursor = end
    close_run(hi)
    return sections


def _pack_members(
    parts: list[Section], owner: str, fits: Callable[[int, int, str], bool]
) -> list[Section]:
    """Neighbouring parts of one class packed together while they fit one chunk, named by
    the class and the members they hold (``class A > def f, def g``)."""
    prefix = owner + HEADING_SEP
    packed: list[tuple[int, int, list[str]]] = []
    for part in parts:
        name = part.heading.removeprefix(prefix) if part.heading != owner else ""
        if packed and fits(packed[-1][0], part.end, owner):
            start, _, names = packed[-1]
            packed[-1] = (start, part.end, [*names, name] if name else names)
        else:
            packed.append((part.start, part.end, [name] if name else []))
    out = []
    for start, end, names in packed:
        heading = f"{prefix}{', '.join(names)}"[:240] if names else owner
        out.append(Section(start, end, heading))
    return out


def python_sections(
    lines: Sequence[str], text: str, fits: Callable[[int, int, str], bool]
) -> list[Section] | None:
    try:
        tree = python_ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, SystemError):
        return None
    top = _group(_python_nodes(tree.body, lines, 0, len(lines), ""), lines, 0, len(lines), "module")
    out: list[Section] = []
    # a class by the index of its line (two classes may share a name)
    classes = {n.lineno - 1: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for s in top:
        node = None
        if s.heading.startswith("class "):  # its section starts at or above the class line
            node = next((classes[i] for i in range(s.start, s.end) if i in classes), None)
        if node is None or fits(s.start, s.end, s.heading) or not node.body:
            out.append(s)
            continue
        body_start = min(
            [node.body[0].lineno, *(d.lineno for d in getattr(node.body[0], "decorator_list", []))]
        )
        inner = _python_nodes(node.body, lines, s.start, s.end, f"{s.heading}{HEADING_SEP}")
        head = Section(s.start, body_start - 1, s.heading)
        parts = _group(inner, lines, body_start - 1, s.end, s.heading)
        if parts and parts[0].heading == s.heading:
            parts[0] = Section(head.start, parts[0].end, s.heading)
        elif head.end > head.start:
            parts.insert(0, head)
        out.extend(_pack_members(parts, s.heading, fits))
    return out


_DEFINITION = {
    "js": re.compile(
        r"^(export\s+(default\s+)?)?(declare\s+)?(abstract\s+)?(async\s+)?"
        r"(function\*?|class|interface|type|enum|const|let|var|namespace|module)\s+([A-Za-z_$][\w$]*)"
    ),
    "go": re.compile(r"^(func|type|var|const)\s*(\([^)]*\)\s*)?([A-Za-z_]\w*)"),
    "rust": re.compile(
        r"^(pub(\([^)]*\))?\s+)?(async\s+)?(unsafe\s+)?"
        r"(fn|struct|enum|impl|trait|mod|type|const|static|macro_rules!)\s*(<[^>]*>\s*)?([A-Za-z_]\w*)"
    ),
    "ruby": re.compile(r"^(def|class|module|function|local\s+function)\s+([A-Za-z_][\w.:]*)"),
    "shell": re.compile(r"^(function\s+)?([A-Za-z_][\w-]*)\s*\(\)\s*\{?"),
    # C-family: a declaration at column 0 that is not a preprocessor line, a comment or a brace
    "c": re.compile(
        r"^(?![#/*}{\s])(?!(return|else|case|default)\b)[A-Za-z_][\w<>,:*&\s\[\]]*[\w>*&\]]\s*\("
        r"|^(public|private|protected|internal|abstract|final|sealed|static|export)?\s*"
        r"(class|interface|struct|enum|record|object|trait|namespace)\s+\w+"
    ),
}  # fmt: skip
_COMMENT_START = ("//", "#", "/*", "*", "--", "///")


def pattern_sections(lines: Sequence[str], language: str) -> list[Section]:
    pattern = _DEFINITION.get(language, _DEFINITION["c"])
    starts: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if pattern.match(line):
            top = i
            while top > 0 and lines[top - 1].lstrip().startswith(_COMMENT_START):
                top -= 1
            if starts and top <= starts[-1][0]:
                top = i
            starts.append((top, line.strip().rstrip("{").strip()[:120]))
    if not starts:
        return [Section(0, len(lines), "")]
    sections: list[Section] = []
    if starts[0][0] > 0:
        sections.append(Section(0, starts[0][0], "module"))
    for n, (start, heading) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        if end > start:
            sections.append(Section(start, end, heading))
    return [s for s in sections if any(ln.strip() for ln in lines[s.start : s.end])]


def text_sections(lines: Sequence[str]) -> list[Section]:
    sections: list[Section] = []
    start: int | None = None
    for i, line in enumerate(lines):
        if line.strip():
            if start is None:
                start = i
        elif start is not None:
            sections.append(Section(start, i, "", pack=True))
            start = None
    if start is not None:
        sections.append(Section(start, len(lines), "", pack=True))
    return sections


def _trim(lines: Sequence[str], a: int, b: int) -> tuple[int, int]:
    """The range without its leading and trailing blank lines."""
    while a < b and not lines[a].strip():
        a += 1
    while b > a and not lines[b - 1].strip():
        b -= 1
    return a, b


# --- the chunker --------------------------------------------------------------------------------
class Chunker:
    """Chunks of one document; every size is checked with the real tokenizers."""

    def __init__(
        self,
        counter: TokenCounter,
        *,
        size: int,
        overlap: int,
        embed_limit: LimitCounter | None = None,
        max_chars: int = MAX_CHARS,
    ) -> None:
        check_sizes(size, overlap)
        self.counter = counter
        self.size = size
        self.overlap = overlap
        self.embed_limit = embed_limit
        self._last_count: tuple[str, int] | None = None
        self.max_chars = max_chars
        self._pieces: list[int] | None = None  # word pieces per line of the current text

    def _pieces_fit(self, a: int, b: int) -> bool:
        """Whether lines a..b can fit the embedder's share, by their lines' pieces."""
        pieces = self._span_pieces(a, b)
        return pieces is None or pieces <= self._text_share()

    def _piece_budget(self) -> int | None:
        """Word pieces of text (special tokens aside) a chunk may hold, or None."""
        if self.embed_limit is None:
            return None
        return self._text_share() - self.embed_limit.specials()

    # a text fits when it is within the size, the character cap and its share of the
    # embedder's window
    def fits(self, text: str, tokens: int | None = None, pieces: int | None = None) -> bool:
        """``tokens``, ``pieces``: the text's served tokens and word pieces when known."""
        if len(text) > self.max_chars:
            return False
        if (tokens if tokens is not None else self._count(text)) > self.size:
            return False
        if self.embed_limit is None:
            return True
        return (pieces if pieces is not None else self.embed_limit.count(text)) <= (
            self._text_share()
        )

    def _count(self, text: str) -> int:
        """The served tokens of ``text``; a window checked by ``fits`` is counted again for its
        chunk (the same text, most of the time), so the last count is kept."""
        if self._last_count is not None and self._last_count[0] == text:
            return self._last_count[1]
        tokens = self.counter.count(text)
        self._last_count = (text, tokens)
        return tokens

    def _span_pieces(self, a: int, b: int) -> int | None:
        """Word pieces (special tokens included) of lines a..b joined, when lines' are known."""
        if self._pieces is None or self.embed_limit is None:
            return None
        return sum(self._pieces[a:b]) + self.embed_limit.specials()

    def _text_share(self) -> int:
        """Word pieces (special tokens included) a chunk's text may take of the embedder's
        window: half of it; the header line (source, heading, summary) has the other half.
        all-MiniLM-L6-v2 was trained on 128-piece inputs, and every figure of the reference
        library was measured with this share (until the counter stopped padding every count to
        128, it was what the header's share left)."""
        assert self.embed_limit is not None
        return self.embed_limit.limit - self.embed_limit.limit // 2

    def chunk(self, text: str, doc_type: DocType, language: str = "") -> list[Chunk]:
        lines = split_lines(text)
        if not lines:
            return []
        counts = self.counter.count_many(list(lines))
        # each line's word pieces, so a window's size for the embedder is a sum, not a count
        # of its joined text (a code window shrinking line by line was counted whole at each
        # step: 80% of the chunker's time on this repository)
        self._pieces = self.embed_limit.count_many(list(lines)) if self.embed_limit else None

        def span_fits(a: int, b: int, heading: str) -> bool:
            if sum(counts[a:b]) > self.size or not self._pieces_fit(a, b):
                return False  # cheap bounds first
            return self.fits("".join(lines[a:b]).strip("\n"), pieces=self._span_pieces(a, b))

        sections: list[Section] | None = None
        if doc_type == "markdown":
            sections = markdown_sections(lines)
        elif doc_type == "code":
            if language == "python":
                sections = python_sections(lines, text, span_fits)
            if sections is None:
                sections = pattern_sections(lines, language)
        if sections is None:
            sections = text_sections(lines)
        chunks: list[Chunk] = []
        packed: list[Section] = []
        for section in sections:
            if section.pack:
                packed.append(section)
                continue
            chunks.extend(self._flush_packed(packed, lines, counts))
            packed = []
            chunks.extend(self._section(section, lines, counts))
        chunks.extend(self._flush_packed(packed, lines, counts))
        return chunks

    def _make(self, lines: Sequence[str], a: int, b: int, heading: str) -> Chunk | None:
        a, b = _trim(lines, a, b)
        body = "".join(lines[a:b]).strip("\n")
        if not body.strip():
            return None
        return Chunk(body, a + 1, b, heading, self._count(body))

    def _section(self, s: Section, lines: Sequence[str], counts: list[int]) -> list[Chunk]:
        start, end = _trim(lines, s.start, s.end)
        body = "".join(lines[start:end]).strip("\n")
        if not body.strip():
            return []
        if self._pieces_fit(start, end):  # else it cannot fit: no need to count it whole
            tokens = self.counter.count(body)
            if self.fits(body, tokens, self._span_pieces(start, end)):
                return [Chunk(body, start + 1, end, s.heading, tokens)]
        return self._windows(list(range(start, end)), lines, counts, s.heading)

    def _flush_packed(
        self, paragraphs: list[Section], lines: Sequence[str], counts: list[int]
    ) -> list[Chunk]:
        """Paragraphs packed into chunks; a paragraph too large alone is cut by lines."""
        if not paragraphs:
            return []
        units = [(p.start, p.end) for p in paragraphs]
        return self._pack(units, lines, counts, "")

    def _windows(
        self, rows: list[int], lines: Sequence[str], counts: list[int], heading: str
    ) -> list[Chunk]:
        return self._pack([(r, r + 1) for r in rows], lines, counts, heading)

    def _pack(
        self, units: list[tuple[int, int]], lines: Sequence[str], counts: list[int], heading: str
    ) -> list[Chunk]:
        """Consecutive units (line ranges) packed into windows with overlap.

        Every loop turn emits a window that ends past the previous one, so it ends."""
        out: list[Chunk] = []
        tokens = [sum(counts[a:b]) for a, b in units]
        budget = self._piece_budget() if self._pieces is not None else None
        pieces = [sum(self._pieces[a:b]) for a, b in units] if self._pieces is not None else []
        i, n = 0, len(units)
        while i < n:
            j = i
            total = held = 0
            # the cheap bounds (each line's served tokens and word pieces), then the real counts
            # and the character cap on the joined text below (BPE merges across lines may differ)
            while (
                j < n
                and total + tokens[j] <= self.size
                and (budget is None or held + pieces[j] <= budget)
            ):
                total += tokens[j]
                held += pieces[j] if budget is not None else 0
                j += 1
            # the real count of the joined text (merges across lines may differ slightly)
            while j > i + 1:
                a, b = units[i][0], units[j - 1][1]
                body = "".join(lines[a:b]).strip("\n")
                if self.fits(body, pieces=self._span_pieces(a, b)):
                    break
                j -= 1
            if j == i + 1 or j == i:
                a, b = units[i]
                body = "".join(lines[a:b]).strip("\n")
                if j == i or not self.fits(body, pieces=self._span_pieces(a, b)):
                    if b - a > 1:  # a paragraph too large on its own: its lines
                        out.extend(
                            self._pack([(r, r + 1) for r in range(a, b)], lines, counts, heading)
                        )
                    else:
                        out.extend(self._cut_line(lines[a], a, heading))
                    i += 1
                    continue
                j = i + 1
            chunk = self._make(lines, units[i][0], units[j - 1][1], heading)
            if chunk is not None:
                out.append(chunk)
            if j >= n:
                break
            # the next window starts `overlap` tokens back (at most half of this window's
            # tokens), and always after this one's start
            k = j
            back = 0
            step_back = min(self.overlap, sum(tokens[i:j]) // 2)
            while k - 1 > i and back + tokens[k - 1] <= step_back:
                back += tokens[k - 1]
                k -= 1
            i = k
        return out

    def _end_guesser(
        self, text: str, offsets: list[tuple[int, int]]
    ) -> Callable[[int, int, int], int] | None:
        """For a line cut by served tokens: ``(a, lo, hi)`` -> the last end in lo..hi whose
        slice the line's word pieces (counted once, whole) put within the embedder's share and
        the character cap. Pieces of a word cut at a window's edge may differ, so it is a
        guess that the caller checks; None without an embedder that gives piece spans."""
        limit = self.embed_limit
        if limit is None or not hasattr(limit, "spans"):
            return None
        pieces = limit.spans(text)
        starts = [p[0] for p in pieces]
        ends = [p[1] for p in pieces]
        budget = self._text_share() - limit.specials()

        def within(a: int, b: int) -> bool:
            first, last = offsets[a][0], offsets[b - 1][1]
            held = bisect.bisect_right(ends, last) - bisect.bisect_left(starts, first)
            return held <= budget and last - first <= self.max_chars

        return lambda a, lo, hi: _last_passing(lo, hi, lambda b: within(a, b))

    def _cut_line(self, line: str, row: int, heading: str) -> list[Chunk]:
        """One line longer than a chunk, cut by tokens into windows that overlap."""
        text = line.rstrip("\r\n")
        enc = self.counter.encode(text)
        offsets: list[tuple[int, int]] = list(getattr(enc, "offsets", []))
        n = len(offsets)
        out: list[Chunk] = []

        def fits_to(a: int, b: int) -> bool:
            return self.fits(text[offsets[a][0] : offsets[b - 1][1]])

        guess_end = self._end_guesser(text, offsets)
        a, last = 0, self.size
        while a < n:
            lo, hi = a + 1, min(n, a + self.size)
            # the largest end whose slice fits (one token always does). The first end tried is
            # where the line's own word pieces say the embedder's share runs out (else where
            # the last window's length ends: windows of one line are alike), then ends away
            # from it at doubling steps (beyond it if it fitted, short of it if not), then a
            # binary search between the nearest end that fitted and the nearest that did not:
            # a few counts a window where a binary search over the whole size took ~9
            guess = max(lo, min(hi, a + last if guess_end is None else guess_end(a, lo, hi)))
            step = 1
            if fits_to(a, guess):
                lo = guess
                while lo < hi:
                    probe = min(hi, lo + step)
                    if not fits_to(a, probe):
                        hi = probe - 1
                        break
                    lo, step = probe, step * 2
            else:
                hi = guess - 1
                while lo < hi:
                    probe = max(lo, hi - step + 1)
                    if fits_to(a, probe):
                        lo = probe
                        break
                    hi, step = probe - 1, step * 2
            b = _last_passing(lo, hi, partial(fits_to, a))
            last = b - a
            piece = text[offsets[a][0] : offsets[b - 1][1]]
            if piece.strip():
                out.append(Chunk(piece, row + 1, row + 1, heading, self._count(piece)))
            if b >= n:
                break
            a = max(a + 1, b - min(self.overlap, (b - a) // 2))
        return out


def _last_passing(lo: int, hi: int, passes: Callable[[int], bool]) -> int:
    """The largest value in lo..hi that passes, by binary search (lo is taken to pass)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if passes(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def chunk_text(
    text: str,
    *,
    counter: TokenCounter,
    size: int,
    overlap: int,
    doc_type: DocType = "text",
    language: str = "",
    embed_limit: LimitCounter | None = None,
    max_chars: int = MAX_CHARS,
) -> list[Chunk]:
    """Chunks of ``text`` (see the module's docstring); ``Invalid`` for bad sizes."""
    chunker = Chunker(
        counter, size=size, overlap=overlap, embed_limit=embed_limit, max_chars=max_chars,
    )  # fmt: skip
    return chunker.chunk(text, doc_type, language)
