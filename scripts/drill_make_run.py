"""The acceptance drill of issue 13 against ``hivemind up`` (what ``make run`` runs after
``make install``): with a trained version serving, kill -9 inference; once the supervisor has
restarted it the gateway must answer with the registry's serving version, never ``base``; the
same after a full restart of ``hivemind up``.

It starts ``hivemind up`` on free ports with its own ``HIVEMIND_DATA_DIR`` (``--data``, default a
fresh folder under /tmp), posts 100 synthetic learning samples through the gateway, asks for a
cycle (``POST /v1/learning/train``, the operator key ``hivemind up`` wrote), waits until the
exporter has deployed the new version, and then runs the two checks. Every step is printed with
its time; the summary is written to ``<data>/drill.json``. Nothing else on the machine is touched:
only the processes it started are stopped.

    .venv/bin/python scripts/drill_make_run.py [--data /tmp/hm-drill] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
HIVEMIND = str(Path(sys.executable).with_name("hivemind"))
SERVICES = ("embedding", "inference", "trainer", "exporter", "gateway", "mcp")
HEADER = "x-hivemind-model-version"
CHAT = {
    "model": "default",
    "messages": [{"role": "user", "content": "Say hi"}],
    "max_tokens": 4,
    "temperature": 0,
    "hivemind": {"rag": False, "capture": False},
}
T0 = time.monotonic()


def say(what: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {what}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(cond: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # keep polling until the deadline
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} ({last})")


class Up:
    """One ``hivemind up`` process (its own session), its output kept."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self) -> None:
        self.lines = []
        self.proc = subprocess.Popen(
            [HIVEMIND, "up"],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log.open("a") as fh:
            for line in self.proc.stdout:
                self.lines.append(line)
                fh.write(line)
                fh.flush()

    def text(self) -> str:
        return "".join(self.lines)

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"hivemind up exited:\n{self.text()[-3000:]}")
        return "all services ready" in self.text()

    def child(self, name: str) -> psutil.Process:
        assert self.proc is not None
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            if f"hivemind_{name}" in " ".join(p.cmdline()):
                return p
        raise LookupError(f"no {name} process")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def hosts_file(folder: Path, ports: dict[str, int]) -> Path:
    lines = ["profiles:", "  local:", "    nodes:", "      me: {address: 127.0.0.1}"]
    lines += ["    placement:"] + [f"      {s}: {{node: me, port: {p}}}" for s, p in ports.items()]
    path = folder / "hosts.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def chat(gw: httpx.Client) -> tuple[int, str | None]:
    """One chat that inference must answer itself: a new prompt each time, so the gateway's
    response cache (temperature 0) cannot answer it for a dead inference."""
    body = {**CHAT, "messages": [{"role": "user", "content": f"Say hi ({time.time_ns()})"}]}
    r = gw.post("/v1/chat/completions", json=body)
    if r.headers.get("x-hivemind-cache") == "hit":
        raise RuntimeError("a cached answer: the check needs one inference made")
    return r.status_code, r.headers.get(HEADER)


def registry_serving(gw: httpx.Client) -> str | None:
    data = gw.get("/v1/models/versions").raise_for_status().json()["data"]
    serving = [v["version"] for v in data if v["status"] == "serving"]
    return serving[0] if serving else None


def train_a_version(gw: httpx.Client, timeout: float) -> str:
    from hivemind_trainer.data.synthetic import make_chats

    for messages in make_chats(100, seed=4242):
        gw.post(
            "/v1/learning/samples", json={"messages": messages, "rating": 1.0}
        ).raise_for_status()
    say("100 samples posted; asking for a cycle")
    job_id = gw.post("/v1/learning/train", json={}).raise_for_status().json()["job_id"]
    job = wait(
        lambda: (
            j
            if (j := gw.get(f"/v1/learning/jobs/{job_id}").json())["status"]
            in ("succeeded", "failed", "rejected")
            else None
        ),
        timeout,
        f"job {job_id}",
        interval=5,
    )
    say(f"job {job_id}: {job['status']} version={job.get('version')} error={job.get('error')}")
    if job["status"] != "succeeded" or not job.get("version"):
        raise RuntimeError(f"the cycle did not produce a version: {job}")
    version = str(job["version"])
    wait(lambda: registry_serving(gw) == version, timeout, f"{version} deployed", interval=5)
    return version


