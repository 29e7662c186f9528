"""`make quadlet-check` passes on the repository and fails on a broken unit, compose file or
dashboard; it runs the real Quadlet generator, systemd-analyze and a compose implementation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from support.quadlet_check import check_compose, check_dashboards, check_units, run_checks


def copy_units(repo: Path, tmp_path: Path, node: str = "aurora") -> Path:
    units = tmp_path / node
    shutil.copytree(repo / "quadlet" / node, units)
    return units


def run_check_cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "tests/support/quadlet_check.py"), "--repo", str(repo), *args],
        capture_output=True, text=True, timeout=300, cwd=repo,
    )  # fmt: skip


def test_the_repository_passes_every_deployment_check(repo: Path, quadlet: Path) -> None:
    assert run_checks(repo, [], repo / "compose.yaml", quadlet) == []


def test_an_unknown_quadlet_key_fails_the_check(repo: Path, tmp_path: Path, quadlet: Path) -> None:
    units = copy_units(repo, tmp_path)
    unit = units / "hivemind-trainer.container"
    unit.write_text(unit.read_text().replace("[Container]\n", "[Container]\nGpuMagic=yes\n"))
    problems = check_units(units, quadlet)
    assert len(problems) == 1
    assert "unsupported key 'GpuMagic'" in problems[0]


def test_a_unit_systemd_rejects_fails_the_check(repo: Path, tmp_path: Path, quadlet: Path) -> None:
    units = copy_units(repo, tmp_path)
    unit = units / "hivemind-inference.container"
    unit.write_text(unit.read_text().replace("Restart=always", "Restart=sometimes"))
    problems = check_units(units, quadlet)
    assert len(problems) == 1
    assert "Failed to parse service restart specifier" in problems[0]


def test_a_container_without_an_image_fails_the_check(
    repo: Path, tmp_path: Path, quadlet: Path
) -> None:
    units = copy_units(repo, tmp_path, "r720xd")
    unit = units / "hivemind-gateway.container"
    unit.write_text(
        "\n".join(ln for ln in unit.read_text().splitlines() if not ln.startswith("Image="))
    )
    assert check_units(units, quadlet) != []


def test_a_broken_compose_file_fails_the_check(repo: Path, tmp_path: Path) -> None:
    text = (repo / "compose.yaml").read_text()
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("condition: service_healthy", "condition: when_ready", 1))
    problems = check_compose(broken)
    assert len(problems) == 1 and "condition" in problems[0]
    missing = tmp_path / "missing-service.yaml"
    missing.write_text(
        text.replace(
            "gateway: {condition: service_healthy}", "nothing: {condition: service_healthy}"
        )
    )
    assert check_compose(missing) != []
    assert check_compose(repo / "compose.yaml") == []


def test_a_dashboard_querying_a_metric_nobody_exports_fails_the_check(
    repo: Path, tmp_path: Path
) -> None:
    board = json.loads((repo / "deploy/grafana/dashboards/hivemind-overview.json").read_text())
    board["panels"][0]["targets"][0]["expr"] = "rate(hivemind_made_up_total[5m])"
    (tmp_path / "board.json").write_text(json.dumps(board))
    problems = check_dashboards(tmp_path, [repo / "libs", repo / "services"])
    assert problems == [
        "board.json: panel 'Request rate per service' queries hivemind_made_up_total, "
        "which no service exports"
    ]


def test_histogram_and_counter_series_count_as_exported(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({"panels": [{"title": "t", "targets": [
        {"expr": "rate(hivemind_http_request_duration_seconds_bucket[1m])"},
        {"expr": "rate(hivemind_http_requests_total[1m])"},
    ]}]}))  # fmt: skip
    assert check_dashboards(tmp_path, [repo / "libs"]) == []


def test_the_check_command_exits_nonzero_on_a_broken_unit(
    repo: Path, tmp_path: Path, quadlet: Path
) -> None:
    units = copy_units(repo, tmp_path)
    (units / "hivemind.network").write_text("[Network]\nNoSuchOption=1\n")
    result = run_check_cli(repo, "--units", str(units))
    assert result.returncode == 1
    assert "FAIL" in result.stderr and "NoSuchOption" in result.stderr
    good = run_check_cli(repo, "--units", str(repo / "quadlet/r720xd"))
    assert good.returncode == 0, good.stderr


def test_metrics_made_through_an_imported_alias_count_as_exported(tmp_path: Path) -> None:
    src = tmp_path / "src" / "svc"
    src.mkdir(parents=True)
    (src / "metrics.py").write_text(
        "from prometheus_client import Counter as PromCounter, Gauge\n"
        'HITS = PromCounter(\n    "hivemind_widget_hits_total", "Hits.", ["result"]\n)\n'
        'DEPTH = Gauge("hivemind_widget_depth", "Depth.")\n'
    )
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "b.json").write_text(json.dumps({"panels": [{"title": "t", "targets": [
        {"expr": "sum(rate(hivemind_widget_hits_total[1m])) / hivemind_widget_depth"},
        {"expr": "hivemind_widget_hits"},
    ]}]}))  # fmt: skip
    problems = check_dashboards(boards, [tmp_path / "src"])
    assert problems == ["b.json: panel 't' queries hivemind_widget_hits, which no service exports"]
