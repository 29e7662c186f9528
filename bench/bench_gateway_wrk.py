"""The gateway's hot path under Debian's ``wrk``, with the original system's command (issue 17).

``hivemind up`` (what ``make run`` starts: an embedded Redis and all six services) runs in a
temporary data dir on free ports, with the gateway's default worker count unless
``HIVEMIND_GATEWAY_WORKERS`` is set. Then ``wrk -t1 -c16 -d20s --latency`` drives, one after
the other: ``GET /v1/facts/{key}``, ``PUT /v1/facts/{key}``, ``PUT /v1/sessions/{id}/context``,
``POST /v1/memories/search`` and ``POST /v1/rag/context`` (10k memories stored first, all with
their vectors). Bodies come from wrk Lua scripts. The two search runs rotate over six queries,
as a chat's retrieval and an agent's loop repeat theirs: after the first round each worker has
their vectors among its recent queries (``search/embedder.py``). A sixth run,
``memories_search_new_queries``, asks a query never asked before on every request, so each one
waits for the embedding service's encoder: the figure for searches nobody made before.

Figures: requests/s, p50/p99, errors, the ratio to the original's figures (2,446 req/s fact
lookup, 2,304 req/s session context store), the machine's load average around each run, the
collector's pauses under the fact-lookup load (``hivemind_gc_pause_seconds``, every worker),
and each worker's memory with the 10k items loaded. A same-run reference (``wrk_reference``: a
plain FastAPI + uvicorn process doing the original's work against the same Redis) answers the
two original routes just before and just after the gateway's own run, so the ratio to it is not
blurred by other work on a shared machine. The runs start once the gateway is quiet (the 10k
items' change streams applied). Writes ``gateway_wrk.json``. ``BENCH_WRK_SECONDS`` shortens
the runs and ``BENCH_WRK_ITEMS`` changes the 10k (a quick try; the acceptance figures need 10k).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
ORIGINAL_RPS = {"fact_get": 2446.0, "session_context_put": 2304.0}
TARGETS = {
    "fact_get": {"requests_per_s": 6100.0, "p99_ms": 15.0},
    "session_context_put": {"requests_per_s": 2 * 2304.0},
    "memories_search": {"p50_ms": 25.0},
    "rag_context": {"p50_ms": 25.0},
    # the same target where no query repeats (reported; the encoder's CPU is the floor here)
    "memories_search_new_queries": {"p50_ms": 25.0},
}
SEARCH_ITEMS = int(os.environ.get("BENCH_WRK_ITEMS", "10000"))
SERVICES = ("gateway", "mcp", "embedding", "inference", "trainer", "exporter")
_WORDS_TEXT = """
    redis postgres neovim docker pytest kubernetes backup deploy staging cluster tuesday python
    fastapi replication runner latency index vector memory session context budget release branch
    review migration schema token cache queue worker stream
"""
WORDS = tuple(_WORDS_TEXT.split())

LUA = {
    "fact_put": """
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = '{"value": "bench note ' .. n .. ': the deploy of release ' .. (n % 97) ..
    ' goes to the staging cluster"}'
  return wrk.format(nil, "/v1/facts/bench.put." .. (n % 1000), nil, body)
end
""",
    "session_context_put": """
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = '{"context": "working on the release branch, step ' .. n .. '"}'
  return wrk.format(nil, "/v1/sessions/bench-s" .. (n % 64) .. "/context", nil, body)
end
""",
}
_SEARCH_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local queries = {"how do we deploy to staging", "postgres replication lag", "pytest runner",
  "docker cache on the worker", "kubernetes index migration", "session budget tokens"}
local n = 0
request = function()
  n = n + 1
  local body = '{"query": "' .. queries[(n % #queries) + 1] .. '"EXTRA}'
  return wrk.format(nil, nil, nil, body)
end
"""
LUA["memories_search"] = _SEARCH_LUA.replace("EXTRA", ', "top_k": 5')
LUA["rag_context"] = _SEARCH_LUA.replace("EXTRA", "")
# every request a query not asked before (32^3 word triples): the gateway's recent-query vectors
# never help, so each search waits for the embedding service's encoder
LUA["memories_search_new_queries"] = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local words = {"deploy", "staging", "postgres", "replication", "lag", "pytest", "runner", "docker",
  "cache", "worker", "kubernetes", "index", "migration", "session", "budget", "tokens", "redis",
  "backup", "nightly", "grafana", "alert", "disk", "latency", "queue", "retry", "timeout", "build",
  "release", "branch", "merge", "review", "lint"}
