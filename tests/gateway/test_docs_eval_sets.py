"""The reference library's eval sets (tests/data/docs_eval*.json, run by bench/bench_docs.py)
still name files, definitions and sections that exist: a rename would otherwise turn a question
into a silent miss, or an error in the middle of a bench."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_docs import PATHS, markdown_spans, python_spans  # noqa: E402

SETS = sorted((REPO / "tests" / "data").glob("docs_eval*.json"))


def test_there_are_four_sets_of_twenty() -> None:
    assert len(SETS) >= 4
    for path in SETS:
        assert len(json.loads(path.read_text())["questions"]) == 20, path.name


@pytest.mark.parametrize("path", SETS, ids=lambda p: p.stem)
def test_every_anchor_resolves_in_the_ingested_tree(path: Path) -> None:
    for q in json.loads(path.read_text())["questions"]:
        source = REPO / q["source"]
        assert source.is_file(), q["source"]
        assert q["source"].split("/")[0] in PATHS, q["source"]
        text = source.read_text()
        spans = python_spans(text) if source.suffix == ".py" else markdown_spans(text)
        missing = [a for a in q["anchors"] if a not in spans]
        assert not missing, f"{q['source']}: {missing}"
