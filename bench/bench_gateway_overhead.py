"""Gateway overhead on chats (retrieval included) and response-cache hit latency.

Same stack as ``bench_inference`` (Redis, embedding, inference, gateway as processes). Twenty
facts are stored so retrieval does real work (query embedding, hybrid search, token budget).
Overhead: for each pair, one chat straight to inference and the same chat through the gateway
(``max_tokens=1``, sampled so the cache is bypassed); overhead = gateway time - direct time,
interleaved so background load hits both. Cache hits: one deterministic chat asked again and
again. Writes ``gateway_overhead.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_inference import Stack, llm_stack, percentile, say
from hivemind_gateway.openai.injection import RAG_HEADER, with_system_text

PAIRS = 40
CACHE_HITS = 200
FACTS = [
    ("atlas.deploy", "Project atlas deploys to the staging cluster kestrel every Tuesday."),
    ("atlas.db", "Project atlas stores its data in Postgres 16 with logical replication."),
    ("atlas.lang", "Project atlas is written in Python 3.11 with FastAPI."),
    ("ci.runner", "CI runs on two self-hosted runners labelled fast and gpu."),
    ("style.lines", "The house style limits lines to 100 characters."),
]


def _seed_facts(gw: httpx.Client) -> None:
    for i in range(4):
        for key, value in FACTS:
            gw.put(
                f"/v1/facts/{key}.{i}", json={"value": f"{value} (variant {i})"}
            ).raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = gw.post("/v1/rag/context", json={"query": "where does project atlas deploy?"})
        if r.status_code == 200 and "kestrel" in r.json().get("text", ""):
            return
        time.sleep(0.2)
    raise TimeoutError("facts never became searchable")


def _chat(prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "default",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 1,
        "temperature": 0.5,
        **extra,
    }


def _overhead(stack: Stack, *, rag: bool) -> dict[str, float]:
    direct = httpx.Client(
        base_url=stack.inference_url, headers=stack.inference_headers(), timeout=60
    )
    gw = httpx.Client(base_url=stack.gateway_url, headers=stack.gateway_headers(), timeout=60)
    diffs: list[float] = []
    through: list[float] = []
    straight: list[float] = []
    injected = 0
    prompt = "Where does project atlas deploy, and on which day?"
    direct_messages = [{"role": "user", "content": prompt}]
    with direct, gw:
        if rag:
            ctx = gw.post("/v1/rag/context", json={"query": prompt, "budget_tokens": 512}).json()
            direct_messages = with_system_text(direct_messages, f"{RAG_HEADER}\n{ctx['text']}")
        for i in range(PAIRS + 5):
            t0 = time.perf_counter()
            r = gw.post("/v1/chat/completions", json=_chat(prompt, hivemind={"rag": rag}))
            t1 = time.perf_counter()
            r.raise_for_status()
            body = _chat(prompt)
            body["messages"] = direct_messages  # what the gateway sent on, retrieval included
            if rag and int(r.headers.get("x-hivemind-rag-items", "0")):
                injected += 1
            t2 = time.perf_counter()
            direct.post("/v1/chat/completions", json=body).raise_for_status()
            t3 = time.perf_counter()
            if i >= 5:  # warm-up
                through.append((t1 - t0) * 1000)
                straight.append((t3 - t2) * 1000)
                diffs.append((t1 - t0 - (t3 - t2)) * 1000)
        rag_only: list[float] = []
        for _ in range(20 if rag else 0):  # the retrieval call alone, for comparison
            t0 = time.perf_counter()
            gw.post("/v1/rag/context", json={"query": prompt, "budget_tokens": 512})
            rag_only.append((time.perf_counter() - t0) * 1000)
    return {
        "rag_context_call_p50_ms": round(percentile(rag_only, 50), 2) if rag_only else None,
        "gateway_p50_ms": round(percentile(through, 50), 2),
        "direct_p50_ms": round(percentile(straight, 50), 2),
        "overhead_p50_ms": round(percentile(diffs, 50), 2),
        "overhead_p95_ms": round(percentile(diffs, 95), 2),
        "overhead_of_medians_ms": round(
            statistics.median(through) - statistics.median(straight), 2
        ),
        "requests_with_injected_items": injected,
    }


def _cache_hits(stack: Stack) -> dict[str, float]:
    with httpx.Client(
        base_url=stack.gateway_url, headers=stack.gateway_headers(), timeout=60
    ) as gw:
        body = _chat("Name one planet.", temperature=0, max_tokens=8, hivemind={"rag": False})
        first = gw.post("/v1/chat/completions", json=body)
        first.raise_for_status()
        times: list[float] = []
        for _ in range(CACHE_HITS):
            t0 = time.perf_counter()
            r = gw.post("/v1/chat/completions", json=body)
            times.append((time.perf_counter() - t0) * 1000)
            if r.headers.get("x-hivemind-cache") != "hit":
                raise RuntimeError(f"expected a cache hit, got {r.headers.get('x-hivemind-cache')}")
    return {
        "cache_hit_p50_ms": round(percentile(times, 50), 3),
        "cache_hit_p95_ms": round(percentile(times, 95), 3),
        "cache_hits": CACHE_HITS,
    }


def main(out_dir: Path) -> dict[str, Any]:
    with llm_stack(embedding=True) as stack:
        with httpx.Client(
            base_url=stack.gateway_url, headers=stack.gateway_headers(), timeout=60
        ) as gw:
            _seed_facts(gw)
        say("facts searchable")
        with_rag = _overhead(stack, rag=True)
        say(f"with retrieval: {with_rag}")
        without_rag = _overhead(stack, rag=False)
        say(f"without retrieval: {without_rag}")
        hits = _cache_hits(stack)
        say(f"cache hits: {hits}")
    result = {
        "pairs": PAIRS,
        "with_retrieval": with_rag,
        "without_retrieval": without_rag,
        **hits,
        "targets": {"overhead_p50_ms": 20, "cache_hit_p50_ms": 2},
        "note": "client-side wall times over loopback; shared 2-core machine, noisy",
    }
    (out_dir / "gateway_overhead.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(out), indent=2))