local n = 0
request = function()
  n = n + 1
  local a = words[(n % #words) + 1]
  local b = words[(math.floor(n / #words) % #words) + 1]
  local c = words[(math.floor(n / (#words * #words)) % #words) + 1]
  local body = '{"query": "how do we ' .. a .. ' the ' .. b .. ' ' .. c .. '", "top_k": 5}'
  return wrk.format(nil, nil, nil, body)
end
"""


def say(text: str) -> None:
    sys.stderr.write(f"[gateway_wrk] {text}\n")
    sys.stderr.flush()


def ensure_wrk() -> str:
    """Debian's wrk, installed with apt-get when missing (as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    say("installing wrk (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_info() -> dict[str, Any]:
    model, flags = "", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and not model:
                model = value.strip()
            if name.strip() == "flags" and not flags:
                flags = value.split()
    except OSError:
        pass
    # the bfloat16 ones decide the embedder's and the trainer's precision (and so their speed)
    wanted = ("avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile",
              "fma", "sse4_2", "aes", "sha_ni")  # fmt: skip
    return {
        "model": model,
        "cores": os.cpu_count(),
        "flags": [f for f in flags if f in wanted],
        "python": platform.python_version(),
    }


# --- the stack --------------------------------------------------------------------------------
def _hosts_file(folder: Path, ports: dict[str, int]) -> Path:
    placement = "\n".join(
        f"      {name}: {{node: localhost, port: {port}}}" for name, port in ports.items()
    )
    text = f"""version: 1
profiles:
  local:
    description: bench_gateway_wrk's own ports
    nodes:
      localhost:
        address: 127.0.0.1
        labels: [gpu, storage]
    placement:
{placement}
    redis:
      mode: standalone
      url: redis://127.0.0.1:{ports["gateway"] + 1}/0
"""
    path = folder / "hosts.yaml"
    path.write_text(text)
    return path


@contextmanager
def up_stack(folder: Path) -> Iterator[dict[str, Any]]:
    """``hivemind up`` in ``folder`` on free ports; yields urls, the Redis URL and the pid."""
    ports = {name: free_port() for name in SERVICES}
    redis_port = free_port()
    data_dir = folder / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env.update(
        HIVEMIND_DATA_DIR=str(data_dir),
        HIVEMIND_HOSTS_FILE=str(_hosts_file(folder, ports)),
        HIVEMIND_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        HIVEMIND_LOG_LEVEL="WARNING",
    )
    for name in ("HIVEMIND_GATEWAY_WORKERS",):
        if os.environ.get(name):
            env[name] = os.environ[name]
    log = (folder / "up.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "hivemind"), "up"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    try:
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"hivemind up exited: {(folder / 'up.log').read_text()[-3000:]}")
            try:
                if httpx.get(gateway + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway of hivemind up was not ready in 900 s")
            time.sleep(0.5)
        from hivemind_common.settings import CommonSettings

        redis_url = CommonSettings(
            data_dir=data_dir, redis_url=f"redis://127.0.0.1:{redis_port}/0"
        ).redis_url
        yield {
            "gateway": gateway,
            "redis_url": redis_url,
            "port": ports["gateway"],
            "data_dir": data_dir,
        }
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def make_key(redis_url: str) -> str:
    """A write key of tenant 'bench' whose own rate no wrk run reaches."""
    from hivemind_common.auth import MAX_KEY_RPM, ApiKeyStore
    from hivemind_common.redis import connect_redis

    async def make() -> str:
        redis = connect_redis(redis_url)
        try:
            _, key = await ApiKeyStore(redis).create(tenant="bench", role="write", rpm=MAX_KEY_RPM)
            return key
        finally:
            await redis.aclose()

    return asyncio.run(make())


def _sentence(i: int) -> str:
    w = [WORDS[(i * k + k * k) % len(WORDS)] for k in range(1, 9)]
    return f"note {i}: the {w[0]} {w[1]} of the {w[2]} {w[3]} needs {w[4]} and {w[5]} ({w[6]})"


def seed(gateway: str, key: str) -> dict[str, Any]:
    """One fact to read, and SEARCH_ITEMS memories with their vectors."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=120) as c:
        c.put(
            "/v1/facts/bench.read", json={"value": "the bench reads this fact"}
        ).raise_for_status()
        started = time.perf_counter()
        for start in range(0, SEARCH_ITEMS, 500):
            batch = [{"text": _sentence(i)} for i in range(start, start + 500)]
            r = c.post("/v1/memories/batch", json={"memories": batch})
            r.raise_for_status()
        stored_s = time.perf_counter() - started
        deadline = time.monotonic() + 1800
        pending = -1
        while time.monotonic() < deadline:
            # every worker answers in turn: all of them must have every vector
            pendings = [
                int(c.get("/v1/rag/stats").json().get("pending_vectors", 0)) for _ in range(6)
            ]
            pending = max(pendings)
            if pending == 0:
                break
            time.sleep(1.0)
    return {
        "memories": SEARCH_ITEMS,
        "store_s": round(stored_s, 1),
        "until_all_vectors_s": round(time.perf_counter() - started, 1),
        "pending_at_end": pending,
    }


# --- wrk --------------------------------------------------------------------------------------
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return round(float(number) * _UNITS[unit], 3)


def run_wrk(
    wrk: str, url: str, key: str, seconds: int, script: str | None, folder: Path
) -> dict[str, Any]:
    argv = [wrk, "-t1", "-c16", f"-d{seconds}s", "--latency"]
    argv += ["-H", f"Authorization: Bearer {key}"]
    if script is not None:
        path = folder / f"script-{abs(hash(script))}.lua"
        path.write_text(script)
        argv += ["-s", str(path)]
    load_before = load_average()
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "load_before": load_before,
        "load_after": load_average(),
    }
    for pct in ("50", "75", "90", "99"):
        found = re.search(rf"\s{pct}%\s+(\S+)", out)
        if found:
            result[f"p{pct}_ms"] = _ms(found.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["errors"] = int(non2xx.group(1)) if non2xx else 0
    sockets = re.search(r"Socket errors:(.*)", out)
    result["socket_errors"] = sockets.group(1).strip() if sockets else ""
    return result


def gc_pauses(gateway: str) -> dict[str, float]:
    """The gateway's collector pauses so far, every worker together (histogram buckets): wall
    clock (what a waiting request sees, preemption included) and the collector's CPU time."""
    text = httpx.get(gateway + "/metrics", timeout=30).text
    out: dict[str, float] = {}
    for clock, metric in (
        ("wall", "hivemind_gc_pause_seconds"),
        ("cpu", "hivemind_gc_pause_cpu_seconds"),
    ):
        by_bound: dict[str, float] = {}
        for labels, value in re.findall(metric + r"_bucket\{([^}]*)\} (\S+)", text):
            bound = re.search(r'le="([^"]+)"', labels)
            if bound:
                by_bound[bound.group(1)] = by_bound.get(bound.group(1), 0.0) + float(value)
        total = by_bound.get("+Inf", 0.0)
        out["collections"] = total
        out[f"{clock}_over_20ms"] = total - by_bound.get("0.02", 0.0)
        out[f"{clock}_over_10ms"] = total - by_bound.get("0.01", 0.0)
    return out


def _port_pids(port: int) -> list[int]:
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out.stdout)})


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_quiet(port: int, limit_s: float = 180.0) -> float:
    """Seconds until the gateway's processes use under a tenth of a core (the change streams
    of the 10k items applied, backfill done), ``limit_s`` at most."""
    started = time.monotonic()
    pids = _port_pids(port)
    while time.monotonic() - started < limit_s:
        before = _cpu_s(pids)
        time.sleep(2.0)
        if _cpu_s(pids) - before < 0.2:
            break
    return round(time.monotonic() - started, 1)


def worker_memory(port: int) -> list[dict[str, Any]]:
    """RSS and PSS (MiB) of each process that serves the gateway's port."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    pids = sorted({int(p) for p in re.findall(r"pid=(\d+)", out.stdout)})
    rows = []
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        mem = {m[0]: int(m[1]) / 1024 for m in re.findall(r"^(Rss|Pss):\s+(\d+)", text, re.M)}
        role = "worker" if "multiprocessing" in cmd or len(pids) == 1 else "supervisor"
        rows.append(
            {"pid": pid, "role": role, "rss_mib": round(mem["Rss"]), "pss_mib": round(mem["Pss"])}
        )
    return rows


@contextmanager
def reference(redis_url: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.wrk_reference",
            "--port",
            str(port),
            "--redis-url",
            redis_url,
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/docs", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(out_dir: Path) -> dict[str, Any]:
    wrk = ensure_wrk()
    seconds = int(os.environ.get("BENCH_WRK_SECONDS", "20"))
    folder = Path(tempfile.mkdtemp(prefix="hm-bench-wrk-"))
    result: dict[str, Any] = {
        "command": f"wrk -t1 -c16 -d{seconds}s --latency",
        "cpu": cpu_info(),
        "workers": os.environ.get("HIVEMIND_GATEWAY_WORKERS") or "default (cores, at most 8)",
        "original_requests_per_s": ORIGINAL_RPS,
        "targets": TARGETS,
    }
    try:
        with up_stack(folder) as stack:
            gw = stack["gateway"]
            key = make_key(stack["redis_url"])
            say("seeding 10k memories (and waiting for their vectors)")
            result["seed"] = seed(gw, key)
            result["seed"]["quiet_after_s"] = wait_quiet(stack["port"])
            ref_runs: dict[str, list[dict[str, Any]]] = {n: [] for n in ORIGINAL_RPS}
            routes: dict[str, tuple[str, str | None]] = {
                "fact_get": ("/v1/facts/bench.read", None),
                "fact_put": ("/", LUA["fact_put"]),
                "session_context_put": ("/", LUA["session_context_put"]),
                "memories_search": ("/v1/memories/search", LUA["memories_search"]),
                "rag_context": ("/v1/rag/context", LUA["rag_context"]),
                "memories_search_new_queries": (
                    "/v1/memories/search",
                    LUA["memories_search_new_queries"],
                ),
            }
            runs: dict[str, Any] = {}
            gc_before = gc_pauses(gw)
            for name, (path, script) in routes.items():
                say(f"wrk {name}")
                if name in ORIGINAL_RPS:  # the reference just before and just after
                    with reference(stack["redis_url"]) as ref_url:
                        ref_runs[name].append(
                            run_wrk(wrk, ref_url + path, key, seconds, script, folder)
                        )
                runs[name] = run_wrk(wrk, gw + path, key, seconds, script, folder)
                if name in ORIGINAL_RPS:
                    with reference(stack["redis_url"]) as ref_url:
                        ref_runs[name].append(
                            run_wrk(wrk, ref_url + path, key, seconds, script, folder)
                        )
                if name == "fact_get":
                    after = gc_pauses(gw)
                    runs[name]["gc"] = {k: after[k] - gc_before[k] for k in after}
                if name in ORIGINAL_RPS:
                    runs[name]["ratio_to_original"] = round(
                        runs[name]["requests_per_s"] / ORIGINAL_RPS[name], 2
                    )
            result["runs"] = runs
            result["memory_per_process"] = worker_memory(stack["port"])
            result["reference"] = ref_runs
            for name, bracket in ref_runs.items():
                ref_rps = sum(r["requests_per_s"] for r in bracket) / len(bracket)
                runs[name]["reference_requests_per_s"] = round(ref_rps, 1)
                runs[name]["ratio_to_reference_same_run"] = round(
                    runs[name]["requests_per_s"] / max(ref_rps, 1e-9), 2
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["acceptance"] = _acceptance(result)
    (out_dir / "gateway_wrk.json").write_text(json.dumps(result, indent=2))
    return result


def _acceptance(result: dict[str, Any]) -> dict[str, bool]:
    runs = result.get("runs", {})
    out: dict[str, bool] = {}
    for name, target in TARGETS.items():
        run = runs.get(name)
        if run is None:
            continue
        for metric, bound in target.items():
            value = run.get(metric)
            ok = value is not None and (
                value >= bound if metric == "requests_per_s" else value <= bound
            )
            out[f"{name}.{metric}"] = bool(ok)
    fact = runs.get("fact_get", {})
    if "gc" in fact:
        out["fact_get.no_gc_pause_over_20ms_wall"] = fact["gc"]["wall_over_20ms"] == 0
        out["fact_get.no_gc_pause_over_20ms_cpu"] = fact["gc"]["cpu_over_20ms"] == 0
    return out


if __name__ == "__main__":
    print(
        json.dumps(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "var/bench"), indent=2)
    )
