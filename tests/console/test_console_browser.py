"""The console in a real headless Chromium against a real gateway and Redis.

Every test records each request the pages make and asserts that none left the gateway's origin;
a screenshot of every page is kept in ``var/test-artifacts/console/``.
"""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from console.browsing import (
    Tab,
    accessibility_problems,
    client_for,
    console_tab,
    key_for,
    off_loop,
)
from console.seeding import log_missed_queries

from support.gateway import RunningGateway
from support.model_versions import register_version

PAGES = ("overview", "memory", "suggestions", "learning", "models", "calculator", "keys")


def _assert_stayed_home(tab: Tab) -> None:
    assert tab.requests, "the page made no request at all"
    assert tab.foreign == [], f"requests left the gateway: {tab.foreign}"
    broken = [e for e in tab.console_errors if "Content Security Policy" in e or "Error" in e]
    assert broken == [], broken


def _text(tab: Tab, selector: str) -> str:
    return str(tab.page.locator(selector).inner_text())


def test_an_operator_sees_every_page_and_nothing_loads_from_another_origin(
    console: RunningGateway, chromium: Any, artifacts: Path
) -> None:
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "acme", "operator"))
        assert _text(tab, "[data-testid=role]") == "operator"
        for slug in PAGES:
            tab.goto(f"/console/{slug}")
            assert tab.page.locator("h1").inner_text() == slug.capitalize()
            tab.page.wait_for_function(
                "() => !document.body.innerText.includes('Loading…')", timeout=15_000
            )
            tab.shot(artifacts, f"{slug}-operator")
            assert accessibility_problems(tab) == [], slug
        # the overview filled its cards from the API
        tab.goto("/console/overview")
        tab.page.wait_for_function(
            "() => !document.body.innerText.includes('Loading…')", timeout=15_000
        )
        assert "gateway" in _text(tab, "[data-testid=services]")
        assert "standalone" in _text(tab, "[data-testid=redis]")
        assert "total" in _text(tab, "[data-testid=requests]")
        # the navigation is boosted by htmx (no full reload); the new page fills itself
        tab.page.get_by_role("link", name="Suggestions").click()
        tab.page.wait_for_url(console.url + "/console/suggestions")
        tab.page.wait_for_function(
            "() => document.querySelector('main').dataset.page === 'suggestions'"
            " && !document.body.innerText.includes('Loading…')",
            timeout=15_000,
        )
        assert tab.page.get_by_role("link", name="Suggestions").get_attribute("aria-current") == (
            "page"
        )
        _assert_stayed_home(tab)


def test_the_console_is_usable_at_phone_width(
    console: RunningGateway, chromium: Any, artifacts: Path
) -> None:
    with console_tab(chromium, console.url, width=375, height=740) as tab:
        tab.sign_in(key_for(console, "acme", "admin"))
        for slug in PAGES:
            tab.goto(f"/console/{slug}")
            # nothing wider than the screen: no sideways scrolling of the page itself
            overflow = tab.page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, f"{slug} is {overflow}px wider than a phone"
            tab.shot(artifacts, f"{slug}-phone")
        _assert_stayed_home(tab)


def test_sign_in_works_from_the_keyboard_and_a_wrong_key_is_told_so(
    console: RunningGateway, chromium: Any, artifacts: Path
) -> None:
    with console_tab(chromium, console.url) as tab:
        tab.goto("/console/signin")
        assert accessibility_problems(tab) == []
        tab.page.keyboard.press("Tab")  # the skip link first
        tab.page.keyboard.press("Tab")
        assert tab.page.evaluate("() => document.activeElement.id") == "api_key"
        tab.page.keyboard.type("hm_0bad0bad_nope")
        tab.page.keyboard.press("Enter")
        tab.page.wait_for_load_state("networkidle")
        assert "unknown API key" in _text(tab, "[role=alert]")
        tab.shot(artifacts, "signin-refused")
        tab.page.get_by_label("API key").fill(key_for(console, "acme", "read"))
        tab.page.keyboard.press("Enter")
        tab.page.wait_for_url(console.url + "/console/overview")
        # the key is nowhere in the browser: not in a cookie, not in storage, not in the page
        key = key_for(console, "acme", "read")
        cookies = tab.page.context.cookies()
        assert all(key not in c["value"] for c in cookies)
        assert key not in tab.page.content()
        stored = tab.page.evaluate(
            "() => JSON.stringify(Object.assign({}, localStorage, sessionStorage))"
        )
        assert key not in stored
        _assert_stayed_home(tab)


