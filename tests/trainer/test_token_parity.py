"""Train/serve token parity: the trainer's ids for every chat prefix are llama.cpp's ids.

The trainer renders a chat with the model's template (transformers) and tokenizes it with the
Hugging Face tokenizer; inference renders with llama-cpp-python's Jinja formatter and tokenizes
with llama.cpp. Both must give the same text and the same ids, for the shipped SmolLM2 (ChatML)
and for a second template family ([INST] style) written into a tiny GGUF here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from inference.tiny_fim import write_fim_gguf

from hivemind_common.models_paths import default_llm_gguf
from hivemind_trainer.recipe.chat_format import encode_chat, render

pytestmark = pytest.mark.slow

INST_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}<<SYS>>\n{{ m['content'] }}\n<</SYS>>\n\n"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)

CHATS = [
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi  there!\n  def f(x):\treturn x**2  # ünïcødé 😀"},
        {"role": "assistant", "content": "Sure: `f = lambda x: x*x`."},
        {"role": "user", "content": "And in Rust?\n\n\n"},
        {"role": "assistant", "content": "fn f(x: i64) -> i64 { x * x }\n"},
    ],
    [
        {"role": "user", "content": "Tabs\tand   spaces, CRLF\r\nlines, and 1,234.5e-6 numbers."},
        {"role": "assistant", "content": " Leading space, trailing space "},
        {"role": "user", "content": "日本語のテキストも。"},
        {"role": "assistant", "content": "はい。"},
    ],
]


@pytest.fixture(scope="module", params=["smollm2-chatml", "tiny-inst"])
def model_gguf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "smollm2-chatml":
        return default_llm_gguf()
    folder = tmp_path_factory.mktemp("inst")
    return write_fim_gguf(
        folder / "tiny-inst.gguf", tokenizer_from=default_llm_gguf(), chat_template=INST_TEMPLATE
    )


@pytest.fixture(scope="module")
def both_sides(model_gguf: Path) -> tuple[Any, Any]:
    """The trainer's tokenizer (as the base cache saves it) and llama.cpp's vocabulary."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_gguf.parent), gguf_file=model_gguf.name)
    llama = Llama(model_path=str(model_gguf), vocab_only=True, verbose=False)
    return tokenizer, llama


def _served_prompt(llama: Any, messages: list[dict[str, str]]) -> str:
    """The prompt inference renders (the same formatter its engine builds)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = llama._model
    formatter = Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=vocab.token_get_text(llama.token_eos()),
        bos_token=vocab.token_get_text(llama.token_bos()),
    )
    return str(formatter(messages=messages).prompt)


@pytest.mark.parametrize("chat", CHATS, ids=["code-unicode", "whitespace-cjk"])
def test_every_chat_prefix_has_the_same_ids_in_training_and_in_llama_cpp(
    both_sides: tuple[Any, Any], chat: list[dict[str, str]]
) -> None:
    tokenizer, llama = both_sides
    checked = 0
    for i in range(1, len(chat) + 1):
        prefix = chat[:i]
        for generation_prompt in (False, True):
            text = render(tokenizer, prefix, generation_prompt=generation_prompt)
            trained = tokenizer(text, add_special_tokens=False)["input_ids"]
            served = llama.tokenize(text.encode(), add_bos=False, special=True)
            assert trained == served, (i, generation_prompt, text)
            checked += 1
        if prefix[-1]["role"] == "assistant":  # what the trainer actually feeds the model
            encoded = encode_chat(tokenizer, prefix)
            assert encoded.input_ids == llama.tokenize(
                encoded.text.encode(), add_bos=False, special=True
            )
        else:  # what a user's request becomes at serve time
            rendered = render(tokenizer, prefix, generation_prompt=True)
            assert rendered == _served_prompt(llama, prefix)
    assert checked == 2 * len(chat)
