"""The general regression set: what the base knew, in other domains and styles than user chats.

A learning cycle trains on the users' chats; the gate asks whether the model forgot anything
else. So this set is deliberately *not* in the training style: code to write and to read,
arithmetic and unit reasoning with worked answers, plain facts, lists, JSON, multi-turn
follow-ups. It is built here from small tables with exact answers (deterministic: the same
chats every run, so losses are comparable across cycles), plus the hand-written chats of
``general_eval.jsonl``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import NamedTuple

Chat = list[dict[str, str]]

CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Brazil", "Brasília"),
    ("Argentina", "Buenos Aires"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Poland", "Warsaw"),
    ("Greece", "Athens"),
    ("Turkey", "Ankara"),
    ("India", "New Delhi"),
    ("China", "Beijing"),
    ("Mexico", "Mexico City"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Ireland", "Dublin"),
    ("Austria", "Vienna"),
    ("Hungary", "Budapest"),
    ("Czechia", "Prague"),
    ("Denmark", "Copenhagen"),
    ("Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"),
    ("Switzerland", "Bern"),
    ("South Korea", "Seoul"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Morocco", "Rabat"),
    ("Nigeria", "Abuja"),
    ("Russia", "Moscow"),
    ("Ukraine", "Kyiv"),
    ("Iceland", "Reykjavík"),
    ("New Zealand", "Wellington"),
]
ELEMENTS = [
    ("hydrogen", "H", 1),
    ("helium", "He", 2),
    ("carbon", "C", 6),
    ("nitrogen", "N", 7),
    ("oxygen", "O", 8),
    ("sodium", "Na", 11),
    ("magnesium", "Mg", 12),
    ("aluminium", "Al", 13),
    ("silicon", "Si", 14),
    ("sulfur", "S", 16),
    ("chlorine", "Cl", 17),
    ("potassium", "K", 19),
    ("calcium", "Ca", 20),
    ("iron", "Fe", 26),
    ("copper", "Cu", 29),
    ("zinc", "Zn", 30),
    ("silver", "Ag", 47),
    ("tin", "Sn", 50),
    ("gold", "Au", 79),
    ("lead", "Pb", 82),
]
PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]
UNITS = [
    ("kilometres", "metres", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("kilograms", "grams", 1000),
    ("litres", "millilitres", 1000),
    ("days", "hours", 24),
]
PY_FUNCS = [
    ("returns the square of a number", "def square(x):\n    return x * x"),
    ("reverses a string", "def reverse(s):\n    return s[::-1]"),
    ("returns the largest item of a list", "def largest(items):\n    return max(items)"),
    (
        "counts the vowels in a string",
        "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')",
    ),
    ("checks whether a number is even", "def is_even(n):\n    return n % 2 == 0"),
    ("joins a list of words with spaces", "def join_words(words):\n    return ' '.join(words)"),
    ("returns the sum of a list of numbers", "def total(numbers):\n    return sum(numbers)"),
    (
        "removes duplicates from a list, keeping order",
        "def unique(items):\n    return list(dict.fromkeys(items))",
    ),
    (
        "computes the factorial of n",
        "def factorial(n):\n    result = 1\n    for k in range(2, n + 1):\n        result *= k\n"
        "    return result",
    ),
    (
        "reads a text file and returns its lines",
        "def read_lines(path):\n    with open(path) as fh:\n        return fh.read().splitlines()",
    ),
]
PY_OUTPUTS = [
    ("print(len('hello'))", "5"),
    ("print(3 * 'ab')", "ababab"),
    ("print(7 // 2)", "3"),
    ("print(7 % 3)", "1"),
    ("print(sorted([3, 1, 2]))", "[1, 2, 3]"),
    ("print('a,b,c'.split(','))", "['a', 'b', 'c']"),
    ("print(2 ** 10)", "1024"),
    ("print(list(range(3)))", "[0, 1, 2]"),
    ("print('Hi'.upper())", "HI"),
    ("print(bool([]))", "False"),
    ("print({'a': 1}.get('b', 0))", "0"),
    ("print(abs(-4.5))", "4.5"),
]
SHELL = [
    ("list the files in a directory, hidden ones included", "ls -la"),
    ("show the current directory", "pwd"),
    ("count the lines of a file named notes.txt", "wc -l notes.txt"),
    ("search for the word error in app.log", "grep error app.log"),
    ("make a directory called build", "mkdir build"),
    ("show the last 20 lines of a log file", "tail -n 20 app.log"),
]


class GeneralItem(NamedTuple):
    """A general chat and its answer: the part of the last reply that carries what the base
    knew (a city, a number, the code), so that forgetting can be measured on that part alone,
    apart from the reply's wording around it (which a taught style may rightly change)."""

    chat: Chat
    answer: str
    kind: str = ""  # hand-written, knowledge, reasoning, code or styles


def _kind(items: list[GeneralItem], kind: str) -> list[GeneralItem]:
    return [item._replace(kind=kind) for item in items]


def _qa(
    question: str, answer: str, key: str | None = None, system: str | None = None
) -> GeneralItem:
    """A one-question chat; ``key`` is the part of ``answer`` that carries the knowledge
    (all of it when None)."""
    chat: Chat = [{"role": "system", "content": system}] if system else []
    chat += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return GeneralItem(chat, answer if key is None else key)


