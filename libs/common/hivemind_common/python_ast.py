"""``ast.parse`` that holds when several threads parse at once.

CPython 3.11 builds a parsed tree's Python objects with one recursion counter for the whole
interpreter (python/cpython#106905): a thread switch while two threads build trees leaves it at
the other thread's depth, and the parse fails with ``SystemError: AST constructor recursion
depth mismatch``. The gateway chunks documents in worker threads, so two ingests at once could
fail that way (CI saw it in a test on 3.11.7). Every parse here goes through one lock, and a
parse that fails that way anyway (a library's thread parsing beside it, or the standard
library's own, such as ``traceback`` placing a caret) is tried again. The lock is re-entrant: a
finalizer that parsed in the middle of a parse would fail that parse (then tried again) rather
than hang every parse after it.
"""

from __future__ import annotations

import ast
import threading

TRIES = 3
_LOCK = threading.RLock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse(source)``; raises what it raises (``SyntaxError``, ``ValueError``,
    ``RecursionError``, ``MemoryError``), and ``SystemError`` only when every try hit the bug."""
    for attempt in range(TRIES):
        with _LOCK:
            try:
                return ast.parse(source, filename=filename)
            except SystemError:
                if attempt == TRIES - 1:
                    raise
    raise AssertionError("unreachable")
