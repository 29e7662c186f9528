"""The sample filter: well-formed chats with a positive outcome, in length, scrubbed, not repeated.

``SampleFilter.check`` turns a :class:`LearningSample` into an :class:`Accepted` record (messages
normalised, corrections applied, secrets scrubbed) or a :class:`Rejected` with one reason. Exact
duplicates are caught by a content hash (the caller keeps the set, in Redis); near duplicates by
MinHash over word 5-gram shingles with LSH banding, in memory.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hivemind_common.jobs import LearningSample
from hivemind_common.redaction import ScrubReport, scrub_text

FILTER_VERSION = "f1"
ROLES = frozenset({"system", "user", "assistant"})
REASONS = (
    "malformed",
    "no_assistant_reply",
    "negative_rating",
    "too_short",
    "too_long",
    "duplicate",
    "near_duplicate",
)
TokenCounter = Callable[[str], int]


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token) for when none is loaded."""
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass
class Accepted:
    sample_id: str
    tenant: str
    source: str
    messages: list[dict[str, Any]]
    tokens: int
    content_hash: str
    secrets_scrubbed: int
    created_at: float


@dataclass
class Rejected:
    sample_id: str
    reason: str
    detail: str = ""


def _text(content: Any) -> str | None:
    """Plain text of an OpenAI message content (a string or a list of text parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
    return None


def normalise(sample: LearningSample) -> list[dict[str, str]] | str:
    """The chat as role/content strings with any correction applied, or a rejection reason."""
    messages: list[dict[str, str]] = []
    for msg in sample.messages:
        text = _text(msg.content)
        if msg.role not in ROLES or text is None:
            return "malformed"
        messages.append({"role": msg.role, "content": text.strip()})
    if sample.correction is not None and sample.correction.strip():
        if messages and messages[-1]["role"] == "assistant":
            messages[-1] = {"role": "assistant", "content": sample.correction.strip()}
        else:
            messages.append({"role": "assistant", "content": sample.correction.strip()})
    if not any(m["role"] == "user" for m in messages):
        return "malformed"
    if any(m["role"] == "system" for m in messages[1:]):
        return "malformed"
    if not messages or messages[-1]["role"] != "assistant" or not messages[-1]["content"]:
        return "no_assistant_reply"
    return messages


def content_hash(messages: list[dict[str, Any]]) -> str:
    """Hash of the chat with whitespace and case folded: equal chats hash alike."""
    canon = "\x1e".join(
        f"{m['role']}\x1f{' '.join(message_text(m).lower().split())}" for m in messages
    )
    return hashlib.sha256(canon.encode()).hexdigest()


_WORD = re.compile(r"\w+")
_MASK = (1 << 61) - 1


class NearDupIndex:
    """MinHash (64 permutations, 16 bands of 4) over word 5-grams; Jaccard estimate to confirm."""

    def __init__(self, threshold: float = 0.9, perms: int = 64, bands: int = 16) -> None:
        self.threshold = threshold
        self.perms = perms
        self.rows = perms // bands
        self.bands = bands
        seeds = [hashlib.sha256(f"perm{i}".encode()).digest() for i in range(perms)]
        self._a = [int.from_bytes(s[:8], "little") | 1 for s in seeds]
        self._b = [int.from_bytes(s[8:16], "little") for s in seeds]
        self._buckets: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        self._signatures: list[list[int]] = []

    def signature(self, text: str) -> list[int]:
        words = _WORD.findall(text.lower())
        grams = {" ".join(words[i : i + 5]) for i in range(max(1, len(words) - 4))}
        hashes = [
            int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
            for g in grams
        ]
        return [
            min(((a * h + b) & _MASK) for h in hashes)
            for a, b in zip(self._a, self._b, strict=True)
        ]

    def _keys(self, sig: list[int]) -> list[tuple[int, tuple[int, ...]]]:
        return [(i, tuple(sig[i * self.rows : (i + 1) * self.rows])) for i in range(self.bands)]

    def is_near_duplicate(self, text: str) -> bool:
        sig = self.signature(text)
        seen: set[int] = set()
        for key in self._keys(sig):
            for idx in self._buckets.get(key, ()):
                if idx in seen:
                    continue
                seen.add(idx)
                other = self._signatures[idx]
                same = sum(1 for x, y in zip(sig, other, strict=True) if x == y)
                if same / self.perms >= self.threshold:
                    return True
        return False

    def add(self, text: str) -> None:
        sig = self.signature(text)
        idx = len(self._signatures)
        self._signatures.append(sig)
        for key in self._keys(sig):
            self._buckets.setdefault(key, []).append(idx)

    def __len__(self) -> int:
        return len(self._signatures)


@dataclass
class SampleFilter:
    """Stateless checks plus the near-duplicate index; exact duplicates are the caller's set."""

    min_tokens: int = 4
    max_tokens: int = 2048
    min_rating: float = 0.5
    count_tokens: TokenCounter = approx_tokens
    near_dups: NearDupIndex = field(default_factory=NearDupIndex)

    def check(self, sample: LearningSample) -> Accepted | Rejected:
        """Accept (scrubbed, normalised) or reject with a reason; duplicates are checked later."""
        if sample.rating is not None and sample.rating < self.min_rating and not sample.correction:
            return Rejected(sample.id, "negative_rating", f"rating {sample.rating}")
        messages = normalise(sample)
        if isinstance(messages, str):
            return Rejected(sample.id, messages)
        return self.check_chat(
            messages,
            sample_id=sample.id,
            tenant=sample.tenant,
            source=sample.source,
            created_at=sample.created_at,
        )

    def check_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        sample_id: str,
        tenant: str,
        source: str,
        created_at: float,
    ) -> Accepted | Rejected:
        """Scrub and measure a normalised chat (role/content strings, and tool calls in the
        OpenAI shape where the chat has them): the checks every sample passes, captured or
        imported."""
        report = ScrubReport()
        messages = [_scrubbed(m, report) for m in messages]
        tokens = sum(self.count_tokens(message_text(m)) + 4 for m in messages)
        reply_tokens = self.count_tokens(message_text(messages[-1]))
        if reply_tokens < 1 or tokens < self.min_tokens:
            return Rejected(sample_id, "too_short", f"{tokens} tokens")
        if tokens > self.max_tokens:
            return Rejected(sample_id, "too_long", f"{tokens} tokens")
        return Accepted(
            sample_id=sample_id,
            tenant=tenant,
            source=source,
            messages=messages,
            tokens=tokens,
            content_hash=content_hash(messages),
            secrets_scrubbed=report.total,
            created_at=created_at,
        )

    def near_duplicate(self, accepted: Accepted) -> bool:
        return self.near_dups.is_near_duplicate(chat_text(accepted.messages))

    def remember(self, accepted: Accepted) -> None:
        self.near_dups.add(chat_text(accepted.messages))


def message_text(message: dict[str, Any]) -> str:
    """What a message says: its content, then its tool calls (name and arguments)."""
    calls = message.get("tool_calls") or []
    if not calls:
        return str(message.get("content") or "")
    shown = [f"{c['function']['name']}({c['function']['arguments']})" for c in calls]
    return "\n".join([str(message.get("content") or ""), *shown]).strip()


def chat_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(message_text(m) for m in messages)


def _scrubbed(message: dict[str, Any], report: ScrubReport) -> dict[str, Any]:
    """A copy of ``message`` with secrets scrubbed from its content and tool-call arguments."""
    out = {**message, "content": scrub_text(str(message.get("content") or ""), report)}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                **call,
                "function": {
                    "name": call["function"]["name"],
                    "arguments": scrub_text(call["function"]["arguments"], report),
                },
            }
            for call in message["tool_calls"]
        ]
    return out
