"""The gateway's own HTML pages (web/templates): one template set, compiled once per ``[ui]`` configuration.

In http/ rather than web/ because every way in renders its refusals with it (http/refuse.py).

``Pages`` is built at start-up (``create_app``): every template is parsed and compiled then, and the
headers every page sends are computed then, so rendering a page (the proxy path's 403/502/504
included) only runs compiled code. Autoescaping is on for every template: the operator's ``[ui]``
text and anything taken from a request are shown as text, never as HTML.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from gateway.clock import format_human_time
from gateway.config import UiSettings

__all__ = ["CONTENT_SECURITY_POLICY", "DEFAULT_PAGES", "Pages", "describe_agent", "page_headers"]

MAX_CACHED_ERROR_PAGES = 256
TEMPLATES = ("login.html", "logout.html", "error.html", "sessions.html", "account.html")

# Gateway pages are never cached, never framed, never sniffed, run no script and load nothing from
# elsewhere (a configured https logo's origin is the one exception, for images only).
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'{images}; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
CONTENT_SECURITY_POLICY = _CSP.format(images="")


def page_headers(ui: UiSettings) -> list[tuple[bytes, bytes]]:
    origin = ui.logo_origin
    csp = _CSP.format(images=f" {origin}" if origin else "")
    return [
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", csp.encode()),
    ]


# Most specific first: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chromium/", "Chromium"),
             ("HeadlessChrome/", "Chrome"), ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl"),
             ("python-httpx/", "httpx"), ("python-requests/", "requests"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("CrOS", "ChromeOS"),
            ("Windows", "Windows"), ("Mac OS X", "macOS"), ("Macintosh", "macOS"), ("Linux", "Linux"))
MAX_AGENT_SHOWN = 60


def describe_agent(user_agent: str | None) -> str:
    """"Firefox on Windows" from a User-Agent string, for people choosing which session to end."""
    if not user_agent:
        return "Unknown browser"
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser is None:  # a client we do not know: show what it says about itself
        return user_agent if len(user_agent) <= MAX_AGENT_SHOWN else user_agent[: MAX_AGENT_SHOWN - 1] + "…"
    return f"{browser} on {system}" if system else browser


@functools.cache
def _environment() -> Environment:
    """The one template environment of the process: the templates compile once (tens of
    milliseconds each), on first use, however many ``[ui]`` configurations render them (the
    ``ui`` of a page is in its context, not in the environment)."""
    environment = Environment(
        loader=PackageLoader("gateway", "web/templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,  # templates are part of the release: no stat() per page
        enable_async=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = format_human_time
    environment.filters["agent"] = describe_agent
    return environment


class Pages:
    """Every gateway page for one ``[ui]`` configuration."""

    def __init__(self, ui: UiSettings | None = None) -> None:
        self.ui = ui or UiSettings()
        self.headers = page_headers(self.ui)
        self._error_pages: dict[tuple[int, str, str], bytes] = {}

    def render(self, template: str, **context: Any) -> bytes:
        if template not in TEMPLATES:
            raise KeyError(template)
        return _environment().get_template(template).render(context, ui=self.ui).encode("utf-8")

    def error_page(self, status: int, title: str, message: str, user: str | None = None,
                   switch_url: str | None = None) -> bytes:
        """An error page; one that names no user is the same for every request, so it is rendered once."""
        if user is not None:
            return self.render("error.html", status=status, title=title, message=message, user=user,
                               switch_url=switch_url)
        key = (status, title, message)
        page = self._error_pages.get(key)
        if page is None:
            page = self.render("error.html", status=status, title=title, message=message, user=None, switch_url=None)
            if len(self._error_pages) < MAX_CACHED_ERROR_PAGES:  # bounded: a message may quote the request
                self._error_pages[key] = page
        return page


DEFAULT_PAGES = Pages()