def test_memory_search_edit_and_delete_a_fact_through_the_page(
    console: RunningGateway, chromium: Any, artifacts: Path
) -> None:
    api = client_for(console, "acme", "write")
    for key, value in (
        ("deploy.day", "Deploys happen on Thursday afternoons"),
        ("oncall.rota", "The on-call rota changes every Monday"),
        ("db.engine", "The main database is PostgreSQL 16"),
    ):
        assert api.put(f"/v1/facts/{key}", json={"value": value}).status_code == 200
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "acme", "write"))
        tab.goto("/console/memory")
        facts = tab.page.locator("[data-testid=facts]")
        facts.get_by_text("PostgreSQL 16").wait_for()
        # search narrows the table to what matches
        tab.page.get_by_label("Search facts").fill("database engine")
        tab.page.get_by_role("button", name="Search", exact=True).first.click()
        tab.page.wait_for_function(
            "() => !document.querySelector('[data-testid=facts]').innerText.includes('Thursday')"
        )
        assert "PostgreSQL 16" in facts.inner_text()
        tab.page.get_by_role("button", name="Show all").first.click()
        facts.get_by_text("Thursday afternoons").wait_for()
        # edit: the new value is what the API now answers
        row = facts.locator("tr", has_text="deploy.day")
        row.get_by_role("button", name="Edit").click()
        tab.page.get_by_label("New value of deploy.day").fill("Deploys happen on Tuesday mornings")
        tab.page.get_by_role("button", name="Save", exact=True).click()
        facts.get_by_text("Tuesday mornings").wait_for()
        assert (
            api.get("/v1/facts/deploy.day").json()["value"] == "Deploys happen on Tuesday mornings"
        )
        tab.shot(artifacts, "memory-edited")
        # delete (after the confirm dialog)
        tab.page.once("dialog", lambda dialog: dialog.accept())
        facts.locator("tr", has_text="oncall.rota").get_by_role("button", name="Delete").click()
        tab.page.wait_for_function(
            "() => !document.querySelector('[data-testid=facts]').innerText.includes('oncall.rota')"
        )
        assert api.get("/v1/facts/oncall.rota").status_code == 404
        _assert_stayed_home(tab)


def test_memories_sessions_and_documents_are_listed_and_searchable(
    console: RunningGateway, chromium: Any, artifacts: Path
) -> None:
    api = client_for(console, "acme", "write")
    session = api.post("/v1/sessions", json={"task": "migrate the billing service"}).json()
    api.post(
        "/v1/memories",
        json={"text": "We chose Kafka for the billing events", "session_id": session["id"]},
    )
    api.post("/v1/memories", json={"text": "The staging cluster runs in Frankfurt"})
    doc = api.post(
        "/v1/docs",
        json={
            "source": "docs/runbook.md",
            "text": "# Runbook\n\nRestart the ingest worker with systemctl restart ingest.\n",
        },
    )
    assert doc.status_code == 200, doc.text
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "acme", "read"))
        tab.goto("/console/memory")
        memories = tab.page.locator("[data-testid=memories]")
        memories.get_by_text("Kafka for the billing events").wait_for()
        tab.page.locator("[data-testid=sessions]").get_by_text(
            "migrate the billing service"
        ).wait_for()
        docs = tab.page.locator("[data-testid=docs]")
        docs.get_by_text("docs/runbook.md").wait_for()
        tab.page.get_by_label("Search memories").fill("staging cluster Frankfurt")
        tab.page.locator("#memory-search").get_by_role("button", name="Search").click()
        tab.page.wait_for_function(
            "() => !document.querySelector('[data-testid=memories]').innerText.includes('Kafka')"
        )
        assert "Frankfurt" in memories.inner_text()
        tab.page.get_by_label("Search documents").fill("restart the ingest worker")
        tab.page.locator("#doc-search").get_by_role("button", name="Search").click()
        docs.get_by_text("docs/runbook.md:1-3").wait_for()
        tab.shot(artifacts, "memory-lists")
        _assert_stayed_home(tab)


