"""The LoCoMo development split as memories and questions, and recall@k over it.

Each conversation becomes one tenant's memories: every turn is a memory whose ``session_id``
names its LoCoMo session and whose metadata carries the speaker, the session's date and the
turn's ``dia_id``. A photo a speaker shared is part of what was said, so its caption is kept in
the text ("[shares a photo: ...]"). Questions of categories 1-4 are searched within their
conversation; a question is a hit at k when any of its evidence turns is in the top k.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = Path(os.environ.get("HIVEMIND_LOCOMO_DIR", REPO.parent / "shared/data/locomo-dev"))
CATEGORIES = (1, 2, 3, 4)
CATEGORY_NAMES = {1: "multi_hop", 2: "temporal", 3: "open_domain", 4: "single_hop"}


@dataclass
class Turn:
    dia_id: str
    speaker: str
    text: str
    session: int
    date: str  # ISO 8601, the session's date and time

    def memory(self, conversation: str) -> dict[str, Any]:
        """The body of ``POST /v1/memories`` for this turn."""
        return {
            "text": self.text,
            "session_id": f"{conversation}-s{self.session}",
            "metadata": {"speaker": self.speaker, "date": self.date, "dia_id": self.dia_id},
        }


@dataclass
class Question:
    text: str
    evidence: frozenset[str]
    category: int


@dataclass
class Conversation:
    name: str
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


def _date(raw: str) -> str:
    return datetime.strptime(raw.strip(), "%I:%M %p on %d %B, %Y").isoformat(timespec="minutes")


def _text(turn: dict[str, Any]) -> str:
    text = str(turn.get("text", "")).strip()
    caption = turn.get("blip_caption")
    return f"{text} [shares a photo: {caption}]" if caption else text


def load(folder: Path = DEFAULT_DIR) -> list[Conversation]:
    """Every conversation in ``folder`` (``<name>.json``), turns in order."""
    out = []
    for path in sorted(folder.glob("*.json")):
        raw = json.loads(path.read_text())
        conv = Conversation(name=f"locomo{path.stem}")
        n = 1
        while f"session_{n}" in raw:
            date = _date(raw[f"session_{n}_date_time"])
            for turn in raw[f"session_{n}"]:
                conv.turns.append(Turn(turn["dia_id"], turn["speaker"], _text(turn), n, date))
            n += 1
        known = {t.dia_id for t in conv.turns}
        for qa in raw["qa"]:
            if qa.get("category") not in CATEGORIES:
                continue
            cited = [e.strip() for raw in qa.get("evidence", ()) for e in str(raw).split(";")]
            evidence = frozenset(e for e in cited if e in known)
            if evidence:
                conv.questions.append(Question(qa["question"], evidence, int(qa["category"])))
        out.append(conv)
    return out


class Recall:
    """Hits at 5 and 10, overall and per category."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, question: Question, ranked_dia_ids: list[str]) -> None:
        hits = [bool(question.evidence & set(ranked_dia_ids[:k])) for k in (5, 10)]
        for name in ("all", CATEGORY_NAMES[question.category]):
            row = self.counts.setdefault(name, [0, 0, 0])
            row[0] += 1
            row[1] += hits[0]
            row[2] += hits[1]

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {"n": n, "recall@5": round(h5 / n, 4), "recall@10": round(h10 / n, 4)}
            for name, (n, h5, h10) in sorted(self.counts.items())
        }
