"""Secret scrubbing: API keys, tokens, private keys and passwords in URLs never reach the dataset.

Each pattern replaces the secret with a ``[REDACTED:<kind>]`` marker and counts what it found, so
the filter can keep (scrubbed) samples and report how many secrets it removed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
    ),
    ("url_password", re.compile(r"(?<=://)[^\s:/@]+:[^\s@/]+(?=@)")),
    ("aws_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("openai_key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("google_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("hivemind_key", re.compile(r"\bhm_[0-9a-f]{12}_[A-Za-z0-9-]{20,}")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("bearer", re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/=-]{16,}")),
    (
        "assignment",
        re.compile(
            r"(?i)(?<![A-Za-z0-9])((?:api[_-]?key|secret|token|password|passwd|pwd|access[_-]?key)"
            r"[A-Za-z0-9_]*\s*[:=]\s*[\"']?)([^\s\"',;]{6,})"
        ),
    ),
)


@dataclass
class ScrubReport:
    """How many secrets of each kind a scrub removed."""

    found: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.found.values())


def scrub_text(text: str, report: ScrubReport | None = None) -> str:
    """``text`` with every secret we recognise replaced by ``[REDACTED:<kind>]``."""
    for kind, pattern in _PATTERNS:
        marker = f"[REDACTED:{kind}]"

        def replace(match: re.Match[str], kind: str = kind, marker: str = marker) -> str:
            if report is not None:
                report.found[kind] += 1
            if kind == "assignment":
                return match.group(1) + marker
            return marker

        text = pattern.sub(replace, text)
    return text
