"""Trainer service settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from hivemind_common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    service_name: str = "trainer"
