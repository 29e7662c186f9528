"""Import public-format datasets into the learning dataset: normalise, filter, scrub, dedup.

``hivemind learn import FILE... --format auto|alpaca|sharegpt|openai|glaive`` reads JSON (one
array), JSONL (one record a line) or Parquet (with ``pyarrow``), and turns every record into a
chat in the OpenAI shape: ``{"role", "content"}`` messages, tool calls as an assistant message's
``tool_calls`` (``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``) and
their results as ``tool`` messages. The chat then passes the same checks as a captured sample
(:class:`SampleFilter.check_chat`: secret scrubber, length limits; the exact-duplicate set in
Redis and the near-duplicate index), and is appended to the dataset with its provenance
(``source: import:<file name>``, ``line``). A record that cannot be normalised is counted under
its reason and never stored.

Formats (``auto`` decides per record, by its keys):

- ``alpaca``: ``{instruction, input?, output, system?}`` (Code Alpaca has the same shape);
- ``sharegpt``: ``{conversations: [{from: system|human|gpt|function_call|observation, value}]}``;
- ``openai``: ``{messages: [...], tools?}`` as the Chat Completions API takes them;
- ``glaive``: ``{system: "SYSTEM: ...", chat: "USER: ... ASSISTANT: <functioncall> {...}
  <|endoftext|> FUNCTION RESPONSE: ..."}`` (Glaive function-calling v2).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hivemind_common import keys
from hivemind_trainer.data.dataset import Dataset
from hivemind_trainer.data.sample_filter import Accepted, SampleFilter

Format = Literal["auto", "alpaca", "sharegpt", "openai", "glaive"]
FORMATS: tuple[str, ...] = ("auto", "alpaca", "sharegpt", "openai", "glaive")
Message = dict[str, Any]

# outcomes besides the filter's reasons
log = logging.getLogger(__name__)

UNREADABLE = "unreadable"  # not JSON, or not an object
UNKNOWN_FORMAT = "unknown_format"  # auto found no format whose keys the record has
MALFORMED = "malformed"  # the format's keys, but not a chat it can normalise


class NotNormalisable(ValueError):
    """A record that cannot become a chat (the reason is counted, the record skipped)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise NotNormalisable(MALFORMED, f"{what} is not a string")
    return value


def _text(content: Any, what: str) -> str:
    """A message content: a string, or a list of text parts (anything else is malformed)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") if isinstance(p, dict) else None for p in content]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
    raise NotNormalisable(MALFORMED, f"{what} is not text")


def _arguments(value: Any) -> str:
    """Tool-call arguments as a JSON object text (a dict, or a string holding one)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.strip() else {}
        except (json.JSONDecodeError, RecursionError) as exc:
            raise NotNormalisable(MALFORMED, "tool-call arguments are not JSON") from exc
        value = parsed
    if not isinstance(value, dict):
        raise NotNormalisable(MALFORMED, "tool-call arguments are not an object")
    return json.dumps(value, ensure_ascii=False)


def _call(name: Any, arguments: Any, index: int) -> dict[str, Any]:
    if not isinstance(name, str) or not name.strip():
        raise NotNormalisable(MALFORMED, "a tool call has no name")
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name.strip(), "arguments": _arguments(arguments)},
    }


def from_alpaca(record: dict[str, Any]) -> list[Message]:
    instruction = _str(record.get("instruction"), "instruction").strip()
    extra = record.get("input") or ""
    output = _str(record.get("output"), "output").strip()
    prompt = f"{instruction}\n\n{_str(extra, 'input').strip()}".strip()
    messages: list[Message] = []
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.append({"role": "system", "content": record["system"].strip()})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return messages


_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "observation": "tool",
    "tool": "tool",
}


def from_sharegpt(record: dict[str, Any]) -> list[Message]:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise NotNormalisable(MALFORMED, "conversations is not a list of turns")
    messages: list[Message] = []
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.append({"role": "system", "content": record["system"].strip()})
    calls = 0
    for turn in turns:
        if not isinstance(turn, dict):
            raise NotNormalisable(MALFORMED, "a turn is not an object")
        who, value = turn.get("from"), _text(turn.get("value"), "a turn's value")
        if who == "function_call":
            try:
                call = json.loads(value)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise NotNormalisable(MALFORMED, "a function_call is not JSON") from exc
            if not isinstance(call, dict):
                raise NotNormalisable(MALFORMED, "a function_call is not an object")
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [_call(call.get("name"), call.get("arguments", {}), calls)],
                }
            )
            calls += 1
            continue
        role = _SHAREGPT_ROLES.get(str(who).lower()) if isinstance(who, str) else None
        if role is None:
            raise NotNormalisable(MALFORMED, f"unknown speaker {who!r}")
        message: Message = {"role": role, "content": value.strip()}
        if role == "tool":
            message["tool_call_id"] = f"call_{max(calls - 1, 0)}"
        messages.append(message)
    return messages


