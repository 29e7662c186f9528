"""Reference library: ingest throughput end to end and the 20-question eval (issue 20).

Copies ``docs/``, ``README.md`` and ``services/`` (and the root ``.gitignore``) to a snapshot, so
the tree cannot change between the two runs, starts a redis-server, the embedding service and one
gateway, each its own process, then runs ``hivemind ingest docs README.md services`` in the
snapshot (the real command, through hivemind_client): files are walked, sent, chunked in the
served model's tokens, stored, and the command waits until the search index's worker has
embedded every chunk. Throughput is chunks embedded per second of the whole command. A second
run on the unchanged tree must embed nothing. Then every question of
``tests/data/docs_eval.json`` goes to ``POST /v1/docs/search``: a question is answered when a hit
from the expected file has lines inside the expected definition or section.
Writes ``docs_ingest.json``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from bench.bench_gateway_wrk import cpu_info  # noqa: E402
from bench.bench_inference import make_key  # noqa: E402
from bench.bench_memory_api import memory_stack  # noqa: E402
from hivemind_common import python_ast  # noqa: E402

DATA = REPO / "tests" / "data"
# each set by its label in the summary and its key in the JSON; every set after the first was
# written before the ranking changes it then measured (each file's `about` says when and why)
EVAL_SETS = {
    "eval": ("eval", DATA / "docs_eval.json"),  # written before any tuning, then tuned on
    "fresh": ("eval_fresh", DATA / "docs_eval_fresh.json"),
    "third": ("eval_third", DATA / "docs_eval_third.json"),
    "fourth": ("eval_fourth", DATA / "docs_eval_fourth.json"),
    "fifth": ("eval_fifth", DATA / "docs_eval_fifth.json"),  # sixth session, before its work
    "sixth": ("eval_sixth", DATA / "docs_eval_sixth.json"),  # after its first change only
    "seventh": ("eval_seventh", DATA / "docs_eval_seventh.json"),  # seventh session, first
    "eighth": ("eval_eighth", DATA / "docs_eval_eighth.json"),  # seventh session, before docmean
}
EVAL = EVAL_SETS["eval"][1]
PATHS = ["docs", "README.md", "services"]
TOP_K = 5
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")


def python_spans(text: str) -> dict[str, tuple[int, int]]:
    """``def f`` / ``class C`` / ``class C > def m`` -> (first, last) line, decorators included."""
    spans: dict[str, tuple[int, int]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                kind = "class" if isinstance(node, ast.ClassDef) else "def"
                name = f"{prefix}{kind} {node.name}"
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                spans[name] = (first, node.end_lineno or node.lineno)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{name} > ")

    visit(python_ast.parse(text).body, "")
    return spans


def markdown_spans(text: str) -> dict[str, tuple[int, int]]:
    """Heading text -> (its line, the line before the next heading of its level or higher)."""
    lines = text.splitlines()
    heads: list[tuple[int, int, str]] = []
    fence = False
    for i, line in enumerate(lines, start=1):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        found = None if fence else _HEADING.match(line)
        if found:
            heads.append((i, len(found.group(1)), found.group(2).strip()))
    spans: dict[str, tuple[int, int]] = {}
    for n, (line, level, title) in enumerate(heads):
        end = len(lines)
        for later, later_level, _ in heads[n + 1 :]:
            if later_level <= level:
                end = later - 1
                break
        spans.setdefault(title, (line, end))
    return spans


def snapshot(into: Path) -> Path:
    """A copy of the ingested paths (the working tree may change while the bench runs)."""
    (into / ".git").mkdir(parents=True)
    shutil.copy2(REPO / ".gitignore", into / ".gitignore")
    for name in PATHS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, into / name)
    return into


def answered(question: dict[str, Any], hits: list[dict[str, Any]], root: Path) -> int | None:
    """The rank (1-based) of the first hit inside an expected span, or None."""
    path = root / question["source"]
    text = path.read_text()
    spans = python_spans(text) if path.suffix == ".py" else markdown_spans(text)
    wanted = [spans[a] for a in question["anchors"] if a in spans]
    if not wanted:
        raise KeyError(f"no anchor of {question['anchors']} in {question['source']}")
    for rank, hit in enumerate(hits, start=1):
        if hit["source"] != question["source"]:
            continue
        start, end = hit["lines"]
        if any(lo <= start and end <= hi for lo, hi in wanted):
            return rank
    return None


def chunks_embedded(summary: str) -> int:
    """The summary's count of chunks embedded; a run that ended without every vector (the
    embedding service away, the wait run out) is a failed measurement, not a number."""
    found = re.search(r"(\d+) chunks embedded", summary)
    if found is None:
        raise RuntimeError(f"the ingest did not wait for every vector:\n{summary}")
    return int(found.group(1))


def run_ingest(url: str, key: str, root: Path) -> tuple[float, str]:
    env = {**os.environ, "HIVEMIND_API_KEY": key, "HIVEMIND_GATEWAY_URL": url,
           "COLUMNS": "120"}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "hivemind"), "ingest", *PATHS, "--prune"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"hivemind ingest failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    summary = [ln for ln in done.stdout.splitlines() if " files: " in ln or " chunks, " in ln]
    return elapsed, "\n".join(summary)


def evaluate(url: str, key: str, root: Path, eval_set: Path = EVAL) -> dict[str, Any]:
    questions = json.loads(eval_set.read_text())["questions"]
    ranks: list[int | None] = []
    files = 0  # the right file among the hits, whatever its lines
    details = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for q in questions:
            r = c.post("/v1/docs/search", json={"query": q["q"], "top_k": TOP_K})
            r.raise_for_status()
            hits = r.json()["data"]
            rank = answered(q, hits, root)
            ranks.append(rank)
            files += any(h["source"] == q["source"] for h in hits[:TOP_K])
            details.append({"q": q["q"], "rank": rank, "top": [h["cite"] for h in hits[:TOP_K]]})
    return {
        "questions": len(questions),
        "top1": sum(r == 1 for r in ranks),
        "top3": sum(r is not None and r <= 3 for r in ranks),
        f"top{TOP_K}": sum(r is not None for r in ranks),
        f"file_top{TOP_K}": files,
        "details": details,
    }


def main(out_dir: Path) -> dict[str, Any]:
    token = secrets.token_hex(16)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, memory_stack(Path(tmp), token) as stack:
        gw_url = stack.gateway_url
        key = make_key(stack.redis_url)
        root = snapshot(Path(tmp) / "tree")
        load_before = os.getloadavg()
        first_s, first = run_ingest(gw_url, key, root)
        second_s, second = run_ingest(gw_url, key, root)
        embedded, again = chunks_embedded(first), chunks_embedded(second)
        result["ingest"] = {
            "paths": PATHS,
            "seconds": round(first_s, 1),
            "chunks_embedded": embedded,
            "chunks_per_s": round(embedded / first_s, 1),
            # the embedding service's compiled copy is built after start; the clock starts
            # once it answers (null: none was built, the traced copy encoded everything)
            "embedding_compile_s": stack.compile_s,
            "embedding_compile": os.environ.get("HIVEMIND_EMBEDDING_COMPILE", "true"),
            "embedding_attention": stack.attention,
            "summary": first,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        }
        result["second_run"] = {
            "seconds": round(second_s, 1),
            "chunks_embedded": again,
            "summary": second,
        }
        for json_key, eval_set in EVAL_SETS.values():
            result[json_key] = evaluate(gw_url, key, root, eval_set)
    result["note"] = "gateway, embedding, redis and the CLI share the machine's 2 busy cores"
    result["machine"] = cpu_info()
    (out_dir / "docs_ingest.json").write_text(json.dumps(result, indent=2))
    return {
        "chunks_per_s": result["ingest"]["chunks_per_s"],
        "second_run_chunks_embedded": result["second_run"]["chunks_embedded"],
        **{
            f"{label}_{rank}": f"{result[key][rank]}/{result[key]['questions']}"
            for label, (key, _) in EVAL_SETS.items()
            for rank in (f"top{TOP_K}", "top1")
        },
    }


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(out), indent=2))
