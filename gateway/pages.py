"""The gateway's own HTML pages: one Jinja environment, autoescaped, and the headers every page sends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

PRODUCT_NAME = "Gateway"

# Gateway pages are never cached, never framed, never sniffed, and load nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
]

_env = Environment(
    loader=PackageLoader("gateway", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    enable_async=False,
)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


_env.filters["when"] = _when


def render_page(template: str, **context: Any) -> bytes:
    return _env.get_template(template).render(product=PRODUCT_NAME, **context).encode("utf-8")
