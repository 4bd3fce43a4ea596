"""Real-browser fixtures: Debian's Chromium driven by Playwright, against real gateway processes.

The browser is never downloaded (`playwright install` is not used): Playwright launches the
system's /usr/bin/chromium. Without it these tests FAIL, so a CI machine missing it cannot pass
by skipping them; only a developer who sets SKIP_BROWSER_TESTS=1 (outside CI) skips them,
and pytest prints why. (Not GATEWAY_*: the gateway reads those as settings.) CHROMIUM_PATH points
at another Chromium build.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.screens import SCREENSHOTS
from tests.e2e.harness import DEFAULT_POLICY, ROOT, Gateway, Upstream, start_upstream, write_gateway

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SKIP_ENV = "SKIP_BROWSER_TESTS"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]

BROWSER_POLICY = DEFAULT_POLICY + """
  - paths: ["/vault/**"]
    roles: [admin]
    fresh: 1s
"""
BROWSER_USERS = {"alice": "admin", "bob": "staff"}
UI = {"product_name": "Acme Reports", "title": "Sign in to Acme Reports", "logo_text": "AR",
      "footer_text": "Run by Acme IT · Help desk: extension 4357"}


def _browser_unavailable() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install it with 'apt-get install -y chromium' (.ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: scripts/test installs the test extra"
    return None


# Module scope, not session: sync Playwright keeps an event loop running in this thread while it
# is open, and pytest-asyncio cannot run the async tests of later modules beside it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _browser_unavailable()
    if problem is not None:
        if os.environ.get(SKIP_ENV) == "1" and not os.environ.get("CI"):
            pytest.skip(f"browser tests skipped ({SKIP_ENV}=1): {problem}")
        pytest.fail(f"browser tests cannot run: {problem} (locally, {SKIP_ENV}=1 skips them)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # launch() gives every run a fresh, temporary user-data directory. Playwright turns the
        # back/forward cache off by default; real browsers have it on, and "Back after signing
        # out" must hold there too, so it stays on.
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                              ignore_default_args=["--disable-back-forward-cache"])
        yield instance
        instance.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A browser profile of its own for each test (cookies, cache), with JavaScript off: the pages must not need it."""
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 1024, "height": 720}, locale="en-GB")
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A tab; the test fails if the browser reports anything the CSP blocked (a style, an image)."""
    tab = context.new_page()
    blocked: list[str] = []
    tab.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None)
    yield tab
    assert blocked == [], f"blocked by the Content-Security-Policy: {blocked}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = start_upstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with its own [ui] branding; a 1 s upstream read timeout makes ?sleep=3 a 504."""
    instance = write_gateway(tmp_path_factory.mktemp("browser-gateway"), upstream.url, policy=BROWSER_POLICY,
                             settings={"ui": UI, "upstream": {"read_timeout": "1s"}})
    instance.add_users(BROWSER_USERS)
    instance.start()
    yield instance
    instance.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENSHOTS.exists() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"browser screenshots: {SCREENSHOTS.relative_to(ROOT)}/")
