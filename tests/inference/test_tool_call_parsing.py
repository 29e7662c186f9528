"""The tool-call parser and the reasoning splitter, on the text models write."""

from __future__ import annotations

import json

import pytest

from hivemind_inference.reasoning import ThinkSplitter
from hivemind_inference.toolcalls import (
    CallArgs,
    CallStart,
    Content,
    ToolCallParser,
    parse_all,
    template_family,
)

CASES = [
    (
        "hermes",
        'Sure.\n<tool_call>\n{"name": "grep", "arguments": {"q": "a}b", "n": [1, {"x": 2}]}}\n'
        '</tool_call>\n<tool_call>{"name":"ls","arguments":{}}</tool_call>',
        "Sure.\n",
        [("grep", {"q": "a}b", "n": [1, {"x": 2}]}), ("ls", {})],
    ),
    ("llama3", '{"name": "grep", "parameters": {"q": "x"}}', "", [("grep", {"q": "x"})]),
    (
        "llama3",
        '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}',
        "",
        [("a", {"x": 1}), ("b", {})],
    ),
    (
        "mistral",
        '[TOOL_CALLS] [{"name": "a", "arguments": {"x": 1}}, {"arguments": {"y": 2}, "name": "b"}]',
        "",
        [("a", {"x": 1}), ("b", {"y": 2})],
    ),
    (
        "hermes",
        '<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call>',
        "",
        [("a", {"x": 1})],
    ),
    ("hermes", "plain text < 3 <tool", "plain text < 3 <tool", []),
]


def _stream(family: str, text: str) -> tuple[str, list[tuple[str, str]], list[object]]:
    parser = ToolCallParser(family)  # type: ignore[arg-type]
    events: list[object] = []
    for ch in text:
        events += parser.feed(ch)
    events += parser.finish()
    content = "".join(e.text for e in events if isinstance(e, Content))
    calls: dict[int, list[str]] = {}
    for e in events:
        if isinstance(e, CallStart):
            calls[e.index] = [e.name, ""]
        elif isinstance(e, CallArgs):
            calls[e.index][1] += e.piece
    return content, [(n, a) for n, a in (calls[i] for i in sorted(calls))], events


@pytest.mark.parametrize(("family", "text", "content", "calls"), CASES)
def test_calls_parse_the_same_whole_and_one_character_at_a_time(
    family: str, text: str, content: str, calls: list[tuple[str, object]]
) -> None:
    whole_content, whole_calls = parse_all(text, family)  # type: ignore[arg-type]
    assert whole_content == content
    assert [(c["name"], json.loads(c["arguments"])) for c in whole_calls] == calls
    streamed_content, streamed_calls, _ = _stream(family, text)
    assert streamed_content == content
    assert [(n, json.loads(a)) for n, a in streamed_calls] == calls


def test_arguments_stream_in_pieces_after_the_name() -> None:
    _, _, events = _stream("hermes", '<tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>')
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "CallStart" and kinds.count("CallArgs") > 1


def test_a_forced_answer_is_a_call_from_its_first_character() -> None:
    content, calls = parse_all('{"name": "a", "arguments": {"x": 1}}', "mistral", forced=True)
    assert content == "" and calls[0]["name"] == "a"


@pytest.mark.parametrize(
    ("template", "family"),
    [
        ("{% if tools %}<tool_call>{% endif %}", "hermes"),
        ("{{ tools }}[TOOL_CALLS]", "mistral"),
        ("<|start_header_id|>{{ tools }}", "llama3"),
        ("{% for m in messages %}{{ m.content }}{% endfor %}", None),
    ],
)
def test_the_family_is_read_from_the_chat_template(template: str, family: str | None) -> None:
    assert template_family(template) == family


def test_reasoning_is_split_from_the_answer_across_pieces() -> None:
    splitter = ThinkSplitter()
    got = [splitter.feed(p) for p in ["<th", "ink>step one", " and two</thi", "nk>\nAnswer"]]
    got.append(splitter.finish())
    assert "".join(r for r, _ in got) == "step one and two"
    assert "".join(c for _, c in got) == "Answer"


def test_reasoning_opened_by_the_prompt_is_reasoning_until_it_closes() -> None:
    splitter = ThinkSplitter(started=True)
    assert splitter.feed("hmm</think>ok") == ("hmm", "ok")


def _answer(text: str, *, parallel: bool) -> dict[str, object]:
    from hivemind_inference.chat import AnswerReader, ChatPlan, merge_deltas

    reader = AnswerReader(ChatPlan(prompt="", stop=[], family="hermes", parallel=parallel))
    return merge_deltas(reader.feed(text) + reader.finish())


TWO_CALLS = (
    '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
    '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>'
)


def test_parallel_tool_calls_false_keeps_the_first_call_only() -> None:
    both = _answer(TWO_CALLS, parallel=True)["tool_calls"]
    first = _answer(TWO_CALLS, parallel=False)["tool_calls"]
    assert [c["function"]["name"] for c in both] == ["a", "b"]  # type: ignore[attr-defined]
    assert [c["function"]["name"] for c in first] == ["a"]  # type: ignore[attr-defined]


def test_a_json_answer_naming_no_offered_tool_stays_text() -> None:
    """Under `auto` a plain JSON answer (`{"name": "Bob"}`) is not a call to a tool `Bob`."""
    answer = '{"name": "Bob", "age": 3}'
    names = frozenset({"get_weather"})
    assert parse_all(answer, "llama3", names=names) == (answer, [])
    streamed = ToolCallParser("llama3", names=names)
    events = [e for piece in answer for e in streamed.feed(piece)] + streamed.finish()
    assert "".join(e.text for e in events if isinstance(e, Content)) == answer
    call = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    content, calls = parse_all(call, "llama3", names=names)
    assert (content, [c["name"] for c in calls]) == ("", ["get_weather"])


def test_a_name_with_a_broken_escape_does_not_crash_the_parser() -> None:
    text = '<tool_call>{"name": "a\\u12", "arguments": {}}</tool_call>'
    content, calls = parse_all(text, "hermes", names=frozenset({"f"}))
    assert calls == [] and "a\\u12" in content
    _, calls = parse_all(text, "hermes")  # no names given: kept as written, no exception
    assert calls[0]["name"] == "a\\u12"
