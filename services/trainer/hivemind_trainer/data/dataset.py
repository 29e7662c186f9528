"""The versioned learning dataset on disk, with lineage and a stable train / held-out split.

Layout under ``$HIVEMIND_DATA_DIR/datasets/learning/``:

- ``accepted.jsonl``: every accepted sample, append-only, each with a sequence number, its source,
  the filter version that let it in and its split (``train`` or ``heldout``, from a hash of its
  id, so a sample never changes side).
- ``versions/<dNNNN>/``: a frozen snapshot made for one training cycle: ``train.jsonl`` and
  ``heldout.jsonl`` (the samples new to it), ``replay.jsonl`` (earlier train samples mixed in) and
  ``manifest.json`` (sequence range, counts by source, filter version, parent version).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hivemind_trainer.data.sample_filter import FILTER_VERSION, Accepted

Record = dict[str, Any]


def split_of(sample_id: str, heldout_fraction: float) -> str:
    """``heldout`` for a fixed share of ids, chosen by hash: stable across runs and machines."""
    bucket = int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:4], "big") / 2**32
    return "heldout" if bucket < heldout_fraction else "train"


def _write_jsonl(path: Path, records: list[Record]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def append_jsonl(path: Path, rec: Record, *, sync: bool = True) -> None:
    """Append one record as a line (fsynced unless ``sync`` is off). A torn last line (a crash
    mid-write) is closed first, so it stays one line that reading skips: appended to, it
    swallowed the next record, acknowledged and fsynced, into a line no one could parse."""
    data = (json.dumps(rec, ensure_ascii=False) + "\n").encode()
    with path.open("a+b") as fh:  # appends whatever the read position (O_APPEND)
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                data = b"\n" + data
        fh.write(data)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[Record]:
    """Records of a JSONL file; a torn line (a crash mid-append, cut inside a character too)
    is skipped."""
    if not path.is_file():
        return []
    out: list[Record] = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class Dataset:
    """Append accepted samples; freeze versions for training cycles."""

    def __init__(self, root: Path, *, heldout_fraction: float = 0.1) -> None:
        self.root = root / "learning"
        self.heldout_fraction = heldout_fraction
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "versions").mkdir(exist_ok=True)

    @property
    def accepted_path(self) -> Path:
        return self.root / "accepted.jsonl"

    def append(
        self, accepted: Accepted, *, seq: int, extra: Record | None = None, sync: bool = True
    ) -> Record:
        """Write one accepted sample (fsynced unless ``sync`` is off: a bulk import syncs once
        at the end) and return its record; ``extra`` adds fields (an import's provenance, a
        preference pair's rejected answer, a rating)."""
        rec: Record = {
            "seq": seq,
            "id": accepted.sample_id,
            "tenant": accepted.tenant,
            "source": accepted.source,
            "messages": accepted.messages,
            "tokens": accepted.tokens,
            "hash": accepted.content_hash,
            "secrets_scrubbed": accepted.secrets_scrubbed,
            "filter_version": FILTER_VERSION,
            "split": split_of(accepted.sample_id, self.heldout_fraction),
            "created_at": accepted.created_at,
            "accepted_at": time.time(),
            **(extra or {}),
        }
        append_jsonl(self.accepted_path, rec, sync=sync)
        return rec

    def sync(self) -> None:
        """fsync the accepted file (after appends made with ``sync=False``)."""
        if self.accepted_path.is_file():
            with self.accepted_path.open("a") as fh:
                os.fsync(fh.fileno())

    def records(self) -> Iterator[Record]:
        """Accepted records in order; a sample appended twice (crash before ack) counts once."""
        seen: set[str] = set()
        for rec in read_jsonl(self.accepted_path):
            if rec["id"] not in seen:
                seen.add(rec["id"])
                yield rec

    def count_after(self, seq: int) -> int:
        return sum(1 for r in self.records() if r["seq"] > seq)

    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.root / "versions").iterdir() if p.is_dir())

    def version_dir(self, version: str) -> Path:
        return self.root / "versions" / version

    def manifest(self, version: str) -> Record:
        data: Record = json.loads((self.version_dir(version) / "manifest.json").read_text())
        return data

    def freeze(
        self,
        *,
        after_seq: int,
        replay_ratio: float,
        seed: int = 0,
        only: Callable[[Record], bool] | None = None,
    ) -> Record:
        """Snapshot the samples newer than ``after_seq`` plus replay of older train samples;
        ``only`` keeps the new samples it accepts (a foundation run: the imported ones)."""
        everything = list(self.records())
        new = [r for r in everything if r["seq"] > after_seq and (only is None or only(r))]
        old_train = [r for r in everything if r["seq"] <= after_seq and r["split"] == "train"]
        train = [r for r in new if r["split"] == "train"]
        heldout = [r for r in new if r["split"] == "heldout"]
        rng = random.Random(seed)
        n_replay = min(len(old_train), round(replay_ratio * len(train)))
        replay = rng.sample(old_train, n_replay) if n_replay else []
        existing = self.versions()
        version = f"d{len(existing) + 1:04d}"
        directory = self.version_dir(version)
        directory.mkdir(parents=True, exist_ok=False)
        _write_jsonl(directory / "train.jsonl", train)
        _write_jsonl(directory / "heldout.jsonl", heldout)
        _write_jsonl(directory / "replay.jsonl", replay)
        manifest: Record = {
            "version": version,
            "parent": existing[-1] if existing else None,
            "created_at": time.time(),
            "filter_versions": sorted({r["filter_version"] for r in new}),
            "seq_from": after_seq + 1,
            "seq_to": max((r["seq"] for r in new), default=after_seq),
            "counts": {"train": len(train), "heldout": len(heldout), "replay": len(replay)},
            "sources": dict(Counter(r["source"] for r in new)),
            "replay_ratio": replay_ratio,
            "heldout_fraction": self.heldout_fraction,
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return manifest

    def load_version(self, version: str) -> dict[str, list[Record]]:
        """The train, heldout and replay records of a frozen version."""
        directory = self.version_dir(version)
        return {
            part: read_jsonl(directory / f"{part}.jsonl") for part in ("train", "heldout", "replay")
        }

    def all_heldout(
        self, *, up_to_seq: int | None = None, only: Callable[[Record], bool] | None = None
    ) -> list[Record]:
        """Every held-out sample so far (the gate's held-out set grows with the data)."""
        return [
            r
            for r in self.records()
            if r["split"] == "heldout"
            and (up_to_seq is None or r["seq"] <= up_to_seq)
            and (only is None or only(r))
        ]


def is_imported(record: Record) -> bool:
    """A sample that came from ``hivemind learn import`` (a foundation run trains on these)."""
    return str(record.get("source") or "").startswith("import:")
