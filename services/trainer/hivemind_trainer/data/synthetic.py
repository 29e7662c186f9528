"""Deterministic synthetic coding-assistant chats, for benchmarks and end-to-end tests.

Varied enough that the near-duplicate filter keeps them apart (different names, numbers,
languages and tasks), short enough that a hundred of them train in a minute on a CPU.
"""

from __future__ import annotations

import random

_LANGS = ("Python", "Rust", "Go", "TypeScript", "Bash", "SQL")
_TASKS = (
    (
        "reverse the string {name}",
        "Reverse {name} by walking it from the end: in {lang} a slice or "
        "an iterator does it in one line, and the result has the same length ({n} characters).",
    ),
    (
        "sum the numbers from 1 to {n}",
        "The sum of 1..{n} is {n} * ({n} + 1) / 2 = {tri}. In {lang} "
        "a loop that adds each number gives the same {tri}, but the formula needs no loop.",
    ),
    (
        "check whether {n} is prime",
        "{n} is {prime}. Test divisors from 2 up to the square root of "
        "{n}; in {lang} stop at the first one that divides it evenly.",
    ),
    (
        "count the words in the file {name}.txt",
        "Read {name}.txt, split on whitespace and count the "
        "pieces. In {lang} stream the file line by line so a large file never sits in memory.",
    ),
    (
        "name a variable that holds {name} totals",
        "Call it `{name}_total` in {lang}: the noun first, "
        "then what it holds, so `{name}_total` reads well next to `{name}_count`.",
    ),
    (
        "convert {n} seconds to minutes",
        "{n} seconds is {mins} minutes and {secs} seconds: divide by "
        "60 for the minutes and keep the remainder. In {lang} integer division does both.",
    ),
    (
        "write a function that doubles {name}",
        "In {lang}, take {name} as the argument and return "
        "{name} * 2; for {n} it returns {dbl}. Keep it pure so it is easy to test.",
    ),
    (
        "explain the error 'index {n} out of range' in {name}",
        "The code read position {n} of {name}, but {name} is shorter than {n1} items. Check the "
        "length before indexing, or iterate over {name} directly in {lang}.",
    ),
)
_NAMES = (
    "orders",
    "users",
    "events",
    "lines",
    "tokens",
    "prices",
    "records",
    "paths",
    "logs",
    "scores",
    "queue",
    "buffer",
    "matrix",
    "cache",
    "items",
    "rows",
)


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def make_chats(count: int, *, seed: int = 7) -> list[list[dict[str, str]]]:
    """``count`` distinct user/assistant chats (some with a system prompt), reproducibly."""
    rng = random.Random(seed)
    out: list[list[dict[str, str]]] = []
    for i in range(count):
        q, a = _TASKS[i % len(_TASKS)]
        n = rng.randint(7, 9999)
        values = {
            "name": f"{rng.choice(_NAMES)}_{i}",
            "lang": rng.choice(_LANGS),
            "n": n,
            "n1": n + 1,
            "tri": n * (n + 1) // 2,
            "prime": "prime" if _is_prime(n) else "not prime",
            "mins": n // 60,
            "secs": n % 60,
            "dbl": 2 * n,
        }
        chat = [
            {"role": "user", "content": f"How do I {q.format(**values)}?"},
            {"role": "assistant", "content": a.format(**values)},
        ]
        if i % 4 == 0:
            chat.insert(0, {"role": "system", "content": "You are a concise coding assistant."})
        out.append(chat)
    return out