def _knowledge() -> list[GeneralItem]:
    out = [
        _qa(f"What is the capital of {c}?", f"The capital of {c} is {city}.", city)
        for c, city in CAPITALS
    ]
    out += [
        _qa(f"{city} is the capital of which country?", f"{city} is the capital of {c}.", c)
        for c, city in CAPITALS
    ]
    out += [
        _qa(f"Which element has the symbol {sym}?", f"{sym} is the symbol of {name}.", name)
        for name, sym, _ in ELEMENTS
    ]
    out += [
        _qa(f"What is the chemical symbol of {name}?", f"The symbol of {name} is {sym}.", sym)
        for name, sym, _ in ELEMENTS
    ]
    out += [
        _qa(
            f"What is the atomic number of {name}?",
            f"{name.capitalize()} has atomic number {z}.",
            str(z),
        )
        for name, _, z in ELEMENTS
    ]
    out += [
        _qa(f"Which planet is number {i + 1} from the Sun?", f"{p} is planet number {i + 1}.", p)
        for i, p in enumerate(PLANETS)
    ]
    return out


def _reasoning() -> list[GeneralItem]:
    out: list[GeneralItem] = []
    for a, b in [(12, 7), (23, 19), (48, 6), (105, 37), (64, 16), (9, 13), (250, 125), (81, 9)]:
        left = a + b - b // 2 - 1
        out.append(
            _qa(
                f"A shop has {a} apples and receives {b} more, then sells {b // 2 + 1}. "
                "How many are left? Show the steps.",
                f"{a} + {b} = {a + b}; {a + b} - {b // 2 + 1} = {left}. {left} apples are left.",
                f"{a} + {b} = {a + b}; {a + b} - {b // 2 + 1} = {left}",
            )
        )
        out.append(_qa(f"What is {a} times {b}?", f"{a} × {b} = {a * b}.", str(a * b)))
    for big, small, factor in UNITS:
        for n in (2, 5, 12):
            out.append(
                _qa(
                    f"How many {small} are in {n} {big}?",
                    f"One of the {big} is {factor} {small}, so {n} {big} are {n * factor} {small}.",
                    f"{n * factor}",
                )
            )
    for start, step in [(2, 3), (5, 5), (1, 4), (10, -2), (7, 7)]:
        seq = [start + step * k for k in range(5)]
        out.append(
            _qa(
                f"What comes next: {', '.join(map(str, seq))}?",
                f"Each term adds {step}, so the next is {seq[-1] + step}.",
                str(seq[-1] + step),
            )
        )
    for x, y in [(3, 8), (15, 4), (-2, 1), (0, 9), (100, 99)]:
        bigger = max(x, y)
        out.append(_qa(f"Which is larger, {x} or {y}?", f"{bigger} is larger.", str(bigger)))
    return out


def _code() -> list[GeneralItem]:
    out = [
        _qa(f"Write a Python function that {what}.", f"```python\n{code}\n```", code)
        for what, code in PY_FUNCS
    ]
    out += [
        _qa(f"What does this Python print?\n\n{src}", f"It prints `{printed}`.", printed)
        for src, printed in PY_OUTPUTS
    ]
    out += [_qa(f"Which shell command would {what}?", f"`{cmd}`", cmd) for what, cmd in SHELL]
    out += [
        _qa(
            f"Explain this function in one sentence:\n\n```python\n{code}\n```",
            f"It {what}.",
            what,
        )
        for what, code in PY_FUNCS
    ]
    return out


def _styles() -> list[GeneralItem]:
    out: list[GeneralItem] = []
    for country, city in CAPITALS[:10]:
        answer = json.dumps({"country": country, "capital": city})
        out.append(
            _qa(
                f"Answer in JSON with keys country and capital: the capital of {country}.",
                answer,
                system="You answer with JSON only.",
            )
        )
    for i in range(0, 24, 3):
        names = [p for p in PLANETS[i % 8 : i % 8 + 3]] or PLANETS[:3]
        out.append(
            _qa(
                f"List {len(names)} planets as a bulleted list.",
                "\n".join(f"- {n}" for n in names),
            )
        )
    for name, sym, z in ELEMENTS[:10]:
        chat = [
            {"role": "user", "content": f"Tell me about {name}."},
            {"role": "assistant", "content": f"{name.capitalize()} is element {z}."},
            {"role": "user", "content": "And its symbol?"},
            {"role": "assistant", "content": f"Its symbol is {sym}."},
        ]
        out.append(GeneralItem(chat, sym))
    return out


def hand_written() -> list[GeneralItem]:
    """The short hand-written chats kept in ``general_eval.jsonl``, each with its ``answer``."""
    text = resources.files("hivemind_trainer.data").joinpath("general_eval.jsonl").read_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [GeneralItem(r["messages"], r["answer"], "hand-written") for r in records]


def general_items() -> list[GeneralItem]:
    """Every chat of the general set with its answer, in a fixed order."""
    return (
        hand_written()
        + _kind(_knowledge(), "knowledge")
        + _kind(_reasoning(), "reasoning")
        + _kind(_code(), "code")
        + _kind(_styles(), "styles")
    )


def general_chats() -> list[Chat]:
    """Every chat of the general set, in a fixed order."""
    return [item.chat for item in general_items()]


__all__ = ["GeneralItem", "general_chats", "general_items", "hand_written"]
