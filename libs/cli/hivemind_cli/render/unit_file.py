"""A systemd/Quadlet unit as ordered sections of ``key=value`` lines, and its text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Unit:
    """One unit file: a header comment and sections, keys kept in the order they were added."""

    filename: str
    comment: list[str] = field(default_factory=list)
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, section: str, key: str, value: str | int) -> Unit:
        self.sections.setdefault(section, []).append((key, str(value)))
        return self

    def extend(self, section: str, pairs: list[tuple[str, str]]) -> Unit:
        for key, value in pairs:
            self.add(section, key, value)
        return self

    def values(self, section: str, key: str) -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]

    def text(self) -> str:
        lines = [f"# {c}" if c else "#" for c in self.comment]
        for name, pairs in self.sections.items():
            if lines:
                lines.append("")
            lines.append(f"[{name}]")
            lines.extend(f"{k}={v}" for k, v in pairs)
        return "\n".join(lines) + "\n"


def header(profile: str, node: str) -> list[str]:
    """The comment at the top of every rendered file."""
    return [
        f"Rendered by `hivemind hosts render --profile {profile} --node {node}`.",
        "Do not edit: change hosts.yaml and render again.",
    ]


def quote_arg(arg: str) -> str:
    """Quote one Exec= argument for systemd's word splitting (no specifier or $ expansion)."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and all(c.isalnum() or c in "-_./:=,+@" for c in escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(args: list[str]) -> str:
    return " ".join(quote_arg(a) for a in args)
