"""The storage node's rendered units carry the backup timer: three runs a week, three copies."""

from __future__ import annotations

import shutil
from pathlib import Path

from hivemind_cli.render import render_node
from hivemind_common.hosts import Registry
from support.quadlet_check import check_units


def test_only_the_storage_node_renders_the_backup_service_and_timer(registry: Registry) -> None:
    storage = render_node(registry, profile="homelab", node="r720xd")
    gpu = render_node(registry, profile="homelab", node="aurora")
    assert "hivemind-backup.timer" not in gpu and "hivemind-backup.service" not in gpu
    service = storage["hivemind-backup.service"]
    assert "ExecStart=/usr/bin/env hivemind backup --to /var/backups/hivemind --keep 3" in service
    assert "Type=oneshot" in service and "EnvironmentFile=/etc/hivemind/backup.env" in service
    timer = storage["hivemind-backup.timer"]
    assert "OnCalendar=Mon,Wed,Fri *-*-* 03:30:00" in timer
    assert "Persistent=true" in timer and "WantedBy=timers.target" in timer
    sentinel = render_node(registry, profile="homelab", node="r720xd", redis="sentinel")
    assert sentinel["hivemind-backup.timer"] == timer


def test_the_backup_units_pass_systemd_and_a_broken_timer_fails_the_check(
    repo: Path, tmp_path: Path, quadlet: Path
) -> None:
    units = tmp_path / "r720xd"
    shutil.copytree(repo / "quadlet/r720xd", units)
    assert check_units(units, quadlet) == []
    timer = units / "hivemind-backup.timer"
    timer.write_text(timer.read_text().replace("Mon,Wed,Fri *-*-* 03:30:00", "thrice weekly"))
    problems = check_units(units, quadlet)
    assert len(problems) == 1 and "systemd-analyze verify" in problems[0]
