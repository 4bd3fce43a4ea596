"""The page set: [ui] text is escaped, the logo's origin joins the CSP, errors render cheaply."""

from __future__ import annotations

import pytest

from gateway.config import UiSettings
from gateway.errors import BadGateway, Forbidden, GatewayTimeout
from gateway.http import render_error, switch_user_url
from gateway.http.pages import CONTENT_SECURITY_POLICY, Pages, describe_agent

HOSTILE = UiSettings(product_name='<script>alert("x")</script> & Co', title="Sign <b>in</b>",
                     logo_text="<img src=x onerror=alert(1)>", footer_text="</footer><script>bad()</script>")


def test_operator_text_is_escaped_everywhere() -> None:
    pages = Pages(HOSTILE)
    for body in (pages.render("login.html", title=HOSTILE.title, next="/", username="", csrf_token="t"),
                 pages.error_page(502, "Application unavailable", "down"),
                 pages.error_page(403, "Access denied", "no", user="<i>bob</i>", switch_url="/.gateway/logout?next=%2F")):
        html = body.decode()
        assert "<script>" not in html and "<img src=x" not in html and "<b>in</b>" not in html and "<i>bob" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html


def test_branding_is_shown() -> None:
    ui = UiSettings(product_name="Acme Reports", title="Sign in to Acme", logo_text="AR", footer_text="Help: x4357")
    html = Pages(ui).render("login.html", title=ui.title, next="/", username="", csrf_token="t").decode()
    assert "<title>Sign in to Acme · Acme Reports</title>" in html
    assert '<span class="logo-text" aria-hidden="true">AR</span>' in html
    assert '<footer class="footer">Help: x4357</footer>' in html


def test_a_logo_image_uses_the_text_as_its_alt_and_its_origin_joins_the_csp() -> None:
    ui = UiSettings(logo_url="https://cdn.example.com/acme.svg", logo_text="Acme")
    pages = Pages(ui)
    assert '<img class="logo" src="https://cdn.example.com/acme.svg" alt="Acme"' in pages.error_page(502, "t", "m").decode()
    csp = dict(pages.headers)[b"content-security-policy"].decode()
    assert "img-src 'self' https://cdn.example.com;" in csp and "script-src" not in csp
    local = Pages(UiSettings(logo_url="/static/logo.png"))
    assert dict(local.headers)[b"content-security-policy"].decode() == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "style-src 'self'" in CONTENT_SECURITY_POLICY


def test_forbidden_page_names_the_user_and_links_to_switch_user() -> None:
    status, headers, body = render_error(Forbidden(), True, "bob", target=(b"/admin/", b"tab=users"))
    html = body.decode()
    assert status == 403 and "signed in as <strong class=\"who\">bob</strong>" in html
    assert 'href="/.gateway/logout?next=%2Fadmin%2F%3Ftab%3Dusers"' in html
    assert dict(headers)[b"cache-control"] == b"no-store"


@pytest.mark.parametrize(("target", "url"), [
    ((b"/admin/", b""), "/.gateway/logout?next=%2Fadmin%2F"),
    ((b"//evil.example/", b""), "/.gateway/logout?next=%2F"),  # never a way off this site
    ((b"/a", b"x=1&y=2"), "/.gateway/logout?next=%2Fa%3Fx%3D1%26y%3D2"),
    (None, "/.gateway/logout?next=%2F"),
])
def test_switch_user_url(target: tuple[bytes, bytes] | None, url: str) -> None:
    assert switch_user_url(target) == url


def test_error_pages_without_a_user_are_rendered_once() -> None:
    pages = Pages()
    first = render_error(BadGateway(), True, pages=pages)[2]
    assert render_error(BadGateway(), True, pages=pages)[2] is first  # the same bytes, not rendered again
    assert b"Try again" in first and b"Error 502" in first
    assert render_error(GatewayTimeout(), True, pages=pages)[2] is not first
    status, headers, body = render_error(GatewayTimeout(), False, pages=pages)
    assert status == 504 and body == b'{"error": "gateway_timeout", "message": "The application took too long to answer."}'
    assert dict(headers)[b"content-length"] == str(len(body)).encode()


@pytest.mark.parametrize(("agent", "shown"), [
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 "
     "Edg/126.0", "Edge on Windows"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
     "Mobile/15E148 Safari/604.1", "Safari on iPhone"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
     "Chrome on Android"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
     "Chrome on macOS"),
    ("curl/8.5.0", "curl"),
    ("Phone/2", "Phone/2"),
    ("x" * 100, "x" * 59 + "…"),
    ("", "Unknown browser"),
    (None, "Unknown browser"),
])
def test_describe_agent(agent: str | None, shown: str) -> None:
    assert describe_agent(agent) == shown