def test_the_playground_shows_the_injected_text_and_every_candidate(
    console: RunningGateway, chromium: Any, artifacts: Path
) -> None:
    api = client_for(console, "acme", "write")
    api.put("/v1/facts/deploy.day", json={"value": "Deploys happen on Thursday afternoons"})
    api.put("/v1/facts/db.engine", json={"value": "The main database is PostgreSQL 16"})
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "acme", "read"))
        tab.goto("/console/memory")
        tab.page.get_by_label("Query").fill("which day do deploys happen")
        tab.page.get_by_role("button", name="Retrieve").click()
        injected = tab.page.locator("[data-testid=injected-text]")
        injected.wait_for()
        tab.page.wait_for_function(
            "() => document.querySelector('[data-testid=injected-text]').innerText.length > 0"
        )
        expected = api.post(
            "/v1/rag/context", json={"query": "which day do deploys happen", "explain": True}
        ).json()
        assert "Thursday afternoons" in injected.inner_text()
        assert injected.inner_text().strip() == expected["explain"]["injected_text"].strip()
        candidates = _text(tab, "#pg-candidates")
        assert "deploy.day" in candidates
        tab.shot(artifacts, "memory-playground")
        _assert_stayed_home(tab)


def test_an_operator_promotes_a_version_and_a_read_key_is_refused(
    console_with_inference: RunningGateway,
    chromium: Any,
    artifacts: Path,
    redis_url: str,
    data_dir: Path,
) -> None:
    gw = console_with_inference
    off_loop(
        register_version, redis_url, data_dir, "v1", 1.0, {"heldout_loss": 1.9, "train_loss": 1.7}
    )
    off_loop(
        register_version, redis_url, data_dir, "v2", 2.0, {"heldout_loss": 1.6, "train_loss": 1.4}
    )
    reader = client_for(gw, "acme", "read")
    with console_tab(chromium, gw.url) as tab:
        tab.sign_in(key_for(gw, "acme", "read"))
        tab.goto("/console/models")
        versions = tab.page.locator("[data-testid=versions]")
        versions.get_by_text("v2").wait_for()
        assert versions.get_by_role("button").count() == 0  # no promote or roll back offered
        refused = tab.fetch("POST", "/v1/models/default/promote", {"version": "v2"})
        assert refused["status"] == 403
        tab.shot(artifacts, "models-read")
    with console_tab(chromium, gw.url) as tab:
        tab.sign_in(key_for(gw, "root", "operator"))
        tab.goto("/console/models")
        tab.page.once("dialog", lambda dialog: dialog.accept())
        tab.page.get_by_role("button", name="Promote v2").click()
        tab.page.locator("#status").get_by_text("Serving default v2").wait_for(timeout=120_000)
        statuses = {
            d["version"]: d["status"] for d in reader.get("/v1/models/versions").json()["data"]
        }
        assert statuses["v2"] == "serving"
        tab.goto("/console/models")
        tab.page.locator("[data-testid=versions]").get_by_text("serving").wait_for()
        tab.shot(artifacts, "models-operator")
        tab.goto("/console/learning")
        tab.page.locator("#loss-chart canvas").wait_for()  # the loss chart per version drew
        tab.shot(artifacts, "learning-operator")
        _assert_stayed_home(tab)


