"""Secrets out of everything we keep or show: one scrubber for text, one mask for URLs.

``scrub_text`` replaces each secret it recognises (API keys, tokens, private keys, passwords in
URLs) with a ``[REDACTED:<kind>]`` marker and counts what it found; the trainer's sample filter
and the gateway's retrieval log both use it. ``mask_url`` hides the password of a connection URL
in every form we accept (``redis://secret@h``, ``redis://user:pw@h``, ``?sentinel_password=``)
for messages and settings dumps.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

MASK = "***"
# query options whose value is a secret (``sentinel_password``, ``password``, ``token``, ...)
_SECRET_OPTION = re.compile(r"(?i)(pass|secret|token|key$|auth)")

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
    ),
    # user:password@ (the user may be empty: redis://:pw@host, as `hivemind up` writes it)
    ("url_password", re.compile(r"(?<=://)[^\s:/@]*:[^\s@/]+(?=@)")),
    # a Redis URL's lone userinfo is its password (redis://secret@host)
    (
        "url_password",
        re.compile(
            r"(?:(?<=redis://)|(?<=rediss://)|(?<=redis\+cluster://)|(?<=redis\+sentinel://))"
            r"[^\s:/@]+(?=@)"
        ),
    ),
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


def mask_url(url: str) -> str:
    """``url`` with its password and every secret query option replaced by ``***``."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    rest, qmark, query = rest.partition("?")
    userinfo, at, hosts = rest.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        # "redis://secret@host" carries a password alone; "user:pw@" a user and a password
        rest = f"{user}:{MASK}@{hosts}" if colon else f"{MASK}@{hosts}"
    if qmark:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k)}={MASK if _SECRET_OPTION.search(k) and v else quote(v, safe='')}"
            for k, v in pairs
        )
    return f"{scheme}://{rest}{qmark}{query}"


def url_password(url: str) -> str | None:
    """The password a connection URL carries in its user part, if any."""
    rest = url.split("://", 1)[-1].partition("?")[0]
    userinfo, at, _ = rest.rpartition("@")
    if not at:
        return None
    user, colon, password = userinfo.partition(":")
    return password if colon else user


__all__ = ["MASK", "ScrubReport", "mask_url", "scrub_text", "url_password"]
