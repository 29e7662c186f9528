"""Preference data from what users said about answers: corrections and ratings.

- a sample with a ``correction`` whose chat ended with the model's answer is a **pair**: the
  correction preferred over the original answer (DPO);
- a rating at or above ``min_rating`` marks the answer **good**, below it **bad** (KTO, for
  answers nobody corrected).

Records live beside the accepted samples, in ``datasets/learning/preference.jsonl``
(``{id, tenant, label: pair|good|bad, prompt, chosen?, rejected?, split, created_at}``, the texts
scrubbed like every stored sample, the split by the same hash as the SFT data). A badly rated
answer never trains the SFT stage (the filter rejects it); here it is the undesirable example.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivemind_common.jobs import LearningSample
from hivemind_common.redaction import ScrubReport, scrub_text
from hivemind_trainer.data.dataset import append_jsonl, read_jsonl, split_of
from hivemind_trainer.data.sample_filter import ROLES, _text

Record = dict[str, Any]
PREFERENCE_FILE = "preference.jsonl"


def preference_record(
    sample: LearningSample, *, min_rating: float, heldout_fraction: float
) -> Record | None:
    """The preference record a sample gives, or None (no correction, no rating, or a chat
    whose last turn is not the model's answer)."""
    if sample.correction is None and sample.rating is None:
        return None
    messages: list[dict[str, str]] = []
    for msg in sample.messages:
        text = _text(msg.content)
        if msg.role not in ROLES or text is None:
            return None
        messages.append({"role": msg.role, "content": text.strip()})
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or not messages[-1]["content"]:
        return None
    prompt, answer = messages[:-1], messages[-1]["content"]
    if prompt[-1]["role"] != "user":
        return None
    report = ScrubReport()
    prompt = [{"role": m["role"], "content": scrub_text(m["content"], report)} for m in prompt]
    answer = scrub_text(answer, report)
    rec: Record = {
        "id": sample.id,
        "tenant": sample.tenant,
        "prompt": prompt,
        "split": split_of(sample.id, heldout_fraction),
        "created_at": sample.created_at,
    }
    correction = (sample.correction or "").strip()
    if correction:
        chosen = scrub_text(correction, report)
        if chosen == answer:
            return None
        return {**rec, "label": "pair", "chosen": chosen, "rejected": answer}
    assert sample.rating is not None
    good = sample.rating >= min_rating
    return {
        **rec,
        "label": "good" if good else "bad",
        "chosen" if good else "rejected": answer,
        "rating": sample.rating,
    }


class PreferenceStore:
    """Append-only preference records, read once per id."""

    def __init__(self, root: Path) -> None:
        self.path = root / "learning" / PREFERENCE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, rec: Record) -> None:
        append_jsonl(self.path, {**rec, "stored_at": time.time()})

    def records(self) -> list[Record]:
        seen: set[str] = set()
        out = []
        for rec in read_jsonl(self.path):
            if rec.get("id") not in seen:
                seen.add(rec["id"])
                out.append(rec)
        return out


@dataclass
class PreferenceData:
    """What a cycle's preference stage trains on and is judged on."""

    pairs: list[Record] = field(default_factory=list)  # train split
    rated: list[Record] = field(default_factory=list)  # good / bad, train split
    heldout_pairs: list[Record] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        labels = Counter(r["label"] for r in self.rated)
        return {
            "pairs": len(self.pairs),
            "good": labels.get("good", 0),
            "bad": labels.get("bad", 0),
            "heldout_pairs": len(self.heldout_pairs),
        }


def load_preference_data(records: list[Record], *, keep_tenant: Any = None) -> PreferenceData:
    """Split records into train pairs, train ratings and held-out pairs (``keep_tenant``, when
    given, says which tenants still consent)."""
    data = PreferenceData()
    for rec in records:
        if keep_tenant is not None and not keep_tenant(rec.get("tenant")):
            continue
        if rec["label"] == "pair":
            (data.heldout_pairs if rec["split"] == "heldout" else data.pairs).append(rec)
        elif rec["split"] == "train":
            data.rated.append(rec)
    return data