def test_a_tenant_admin_creates_a_key_shown_once_and_revokes_it(
    console: RunningGateway, chromium: Any, artifacts: Path
) -> None:
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "acme", "admin"))
        tab.goto("/console/keys")
        tab.page.get_by_label("Name").fill("ci bot")
        tab.page.get_by_label("Role").select_option("read")
        tab.page.get_by_role("button", name="Create key").click()
        shown = tab.page.locator("[data-testid=new-key]")
        shown.wait_for()
        tab.page.wait_for_function(
            "() => document.querySelector('[data-testid=new-key]').innerText.startsWith('hm_')"
        )
        new_key = shown.inner_text().strip()
        tab.shot(artifacts, "keys-created")
        key_id = new_key.split("_")[1]
        with httpx.Client(base_url=console.url, timeout=30) as http:
            me = http.get("/v1/facts", headers={"Authorization": f"Bearer {new_key}"})
            assert me.status_code == 200
            # shown once: the list never carries it again
            tab.page.get_by_role("button", name="I have copied it").click()
            assert new_key not in tab.page.content()
            tab.goto("/console/keys")
            assert new_key not in tab.page.content()
            tab.page.locator("[data-testid=keys]").get_by_role(
                "cell", name=key_id, exact=True
            ).wait_for()
            tab.page.once("dialog", lambda dialog: dialog.accept())
            tab.page.get_by_role("button", name=f"Revoke {key_id}").click()
            tab.page.locator("[data-testid=keys] tr", has_text=key_id).get_by_text(
                "revoked"
            ).wait_for()

            def refused() -> bool:
                r = http.get("/v1/facts", headers={"Authorization": f"Bearer {new_key}"})
                return r.status_code == 401

            deadline = time.monotonic() + 10
            while not refused():  # a gateway's key cache may hold it up to its TTL
                assert time.monotonic() < deadline, "the revoked key still works"
                time.sleep(0.1)
        tab.shot(artifacts, "keys-revoked")
        _assert_stayed_home(tab)


@pytest.mark.parametrize("role", ["read"])
def test_a_read_key_sees_no_control_that_changes_state(
    console: RunningGateway, chromium: Any, artifacts: Path, role: str
) -> None:
    client_for(console, "acme", "write").put("/v1/facts/a", json={"value": "b"})
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "acme", role))
        nav = _text(tab, "nav")
        assert "Keys" not in nav
        tab.goto("/console/memory")
        tab.page.locator("[data-testid=facts]").get_by_text("b").first.wait_for()
        for name in ("Edit", "Delete", "Save fact"):
            assert tab.page.get_by_role("button", name=re.compile(f"^{name}")).count() == 0
        tab.goto("/console/learning")
        assert tab.page.get_by_role("button", name=re.compile("Queue")).count() == 0
        tab.goto("/console/keys")
        assert "needs a key with the role" in _text(tab, "main")
        tab.shot(artifacts, "keys-read-refused")
        _assert_stayed_home(tab)


def test_a_missed_topic_becomes_a_fact_from_the_suggestions_page(
    console: RunningGateway, chromium: Any, artifacts: Path, redis_url: str
) -> None:
    missed = [
        "how do I renew the ingress certificate",
        "ingress certificate expiry date",
        "who owns the ingress certificate",
    ]
    off_loop(log_missed_queries, redis_url, "acme", missed, "miss")
    api = client_for(console, "acme", "write")
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "acme", "write"))
        tab.goto("/console/suggestions")
        board = tab.page.locator("[data-testid=suggestions]")
        board.get_by_text("who owns the ingress certificate").first.wait_for()
        tab.shot(artifacts, "suggestions-missed")
        topic = board.locator("tbody tr").first.locator("td").first.inner_text().strip()
        assert topic in ("ingress", "certificate")
        board.get_by_role("link", name=f"Add a fact about {topic}").click()
        tab.page.wait_for_url(re.compile(r".*/console/memory\?fact_key=.*"))
        tab.page.wait_for_load_state("networkidle")
        assert tab.page.get_by_label("Key", exact=True).input_value() == topic
        tab.page.get_by_label("Value").fill("The ingress certificate renews itself on the 1st")
        tab.page.get_by_role("button", name="Save fact").click()
        tab.page.locator("[data-testid=facts]").get_by_text("renews itself").wait_for()
        assert "renews itself" in api.get(f"/v1/facts/{topic}").json()["value"]
        _assert_stayed_home(tab)


