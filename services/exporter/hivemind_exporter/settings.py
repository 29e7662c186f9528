"""Exporter service settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from hivemind_common.settings import ServiceSettings


class ExporterSettings(ServiceSettings):
    service_name: str = "exporter"