def from_openai(record: dict[str, Any]) -> list[Message]:
    raw = record.get("messages")
    if not isinstance(raw, list) or not raw:
        raise NotNormalisable(MALFORMED, "messages is not a list")
    messages: list[Message] = []
    calls = 0
    for msg in raw:
        if not isinstance(msg, dict) or msg.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            raise NotNormalisable(MALFORMED, "a message has no known role")
        role = "system" if msg["role"] == "developer" else msg["role"]
        content = msg.get("content")
        out: Message = {"role": role, "content": "" if content is None else _text(content, role)}
        if role == "assistant" and msg.get("tool_calls") is not None:
            if not isinstance(msg["tool_calls"], list):
                raise NotNormalisable(MALFORMED, "tool_calls is not a list")
            out["tool_calls"] = []
            for call in msg["tool_calls"]:
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    raise NotNormalisable(MALFORMED, "a tool call has no function")
                made = _call(fn.get("name"), fn.get("arguments", {}), calls)
                if isinstance(call.get("id"), str) and call["id"]:
                    made["id"] = call["id"]
                out["tool_calls"].append(made)
                calls += 1
            if not out["tool_calls"]:
                del out["tool_calls"]
        elif content is None:
            raise NotNormalisable(MALFORMED, f"a {role} message has no content")
        if role == "tool":
            out["tool_call_id"] = str(msg.get("tool_call_id") or f"call_{max(calls - 1, 0)}")
        messages.append(out)
    return messages


_GLAIVE_TURN = re.compile(r"(USER|ASSISTANT|FUNCTION RESPONSE):")
_GLAIVE_CALL = re.compile(
    r"<functioncall>\s*\{\s*\"name\"\s*:\s*\"(?P<name>[^\"]+)\"\s*,\s*\"arguments\"\s*:\s*"
    r"(?P<args>'.*'|\{.*\})\s*\}",
    re.S,
)
_GLAIVE_END = "<|endoftext|>"


def from_glaive(record: dict[str, Any]) -> list[Message]:
    chat = _str(record.get("chat"), "chat")
    system = record.get("system") or ""
    messages: list[Message] = []
    system = _str(system, "system").strip()
    if system.upper().startswith("SYSTEM:"):
        system = system[len("SYSTEM:") :].strip()
    if system:
        messages.append({"role": "system", "content": system})
    pieces = _GLAIVE_TURN.split(chat)
    if len(pieces) < 3 or pieces[0].strip():
        raise NotNormalisable(MALFORMED, "chat has no USER:/ASSISTANT: turns")
    calls = 0
    for marker, body in zip(pieces[1::2], pieces[2::2], strict=True):
        text = body.replace(_GLAIVE_END, "").strip()
        if marker == "USER":
            messages.append({"role": "user", "content": text})
        elif marker == "FUNCTION RESPONSE":
            messages.append(
                {"role": "tool", "content": text, "tool_call_id": f"call_{max(calls - 1, 0)}"}
            )
        elif "<functioncall>" in text:
            found = _GLAIVE_CALL.search(text)
            if found is None:
                raise NotNormalisable(MALFORMED, "a <functioncall> that cannot be read")
            args = found.group("args")
            if args.startswith("'"):
                args = args[1:-1]
            before = text[: text.index("<functioncall>")].strip()
            messages.append(
                {
                    "role": "assistant",
                    "content": before,
                    "tool_calls": [_call(found.group("name"), args, calls)],
                }
            )
            calls += 1
        else:
            messages.append({"role": "assistant", "content": text})
    return messages


NORMALISERS: dict[str, Callable[[dict[str, Any]], list[Message]]] = {
    "alpaca": from_alpaca,
    "sharegpt": from_sharegpt,
    "openai": from_openai,
    "glaive": from_glaive,
}


def detect(record: dict[str, Any]) -> str | None:
    """The format whose keys a record has, or None."""
    if "messages" in record:
        return "openai"
    if "conversations" in record:
        return "sharegpt"
    if "chat" in record and isinstance(record.get("chat"), str):
        return "glaive"
    if "instruction" in record and "output" in record:
        return "alpaca"
    return None


def check_chat_shape(messages: list[Message]) -> None:
    """The shape every stored chat has: a user turn, one leading system turn at most, and an
    assistant answer (text or tool calls) last."""
    if not any(m["role"] == "user" for m in messages):
        raise NotNormalisable(MALFORMED, "no user turn")
    if any(m["role"] == "system" for m in messages[1:]):
        raise NotNormalisable(MALFORMED, "a system turn after the first")
    last = messages[-1]
    if last["role"] != "assistant" or not (last.get("content") or last.get("tool_calls")):
        raise NotNormalisable("no_assistant_reply")


def normalise_record(record: Any, fmt: str = "auto") -> list[Message]:
    """One record as an OpenAI-shaped chat; raises :class:`NotNormalisable` with the reason."""
    if not isinstance(record, dict):
        raise NotNormalisable(UNREADABLE, "not a JSON object")
    chosen = detect(record) if fmt == "auto" else fmt
    if chosen is None:
        raise NotNormalisable(UNKNOWN_FORMAT)
    messages = NORMALISERS[chosen](record)
    check_chat_shape(messages)
    return messages


