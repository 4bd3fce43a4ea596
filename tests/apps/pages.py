"""What the real-app tests do in the browser: sign in on the gateway's page, watch WebSockets."""

from __future__ import annotations

import re
from typing import Any, TypedDict
from urllib.parse import urlsplit

from tests.e2e.harness import PASSWORD

# For page loads and clicks: JupyterLab's first load compiles megabytes of JavaScript.
WAIT_MS = 30_000

# Run in every page before the app's own scripts: wrap WebSocket so the test can read each socket's
# URL, when it opened, and the close code and reason the browser saw. Playwright reports that a
# socket closed but not its code, and the code (1008 from the gateway) is the point.
SOCKET_RECORDER = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const record = {url: String(args[0]), opened: null, closed: null, code: null, reason: null};
      window.__sockets.push(record);
      this.addEventListener('open', () => { record.opened = Date.now(); });
      this.addEventListener('close', (event) => {
        record.closed = Date.now(); record.code = event.code; record.reason = event.reason;
      });
    }
  };
})();
"""


def new_context(browser: Any) -> Any:
    """A fresh browser profile with JavaScript ON (these are JavaScript apps) that records its WebSockets."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    context.set_default_timeout(WAIT_MS)
    context.add_init_script(SOCKET_RECORDER)
    return context


class Socket(TypedDict):
    url: str
    opened: float | None  # ms since the epoch, the browser's clock
    closed: float | None
    code: int | None
    reason: str | None


def sockets(page: Any) -> list[Socket]:
    found: list[Socket] = page.evaluate("() => window.__sockets")
    return found


def path_of(url: str) -> str:
    return urlsplit(url).path


def on_sign_in_form(page: Any) -> bool:
    page.wait_for_load_state()
    return path_of(page.url) == "/.gateway/login" and page.get_by_label("Password").count() == 1


def sign_in(page: Any, user: str, password: str = PASSWORD) -> None:
    """Fill in the gateway's sign-in form that the page shows, as a person would, and send it."""
    assert on_sign_in_form(page), f"expected the gateway's sign-in form, got {page.url}"
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name=re.compile("^Sign in$")).click()
    page.wait_for_url(lambda url: path_of(url) != "/.gateway/login")


def is_gateway_refusal(page: Any) -> bool:
    """The gateway's own 403 page (not an app page that happens to say no)."""
    return bool(page.locator("h1").count() == 1 and page.locator("h1").inner_text() == "Access denied"
                and page.locator(".meta").count() == 1 and page.locator(".meta").inner_text() == "Error 403")
