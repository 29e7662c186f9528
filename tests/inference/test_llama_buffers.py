"""llama.cpp's AMX weight repacking stays off where the build has it (it segfaulted the first
decode of the default model on an AMX machine and took the process down)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hivemind_common.llama_buffers import wanted_off
from hivemind_common.models_paths import default_llm_gguf

AMX_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
PLAIN_INFO = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | REPACK = 1 |"


def test_auto_turns_the_extra_buffers_off_only_where_the_build_has_amx() -> None:
    assert wanted_off("auto", AMX_INFO)
    assert not wanted_off("auto", PLAIN_INFO)
    assert wanted_off("off", PLAIN_INFO)
    assert not wanted_off("on", AMX_INFO)


def _run(code: str, mode: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HIVEMIND_LLAMA_EXTRA_BUFFERS"}
    if mode is not None:
        env["HIVEMIND_LLAMA_EXTRA_BUFFERS"] = mode
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(("mode", "expected"), [("off", "False"), ("on", "True")])
def test_the_setting_decides_what_model_loads_ask_for(mode: str, expected: str) -> None:
    code = (
        "from hivemind_common.llama_buffers import configure_llama\n"
        "import llama_cpp.llama_cpp as lc\n"
        "configure_llama(); configure_llama()\n"  # a second call changes nothing
        "print(lc.llama_model_default_params().use_extra_bufts)\n"
    )
    done = _run(code, mode)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == expected


def test_the_default_model_decodes_with_the_default_setting() -> None:
    """On an AMX machine this process died of SIGSEGV before the setting existed."""
    code = (
        "from hivemind_common.llama_buffers import configure_llama\n"
        "import llama_cpp\n"
        "configure_llama()\n"
        f"llm = llama_cpp.Llama(model_path={str(default_llm_gguf())!r}, n_ctx=256, "
        "n_threads=1, verbose=False)\n"
        "out = llm.create_completion('The capital of France is', max_tokens=4, temperature=0)\n"
        "print('decoded', out['usage']['completion_tokens'])\n"
    )
    done = _run(code, None)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "decoded" in done.stdout
