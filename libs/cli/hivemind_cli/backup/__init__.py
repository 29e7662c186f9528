"""``hivemind backup`` and ``hivemind restore``: a snapshot of the suite's state and its way back.

A backup is one folder ``hivemind-backup-<UTC time>/`` with ``redis.jsonl`` (every key of every
primary, as DUMP payloads with their TTLs), ``files/`` (the serving and previous versions'
artifacts, datasets, calibration; secrets only when asked) and ``manifest.json`` (what it holds
and the sha256 of every file). A restore checks every sum before it changes anything.
"""

from hivemind_cli.backup.snapshot import BackupResult, restore_snapshot, write_snapshot

__all__ = ["BackupResult", "restore_snapshot", "write_snapshot"]
