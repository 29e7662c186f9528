"""Tiny random models whose chat templates speak the three tool-call families, served together.

The templates are small, written here after the shape of each family's real template: Hermes
(Qwen2.5) ``<tool_call>`` blocks, Llama 3.1 JSON with header markers, Mistral ``[TOOL_CALLS]``.
The weights are random, so the models' free text is noise; a forced tool call (grammar) is
still valid, which is what the tests rely on. SmolLM2 (``default``) serves beside them.
"""

from __future__ import annotations

import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

HERMES = """{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools
You may call one or more functions. Signatures:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Return each call as <tool_call>{"name": <name>, "arguments": <args>}</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == 'system' %}
{%- elif m.role == 'tool' %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% elif m.role == 'assistant' %}<|im_start|>assistant
{% if m.content %}{{ m.content }}{% endif %}{% for c in m.tool_calls or [] %}<tool_call>
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

LLAMA3 = """{%- for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>

{% if m.role == 'user' and loop.last and tools %}Call a function with a JSON object \
{"name": function name, "parameters": arguments}.
{% for t in tools %}{{ t | tojson }}
{% endfor %}{% endif %}
{%- if m.role == 'assistant' and m.tool_calls %}{% for c in m.tool_calls %}\
{"name": "{{ c.function.name }}", "parameters": {{ c.function.arguments | tojson }}}\
{% endfor %}{% elif m.role == 'tool' %}{{ m.content | tojson }}\
{% else %}{{ m.content }}{% endif %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}"""

# as Mistral's own templates (v0.3, Nemo, Small): call ids of exactly 9 letters and digits
MISTRAL = """{%- for m in messages %}
{%- if m.role == 'user' %}{% if loop.last and tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}\
[/AVAILABLE_TOOLS]{% endif %}[INST]{{ m.content }}[/INST]
{%- elif m.role == 'assistant' and m.tool_calls %}[TOOL_CALLS][{% for c in m.tool_calls %}\
{%- if c.id is not defined or c.id | length != 9 %}\
{{ raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}{% endif %}\
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}, \
"id": "{{ c.id }}"}{% if not loop.last %}, {% endif %}{% endfor %}]<|im_end|>
{%- elif m.role == 'tool' %}{% if m.tool_call_id is not defined or m.tool_call_id | length != 9 %}\
{{ raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}{% endif %}\
[TOOL_RESULTS]{"call_id": "{{ m.tool_call_id }}", "content": {{ m.content | tojson }}}\
[/TOOL_RESULTS]
{%- elif m.role == 'assistant' %}{{ m.content }}<|im_end|>
{%- else %}{{ m.content }}
{% endif %}
{%- endfor %}"""

# a reasoning model's template: the generation prompt opens a <think> block, and earlier turns
# carry their reasoning_content
THINKING = HERMES.replace(
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{%- if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}",
).replace(
    "{% if m.content %}",
    "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}"
    "{% if m.content %}",
)
TEMPLATES = {"hermes": HERMES, "llama3": LLAMA3, "mistral": MISTRAL, "thinking": THINKING}

_lock = threading.Lock()
_stack = ExitStack()
_url: dict[str, str] = {}


def write_tool_ggufs(folder: Path) -> dict[str, Path]:
    """One tiny GGUF per template (``tiny-hermes``, ..., ``tiny-thinking``), random weights."""
    from inference.tiny_fim import write_fim_gguf

    from hivemind_common.models_paths import default_llm_gguf

    return {
        family: write_fim_gguf(
            folder / f"tiny-{family}.gguf",
            tokenizer_from=default_llm_gguf(),
            seed=i,
            chat_template=template,
        )
        for i, (family, template) in enumerate(TEMPLATES.items())
    }


def _no_registry(settings_class: type) -> dict[str, bool]:
    """Do not follow a model registry (there is no Redis here), where the setting exists."""
    return {"follow_registry": False} if "follow_registry" in settings_class.model_fields else {}


def shared_tools_inference_url(internal_token: str) -> str:
    """One inference service per session: ``default`` (SmolLM2) and ``tiny-<family>`` models."""
    from inference.serving import running_inference

    from hivemind_common.models_paths import default_llm_gguf
    from hivemind_inference.settings import InferenceSettings

    with _lock:
        if internal_token not in _url:
            folder = Path(_stack.enter_context(tempfile.TemporaryDirectory(prefix="hm-tools-")))
            models = [{"name": "default", "gguf": str(default_llm_gguf()), "n_ctx": 1024}]
            models += [
                {"name": f"tiny-{family}", "gguf": str(path), "n_ctx": 1024}
                for family, path in write_tool_ggufs(folder).items()
            ]
            _url[internal_token] = _stack.enter_context(
                running_inference(
                    internal_token,
                    "redis://127.0.0.1:9/0",
                    models=models,
                    publish_served_version=False,
                    **_no_registry(InferenceSettings),
                )
            )
        return _url[internal_token]
