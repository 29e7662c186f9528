"""Run the real Claude Code and Codex CLIs once each through a local gateway (not in `make test`).

    npm install --prefix /tmp/agents @anthropic-ai/claude-code @openai/codex
    .venv/bin/python scripts/try_agents.py --bin /tmp/agents/node_modules/.bin

Starts Redis, inference and gateway as processes (``bench.bench_inference.llm_stack``), serving
the shipped SmolLM2 (``default``, context 2048) and a tiny random model with a Hermes tool
template and a 32k context (``tiny-hermes``: its answers are noise, but every agent prompt fits).
Each CLI is run against each model with a one-shot prompt, in a scratch HOME, with
non-essential traffic off; what each printed and the gateway's requests are reported as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PROMPT = "Reply with the single word: hello"


def _models(folder: Path) -> list[dict[str, Any]]:
    from inference.tiny_tools import write_tool_ggufs

    from hivemind_common.models_paths import default_llm_gguf

    tiny = write_tool_ggufs(folder)["hermes"]
    return [
        {"name": "default", "gguf": str(default_llm_gguf()), "n_ctx": 2048},
        {"name": "tiny-hermes", "gguf": str(tiny), "n_ctx": 32768},
    ]


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run(
            cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        return {"cmd": cmd[:3], "timed_out": True, "stdout": str(exc.stdout or "")[-2000:]}
    return {
        "cmd": cmd[:3],
        "rc": done.returncode,
        "stdout": done.stdout[-2000:],
        "stderr": done.stderr[-2000:],
    }


def _claude(bin_dir: Path, gateway: str, key: str, model: str, home: Path) -> dict[str, Any]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway,
        "ANTHROPIC_AUTH_TOKEN": key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "16",  # a random model would write noise to the end
        "DISABLE_AUTOUPDATER": "1",
    }
    return _run([str(bin_dir / "claude"), "-p", PROMPT, "--model", model], env, home, 900)


def _codex(bin_dir: Path, gateway: str, key: str, model: str, home: Path) -> dict[str, Any]:
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "hivemind"\n'
        "model_max_output_tokens = 16\n\n"
        "[model_providers.hivemind]\n"
        'name = "Hive-Mind"\n'
        f'base_url = "{gateway}/v1"\n'
        'env_key = "HIVEMIND_API_KEY"\n'
        'wire_api = "responses"\n'
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "HIVEMIND_API_KEY": key,
    }
    cmd = [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", PROMPT]
    return _run(cmd, env, home, 900)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin", type=Path, required=True, help="folder holding claude and codex")
    parser.add_argument("--model", nargs="*", default=["default", "tiny-hermes"])
    args = parser.parse_args()
    from bench.bench_inference import llm_stack

    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hm-agents-") as tmp:
        folder = Path(tmp)
        os.environ["HIVEMIND_MODELS"] = json.dumps(_models(folder))
        # a 20k-token agent prompt on one shared CPU thread takes minutes to read
        os.environ["HIVEMIND_UPSTREAM_TIMEOUT_S"] = "900"
        with llm_stack(embedding=False) as stack:
            for model in args.model:
                for name, run in (("claude", _claude), ("codex", _codex)):
                    home = folder / f"home-{name}-{model}"
                    home.mkdir()
                    report[f"{name}/{model}"] = run(
                        args.bin, stack.gateway_url, stack.api_key, model, home
                    )
            log = (stack.folder / "gateway.log").read_text(errors="replace")
            report["gateway_log_tail"] = log[-3000:]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
