"""A signed-in browser tab on the console that records every request the page makes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from support.gateway import RunningGateway


def off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a worker thread: Playwright's sync API keeps an event loop running in
    the test's thread, so helpers that call ``asyncio.run`` (making keys, registering model
    versions) must run elsewhere."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def key_for(gw: RunningGateway, tenant: str, role: str) -> str:
    """An API key of ``tenant`` with ``role`` (made once per gateway)."""
    return str(off_loop(gw.key, tenant, role))


def client_for(gw: RunningGateway, tenant: str, role: str) -> httpx.Client:
    key_for(gw, tenant, role)
    return gw.client(tenant, role)


@dataclass
class Tab:
    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.origin + path)
        self.page.wait_for_load_state("networkidle")

    def sign_in(self, key: str) -> None:
        self.goto("/console/signin")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(self.origin + "/console/overview")
        self.page.wait_for_load_state("networkidle")

    def shot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fetch(self, method: str, path: str, body: Any = None, csrf: bool = True) -> dict[str, Any]:
        """Call the API from inside the page, as the console's own script does."""
        result: dict[str, Any] = self.page.evaluate(
            """async ([method, path, body, csrf]) => {
                const headers = {"Content-Type": "application/json"};
                if (csrf) headers["X-CSRF-Token"] =
                    document.querySelector('meta[name="csrf-token"]').content;
                const init = {method, headers, credentials: "same-origin"};
                if (body !== null) init.body = JSON.stringify(body);
                const resp = await fetch(path, init);
                return {status: resp.status, text: await resp.text()};
            }""",
            [method, path, body, csrf],
        )
        return result


@contextmanager
def console_tab(
    browser: Any, origin: str, *, width: int = 1280, height: int = 900
) -> Iterator[Tab]:
    """A fresh browser context (its own cookies); any request off the gateway is aborted and
    recorded, so a test can assert that none was made."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    tab = Tab(page=page, origin=origin)
    mine = urlsplit(origin)

    def route(route: Any) -> None:
        url = route.request.url
        tab.requests.append(url)
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != (mine.scheme, mine.netloc) and parts.scheme != "data":
            tab.foreign.append(url)
            route.abort()
            return
        route.continue_()

    context.route("**/*", route)
    page.on(
        "console",
        lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: tab.console_errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()


# what a page must not have: a form control or button no one can name, or text whose contrast
# with its background is under WCAG AA (4.5:1; 3:1 for large text)
A11Y_CHECK = """() => {
  const problems = [];
  const named = (el) => (el.labels && el.labels.length) || el.getAttribute("aria-label")
    || el.getAttribute("aria-labelledby") || (el.textContent || "").trim();
  for (const el of document.querySelectorAll("input, select, textarea, button")) {
    if (el.type === "hidden" || el.offsetParent === null) continue;
    if (!named(el)) problems.push("unnamed " + el.tagName + " " + (el.id || el.name || ""));
  }
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  for (const el of document.querySelectorAll("body *")) {
    if (el.offsetParent === null && el.tagName !== "BODY") continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const fg = lum(rgb(style.color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const large = parseFloat(style.fontSize) >= 24
      || (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      const text = el.textContent.trim().slice(0, 40);
      problems.push("contrast " + ratio.toFixed(2) + " of '" + text + "'");
    }
  }
  return problems;
}"""


def accessibility_problems(tab: Tab) -> list[str]:
    """Unnamed controls and low-contrast text on the tab's current page."""
    problems: list[str] = tab.page.evaluate(A11Y_CHECK)
    return problems
