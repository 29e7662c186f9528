"""``python_ast.parse`` holds when threads parse at once (CPython 3.11's ``ast.parse`` failed
with ``SystemError: AST constructor recursion depth mismatch``, python/cpython#106905)."""

from __future__ import annotations

import ast
import gc
import threading
import time
from collections.abc import Callable

import pytest

from hivemind_common import python_ast

SOURCE = "\n".join(
    f"def f{i}(a, b=[1, 2, {{'k': (3, 4)}}]):\n    return [x * 2 for x in range(a) if x % b[0]]"
    for i in range(300)
)
PARSES = 150  # a thread's parses; the bare ast.parse on 3.11.7 fails within a few


class _Yields:
    """Cyclic garbage whose finalizer lets another thread run: the collector runs it in the
    middle of a tree's construction, as any program's garbage can be."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        time.sleep(0)


def _errors_when_two_threads_parse(parse: Callable[[str], ast.Module]) -> list[str]:
    errors: list[str] = []

    def worker(depth: int) -> None:
        if depth:  # the two threads parse at different stack depths
            return worker(depth - 1)
        for _ in range(PARSES):
            if errors:
                return
            for _ in range(300):
                _Yields()
            try:
                parse(SOURCE)
            except Exception as exc:  # every failure is the answer
                errors.append(f"{type(exc).__name__}: {exc}")
        return None

    threads = [threading.Thread(target=worker, args=(d,)) for d in (0, 40)]
    before = gc.get_threshold()
    gc.set_threshold(2000, 1000, 1000)  # the garbage piles up, then is collected mid-parse
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a parse never returned"
    finally:
        gc.collect()  # the finalizers run here, not in a later test's thread
        gc.set_threshold(*before)
    return errors


def test_two_threads_parse_at_once_without_a_system_error() -> None:
    assert _errors_when_two_threads_parse(python_ast.parse) == []


def test_what_ast_parse_raises_is_raised() -> None:
    with pytest.raises(SyntaxError):
        python_ast.parse("def (:\n")
    assert isinstance(python_ast.parse("x = 1").body[0], ast.Assign)


def test_a_parse_failing_every_try_raises_its_system_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def broken(source: str, filename: str = "<unknown>") -> ast.Module:
        calls.append(source)
        raise SystemError("AST constructor recursion depth mismatch (before=1, after=2)")

    monkeypatch.setattr(ast, "parse", broken)
    with pytest.raises(SystemError):
        python_ast.parse("x = 1")
    assert len(calls) == python_ast.TRIES