def read_records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` of a JSON array, JSONL or Parquet file; a line that is not JSON comes
    out as ``(line, UNREADABLE_LINE)``. ``line`` is the 1-based line (JSONL) or item number."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise NotNormalisable(
                UNREADABLE, "reading Parquet needs pyarrow (pip install pyarrow)"
            ) from exc
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise NotNormalisable(UNREADABLE, f"not a readable Parquet file: {exc}") from exc
        for batch in table.to_batches(max_chunksize=1024):
            for i, row in enumerate(batch.to_pylist()):
                yield i + 1, row
        return
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip()
        fh.seek(0)
        if head.startswith("["):
            try:
                items = json.load(fh)
            except (json.JSONDecodeError, RecursionError):
                items = None
            if isinstance(items, list):
                for i, item in enumerate(items):
                    yield i + 1, item
                return
            fh.seek(0)  # not one array after all: read it line by line
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # [[[[... nested past the parser
                record = UNREADABLE_LINE
            yield number, record


UNREADABLE_LINE = object()


@dataclass
class ImportStats:
    """What an import did, by outcome (``accepted`` or the reason a record was skipped)."""

    files: int = 0
    read: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_format: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def accepted(self) -> int:
        return self.outcomes.get("accepted", 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "read": self.read,
            "accepted": self.accepted,
            "outcomes": dict(self.outcomes),
            "formats": dict(self.by_format),
            "seconds": round(self.seconds, 3),
            "records_per_s": round(self.read / self.seconds, 1) if self.seconds else None,
        }


Progress = Callable[[int], None]  # records read so far in the current file


class Importer:
    """Stores normalised, filtered records of files in the learning dataset (and Redis's
    duplicate set and counters, as the collector does for captured samples)."""

    def __init__(self, redis: Any, dataset: Dataset, sample_filter: SampleFilter) -> None:
        self.redis = redis
        self.dataset = dataset
        self.filter = sample_filter
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            from hivemind_trainer.data.sample_filter import chat_text

            for rec in self.dataset.records():
                self.filter.near_dups.add(chat_text(rec["messages"]))
            self._loaded = True

    async def import_file(
        self,
        path: Path,
        fmt: str = "auto",
        *,
        stats: ImportStats | None = None,
        progress: Progress | None = None,
    ) -> ImportStats:
        """Import one file; records are counted under ``stats.outcomes``."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        self._load()
        stats = stats or ImportStats()
        started = time.perf_counter()
        stats.files += 1
        source = f"import:{path.name}"
        try:
            for line, record in read_records(path):
                stats.read += 1
                outcome = await self._one(record, fmt, source=source, line=line, stats=stats)
                stats.outcomes[outcome] += 1
                if progress is not None:
                    progress(stats.read)
        except NotNormalisable as exc:  # the file itself cannot be read (a broken Parquet)
            log.warning("cannot read %s: %s", path.name, exc)
            stats.outcomes[exc.reason] += 1
        finally:
            self.dataset.sync()
            stats.seconds += time.perf_counter() - started
        return stats

    async def _one(
        self, record: Any, fmt: str, *, source: str, line: int, stats: ImportStats
    ) -> str:
        if record is UNREADABLE_LINE:
            return UNREADABLE
        try:
            messages = normalise_record(record, fmt)
        except NotNormalisable as exc:
            return exc.reason
        except (TypeError, ValueError, RecursionError):  # values no JSON holds (Parquet's)
            return MALFORMED
        stats.by_format[(detect(record) if fmt == "auto" else fmt) or fmt] += 1
        outcome = self.filter.check_chat(
            messages,
            sample_id=uuid.uuid4().hex,
            tenant="",  # the operator's data: no tenant's consent applies
            source=source,
            created_at=time.time(),
        )
        if not isinstance(outcome, Accepted):
            return outcome.reason
        # an id from the content: a record stored twice (a crash before the duplicate set was
        # written, then the same file again) is read once by the dataset
        outcome.sample_id = f"imp-{outcome.content_hash[:28]}"
        if await self.redis.sismember(keys.learning_seen(), outcome.content_hash):
            return "duplicate"
        if self.filter.near_duplicate(outcome):
            return "near_duplicate"
        seq = int(await self.redis.hincrby(keys.learning_state(), "accepted_seq", 1))
        self.dataset.append(outcome, seq=seq, extra={"line": line}, sync=False)
        self.filter.remember(outcome)
        await self.redis.transaction(
            ("SADD", keys.learning_seen(), outcome.content_hash),
            ("HINCRBY", keys.learning_state(), "accepted_total", 1),
            ("HINCRBY", keys.learning_state(), "imported_total", 1),
            ("HINCRBY", keys.learning_state(), "secrets_scrubbed", outcome.secrets_scrubbed),
        )
        return "accepted"