def test_an_operator_queues_a_learning_cycle_from_the_learning_page(
    console: RunningGateway, chromium: Any, artifacts: Path
) -> None:
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "root", "operator"))
        tab.goto("/console/learning")
        tab.page.get_by_role("button", name="Queue a learning cycle").click()
        status = tab.page.locator("#status")
        status.get_by_text("Queued learning job").wait_for()
        job_id = status.inner_text().split("job ")[1].rstrip(".")
        tab.page.locator("[data-testid=jobs]").get_by_text(job_id).wait_for()
        job = client_for(console, "root", "operator").get(f"/v1/learning/jobs/{job_id}")
        assert job.status_code == 200 and job.json()["status"] == "queued"
        # the job's row says how long it has spent in each stage it reached
        row = tab.page.locator("[data-testid=jobs] tr", has_text=job_id)
        assert re.search(r"queued \d+\.\d s", row.inner_text()), row.inner_text()
        tab.shot(artifacts, "learning-queued")
        _assert_stayed_home(tab)


def test_the_learning_page_counts_samples_by_source(
    console: RunningGateway, chromium: Any, artifacts: Path, tmp_path: Path
) -> None:
    from hivemind_common.redis import connect_redis
    from hivemind_trainer.data.collector import Collector
    from hivemind_trainer.data.dataset import Dataset
    from hivemind_trainer.data.sample_filter import SampleFilter

    writer = client_for(console, "acme", "write")
    for i in range(2):
        chat = [
            {"role": "user", "content": f"how do I rotate the {i} log files on the nas?"},
            {"role": "assistant", "content": f"use logrotate with a weekly rule number {i}"},
        ]
        r = writer.post("/v1/learning/samples", json={"messages": chat, "source": "cline-bot"})
        assert r.status_code in (200, 201, 202), r.text

    async def collect() -> None:
        redis = connect_redis(console.redis_url)
        try:
            dataset = Dataset(tmp_path / "datasets")
            await Collector(redis, dataset, SampleFilter(), consumer="console-test").drain()
        finally:
            await redis.aclose()

    # Playwright's sync API keeps an event loop on this thread: collect on another one
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, collect()).result(timeout=120)
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "root", "operator"))
        tab.goto("/console/learning")
        row = tab.page.locator("[data-testid=by-source] tr", has_text="cline-bot")
        row.wait_for()
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == "cline-bot" and sum(int(c) for c in cells[1:]) == 2, cells
        tab.shot(artifacts, "learning-by-source")
        _assert_stayed_home(tab)


def test_the_learning_page_says_when_a_version_over_fits(
    console: RunningGateway, chromium: Any, artifacts: Path, redis_url: str, data_dir: Path
) -> None:
    off_loop(
        register_version, redis_url, data_dir, "v1", 1.0, {"heldout_loss": 1.5, "train_loss": 1.6}
    )
    off_loop(
        register_version, redis_url, data_dir, "v2", 2.0, {"heldout_loss": 1.8, "train_loss": 1.1}
    )
    with console_tab(chromium, console.url) as tab:
        tab.sign_in(key_for(console, "acme", "read"))
        tab.goto("/console/learning")
        hints = tab.page.locator("[data-testid=hints]")
        hints.get_by_text("Over-fitting: held-out loss rising").wait_for()
        assert "1.5 → 1.8" in hints.inner_text()
        tab.shot(artifacts, "learning-over-fitting")
        _assert_stayed_home(tab)
