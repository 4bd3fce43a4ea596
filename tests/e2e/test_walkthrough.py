"""The demo walk, as a browser does it: ask for a page, sign in, come back, see the identity,
be refused the admin area, sign out, and find the old cookie dead."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.e2e.harness import PASSWORD, Gateway, csrf_token

HTML = {"Accept": "text/html,application/xhtml+xml"}


def test_browser_walk(gateway: Gateway) -> None:
    with gateway.client() as browser:
        first = browser.get("/reports/q1?year=2026&x=a%20b", headers=HTML)
        assert first.status_code == 302
        login_url = first.headers["location"]
        assert login_url.startswith("/.gateway/login?next=")
        assert parse_qs(urlsplit(login_url).query)["next"] == ["/reports/q1?year=2026&x=a%20b"]

        form = browser.get(login_url, headers=HTML)
        assert form.status_code == 200
        for name in ("username", "password", "csrf_token", "next"):
            assert f'name="{name}"' in form.text
        signed_in = browser.post("/.gateway/login", headers=HTML, data={
            "username": "carol", "password": PASSWORD, "csrf_token": csrf_token(form.text),
            "next": "/reports/q1?year=2026&x=a%20b",
        })
        assert signed_in.status_code in (302, 303)
        assert signed_in.headers["location"] == "/reports/q1?year=2026&x=a%20b"
        session_cookie = browser.cookies.get("gateway_session")
        assert session_cookie

        page = browser.get(signed_in.headers["location"], headers=HTML)
        assert page.status_code == 200
        assert '<strong id=user>carol</strong>' in page.text
        assert '<strong id=roles>analyst</strong>' in page.text

        refused = browser.get("/admin/settings", headers=HTML)
        assert refused.status_code == 403
        assert "text/html" in refused.headers["content-type"]
        assert "carol" in refused.text  # the 403 page says who is signed in

        logout_form = browser.get("/.gateway/logout", headers=HTML)
        assert logout_form.status_code == 200
        out = browser.post("/.gateway/logout", headers=HTML, data={"csrf_token": csrf_token(logout_form.text)})
        assert out.status_code == 200
        assert "gateway_session" not in browser.cookies

        assert browser.get("/reports/q1", headers=HTML).status_code == 302

    # The copied cookie is dead server-side, not just deleted in the browser.
    with gateway.client(cookies={"gateway_session": session_cookie}) as thief:
        assert thief.get("/reports/q1").status_code == 401
        assert thief.get("/.gateway/whoami").status_code == 401
