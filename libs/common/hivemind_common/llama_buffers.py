"""llama.cpp's extra weight buffers (AMX repacking) are kept off where they crash.

llama-cpp-python builds llama.cpp from source for the machine it installs on. On a CPU with
AMX (Intel Xeon Sapphire Rapids and later) that build repacks Q4_0, Q4_1 and Q8_0 weights into
an AMX buffer when a model loads, and the first decode of the default model (SmolLM2's Q4_1
GGUF, llama-cpp-python 0.3.36) then dies of a segmentation fault, taking the whole process with
it: inference, the exporter's validation, the tests. Upstream knows the AMX path as broken
(ggml-org/llama.cpp#20824: segfaults in ``ggml_backend_amx_mul_mat``; #16315: wrong results
for Q4_0/Q4_1). Loading with ``use_extra_bufts = false`` keeps every weight in the plain CPU
buffer and decodes correctly.

``HIVEMIND_LLAMA_EXTRA_BUFFERS``: ``auto`` (default) turns the extra buffers off only where the
build has AMX (``AMX_INT8 = 1`` in llama.cpp's system info), so other CPUs keep their repacked
AVX2/AVX-512 kernels; ``off`` always; ``on`` never (llama.cpp's own default).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
_lock = threading.Lock()
_off: bool | None = None  # what the first call decided


def wanted_off(mode: str, system_info: str) -> bool:
    """Whether model loads should skip llama.cpp's extra buffer types."""
    if mode == "off":
        return True
    if mode == "on":
        return False
    return "AMX_INT8 = 1" in system_info


def configure_llama(mode: str | None = None) -> bool:
    """Make later ``llama_cpp.Llama(...)`` loads skip the extra buffers where ``mode`` says
    (once per process; the setting is read from the environment when ``mode`` is None).
    Returns whether they are off. An unknown mode is treated as ``auto``."""
    global _off
    chosen = (mode or os.environ.get("HIVEMIND_LLAMA_EXTRA_BUFFERS") or "auto").strip().lower()
    if chosen not in MODES:
        log.warning("HIVEMIND_LLAMA_EXTRA_BUFFERS=%r is not one of %s; using auto", chosen, MODES)
        chosen = "auto"
    with _lock:
        if _off is not None:
            return _off
        import llama_cpp.llama_cpp as lc

        info = lc.llama_print_system_info()
        text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
        off = wanted_off(chosen, text)
        if off:
            original = lc.llama_model_default_params
            fields = {name for name, *_ in getattr(type(original()), "_fields_", [])}
            if "use_extra_bufts" not in fields:  # a later binding renamed it: say so, loudly
                raise RuntimeError(
                    "this llama-cpp-python has no llama_model_params.use_extra_bufts; the AMX "
                    "repacking that crashes cannot be turned off (HIVEMIND_LLAMA_EXTRA_BUFFERS="
                    "on keeps llama.cpp's default)"
                )

            def without_extra_buffers() -> Any:
                params = original()
                params.use_extra_bufts = False
                return params

            lc.llama_model_default_params = without_extra_buffers
            log.info("llama.cpp extra weight buffers off (%s; AMX repacking crashes)", chosen)
        _off = off
        return off
