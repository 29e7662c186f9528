"""The backup timer of the storage node: ``hivemind backup`` three times a week, 3 copies kept.

These two are plain systemd units (Quadlet has no timers): ``hivemind hosts render`` writes them
beside the Quadlet files and docs/deploy.md says to copy them to ``/etc/systemd/system``. The job
runs the host's ``hivemind`` (``make install`` in ``INSTALL_ROOT``) with the Redis URL and data
dir from ``ENV_FILE``.
"""

from __future__ import annotations

from hivemind_cli.render.unit_file import Unit, exec_line, header
from hivemind_common.hosts import Registry

SYSTEMD_SUFFIXES = (".service", ".timer")
INSTALL_ROOT = "/opt/hivemind"
ENV_FILE = "/etc/hivemind/backup.env"
BACKUP_DIR = "/var/backups/hivemind"
KEEP = 3
SCHEDULE = "Mon,Wed,Fri *-*-* 03:30:00"
STORAGE_LABEL = "storage"


def backup_units(registry: Registry, profile: str, node: str) -> list[Unit]:
    """``hivemind-backup.service`` and ``.timer`` on every node labelled ``storage``."""
    if STORAGE_LABEL not in registry.profile(profile).nodes[node].labels:
        return []
    service = Unit("hivemind-backup.service", header(profile, node))
    service.add("Unit", "Description", f"Hive-Mind backup ({profile} on {node})")
    service.add("Unit", "After", "network-online.target")
    service.add("Unit", "Wants", "network-online.target")
    service.add("Service", "Type", "oneshot")
    service.add("Service", "Environment", f"PATH={INSTALL_ROOT}/.venv/bin:/usr/bin:/bin")
    service.add("Service", "EnvironmentFile", ENV_FILE)
    service.add("Service", "UMask", "0077")
    service.add(
        "Service",
        "ExecStart",
        exec_line(["/usr/bin/env", "hivemind", "backup", "--to", BACKUP_DIR, "--keep", str(KEEP)]),
    )
    service.add("Service", "Nice", "10")
    service.add("Service", "IOSchedulingClass", "idle")

    timer = Unit("hivemind-backup.timer", header(profile, node))
    timer.add("Unit", "Description", f"Hive-Mind backup three times a week ({node})")
    timer.add("Timer", "OnCalendar", SCHEDULE)
    timer.add("Timer", "Persistent", "true")
    timer.add("Timer", "RandomizedDelaySec", "15min")
    timer.add("Install", "WantedBy", "timers.target")
    return [service, timer]
