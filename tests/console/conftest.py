"""A real gateway (with a real inference service, for promote) and a real headless Chromium.

The browser is Debian's ``chromium`` (``scripts/install.sh`` installs it), driven by Playwright's
Python package; Playwright never downloads a browser of its own. Screenshots of the pages go to
``var/test-artifacts/console/`` (kept after the run, for people to look at).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.gateway import RunningGateway, running_gateway

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "console"


@pytest.fixture
def console(gateway: RunningGateway) -> RunningGateway:
    """The root ``gateway`` fixture: no embedding, inference or trainer behind it."""
    return gateway


@pytest.fixture
def console_with_inference(
    redis_url: str, internal_token: str, data_dir: Path
) -> Iterator[RunningGateway]:
    """A gateway with a real inference service (SmolLM2), so promote really swaps a model."""
    from inference.serving import running_inference

    with (
        running_inference(internal_token, redis_url) as inference_url,
        running_gateway(
            redis_url,
            internal_token,
            data_dir,
            inference_url=inference_url,
            embedding_url="http://127.0.0.1:9",
            trainer_url="http://127.0.0.1:9",
        ) as gw,
    ):
        yield gw


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per module (Debian's, never a downloaded one). Not per session:
    Playwright's sync API keeps an event loop running in the main thread while it is up, which
    would break every later test that calls ``asyncio.run``."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "scripts/install.sh installs Debian's chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