def answered_with(gw: httpx.Client, timeout: float) -> str | None:
    """The version header of the first chat answered 200 (inference may be starting)."""

    def ok() -> str | None:
        status, version = chat(gw)
        return version if status == 200 else None

    return str(wait(ok, timeout, "a chat answered 200", interval=0.5))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    data = (args.data or Path(tempfile.mkdtemp(prefix="hm-drill-"))).resolve()
    data.mkdir(parents=True, exist_ok=True)
    ports = {s: free_port() for s in SERVICES}
    redis_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env.update(
        HIVEMIND_DATA_DIR=str(data),
        HIVEMIND_HOSTS_FILE=str(hosts_file(data, ports)),
        HIVEMIND_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        HIVEMIND_PROFILE="local",
        # the trainer: one cycle on request only, even on a loaded machine, short sequences
        HIVEMIND_THRESHOLD="1000000",
        HIVEMIND_IDLE_CHECK="false",
        HIVEMIND_SEQ_LEN="256",
        # the drill is about serving truth, not the gate: a fast-mode adapter on 100 synthetic
        # chats may well lose to the base on the task eval, and a rejected version never serves
        HIVEMIND_TASK_EVAL="false",
    )
    up = Up(env, data / "up.log")
    report: dict[str, Any] = {"data_dir": str(data), "ports": ports, "redis_port": redis_port}
    say(f"hivemind up: data {data}, gateway port {ports['gateway']}, redis {redis_port}")
    try:
        up.start()
        wait(up.ready, 600, "all services ready", interval=1)
        key = (data / "secrets" / "admin.key").read_text().strip()
        gw = httpx.Client(
            base_url=f"http://127.0.0.1:{ports['gateway']}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=300,
        )
        say(f"ready; before training the gateway answers with {chat(gw)}")
        version = train_a_version(gw, args.timeout)
        report["trained_version"] = version
        report["before_kill"] = answered_with(gw, 120)
        say(f"serving {version}; the gateway answers with {report['before_kill']}")

        victim = up.child("inference")
        report["killed_pid"] = victim.pid
        victim.kill()  # SIGKILL
        victim.wait(60)
        say(f"kill -9 inference (pid {victim.pid})")
        statuses: list[int] = []

        def restarted() -> str | None:
            status, got = chat(gw)
            statuses.append(status)
            return got if status == 200 else None

        report["after_kill"] = wait(restarted, 300, "inference back", interval=0.5)
        report["after_kill_new_pid"] = up.child("inference").pid
        report["answers_while_down"] = sorted(set(statuses))
        report["registry_after_kill"] = registry_serving(gw)
        say(
            f"after the supervisor's restart: header {report['after_kill']}, registry "
            f"{report['registry_after_kill']} (answers while down: {report['answers_while_down']})"
        )
        gw.close()

        up.stop()
        say("hivemind up stopped (SIGINT); starting it again")
        up.start()
        wait(up.ready, 600, "all services ready after the restart", interval=1)
        gw = httpx.Client(
            base_url=f"http://127.0.0.1:{ports['gateway']}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=300,
        )
        report["after_full_restart"] = answered_with(gw, 120)
        report["registry_after_full_restart"] = registry_serving(gw)
        say(
            f"after the full restart: header {report['after_full_restart']}, registry "
            f"{report['registry_after_full_restart']}"
        )
        gw.close()
    finally:
        up.stop()
        report["seconds"] = round(time.monotonic() - T0, 1)
        report["load_end"] = os.getloadavg()
        (data / "drill.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    good = (
        report.get("after_kill")
        == report.get("trained_version")
        == report.get("after_full_restart")
        and report.get("registry_after_kill") == report.get("trained_version")
        and report.get("registry_after_full_restart") == report.get("trained_version")
    )
    say("PASS" if good else "FAIL")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
