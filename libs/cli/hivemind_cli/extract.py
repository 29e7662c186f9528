"""Text out of PDF and HTML files for ``hivemind ingest``, with well-kept extractors.

The reference library stores text; a PDF or an HTML page is turned into Markdown here, on the
machine that has the file, so the gateway's Markdown chunker splits it by its sections:

* **PDF** (pypdf): the text of each page under a ``# Page N`` heading, so every chunk's heading
  names the page it came from (and a chunk never spans two pages' headings);
* **HTML** (BeautifulSoup + markdownify): headings become ATX headings, lists and links stay,
  and what a reader never sees (``script``, ``style``, ``template``, ``noscript``, ``head``) is
  dropped.

A chunk's ``lines`` then count lines of this Markdown, not of the original file. A file that
cannot be read (a damaged or encrypted PDF, one with no text layer) gives None: the command skips
it as unreadable and says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_BLANKS = re.compile(r"\n{3,}")
# what the gateway refuses in text (C0 controls but tab and newline, DEL, C1): PDF text layers
# carry form feeds and stray controls
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INVISIBLE = ("script", "style", "template", "noscript", "head", "iframe", "svg")


def pdf_markdown(data: bytes) -> str | None:
    """Each page's text under a ``# Page N`` heading; None when the PDF has no readable text."""
    import io

    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return None
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception:
        # (AttributeError on a mangled object, PyPdfError, ...): it is skipped, not the run
        log.debug("unreadable PDF", exc_info=True)
        return None
    parts = [
        f"# Page {n}\n\n{text.strip()}\n" for n, text in enumerate(pages, start=1) if text.strip()
    ]
    return _tidy("\n".join(parts)) if parts else None


def html_markdown(data: bytes) -> str | None:
    """The page as Markdown (headings, lists, links, code), without what a reader never sees."""
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    try:
        soup = BeautifulSoup(data, "html.parser")
        for tag in soup(list(_INVISIBLE)):
            tag.decompose()
        body = soup.body or soup
        text = MarkdownConverter(heading_style="ATX", bullets="-").convert_soup(body)
    except Exception:
        log.debug("unreadable HTML", exc_info=True)
        return None
    text = _tidy(text)
    return text or None


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n")
    lines = [line.rstrip() for line in _CONTROLS.sub(" ", text).split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"


EXTRACTORS: dict[str, Callable[[bytes], str | None]] = {
    ".pdf": pdf_markdown,
    ".html": html_markdown,
    ".htm": html_markdown,
    ".xhtml": html_markdown,
}


def extractor_for(path: Path) -> Callable[[bytes], str | None] | None:
    """The extractor for ``path``'s kind of file, or None for text files (read as they are)."""
    return EXTRACTORS.get(path.suffix.lower())
