"""Sign-in and sign-out, from the attacker's side."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.harness import PASSWORD, Gateway, csrf_token, raw_get, sign_in


def _failure(gateway: Gateway, user: str, password: str) -> tuple[int, str]:
    with gateway.client() as client:
        response = sign_in(client, user, password)
        return response.status_code, response.text


def test_one_generic_failure_for_unknown_wrong_and_disabled(gateway: Gateway) -> None:
    result = gateway.cli("users", "disable", "dave")
    assert result.returncode == 0, result.stderr
    try:
        unknown = _failure(gateway, "nobody-here", PASSWORD)
        wrong = _failure(gateway, "bob", "not the right password")
        disabled = _failure(gateway, "dave", PASSWORD)
    finally:
        assert gateway.cli("users", "enable", "dave").returncode == 0
    assert unknown[0] == wrong[0] == disabled[0] == 401
    messages = {text.count("Wrong user name or password.") for _, text in (unknown, wrong, disabled)}
    assert messages == {1}
    assert "dave" in disabled[1] and "disabled" not in disabled[1].lower()


def test_success_sets_a_new_session_id_and_hardened_cookie(gateway: Gateway) -> None:
    with gateway.client() as client:
        first = sign_in(client, "bob")
        assert first.status_code == 303
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        old = client.cookies["gateway_session"]
        # Signing in again (also over an existing session) issues a new id and kills the old one.
        assert sign_in(client, "bob").status_code == 303
        new = client.cookies["gateway_session"]
        assert new != old
    with gateway.client(cookies={"gateway_session": old}) as replay:
        assert replay.get("/.gateway/whoami").status_code == 401


def test_fixation_a_planted_cookie_is_never_adopted(gateway: Gateway) -> None:
    planted = "attacker-chosen-value"
    with gateway.client(cookies={"gateway_session": planted}) as client:
        response = sign_in(client, "bob")
        assert response.status_code == 303
        issued = response.cookies["gateway_session"]
        assert issued and issued != planted


@pytest.mark.parametrize("next_value", [
    "//evil.example/", "/\\evil.example", "\\\\evil.example", "http://evil.example/", "https:evil.example",
    "javascript:alert(1)", "/\t/evil.example", "/%0d%0aSet-Cookie:x=y", " /x", "evil.example",
    "/.gateway/login", "", "///evil.example",
])
def test_next_only_ever_redirects_to_a_local_path(gateway: Gateway, next_value: str) -> None:
    with gateway.client() as client:
        response = sign_in(client, "bob", next_path=next_value)
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/") and not location.startswith("//") and "\\" not in location
        assert "evil" not in location


@pytest.mark.parametrize("next_value", ["//evil.example/", "/\\evil.example", "https:evil.example",
                                        "javascript:alert(1)", "/\t/evil.example", "\"><script>x</script>"])
def test_switching_user_never_sends_the_browser_off_site(gateway: Gateway, next_value: str) -> None:
    """The 403 page's "sign in as someone else" goes through /.gateway/logout?next=..."""
    with gateway.client() as client:
        assert sign_in(client, "bob").status_code == 303
        form = client.get("/.gateway/logout", params={"next": next_value})
        assert form.status_code == 200 and "evil" not in form.text and "<script>x" not in form.text
        out = client.post("/.gateway/logout", data={"csrf_token": csrf_token(form.text), "next": next_value})
        assert out.status_code == 303 and out.headers["location"] == "/.gateway/login?next=%2F"


def test_next_keeps_a_safe_path_and_query(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = sign_in(client, "bob", next_path="/docs/a%20b?x=1&y=%2F")
        assert response.headers["location"] == "/docs/a%20b?x=1&y=%2F"


def test_login_without_csrf_token_changes_nothing(gateway: Gateway) -> None:
    with gateway.client() as client:
        client.get("/.gateway/login")
        response = client.post("/.gateway/login", data={"username": "bob", "password": PASSWORD, "next": "/"})
        assert response.status_code == 400
        assert "gateway_session" not in client.cookies
        bad = client.post("/.gateway/login", data={"username": "bob", "password": PASSWORD, "csrf_token": "x" * 43})
        assert bad.status_code == 400
        assert "gateway_session" not in client.cookies


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://127.0.0.1:{port}", "http://127.0.0.1:1"])
def test_cross_site_post_is_refused(gateway: Gateway, origin: str) -> None:
    with gateway.client() as client:
        form = client.get("/.gateway/login")
        response = client.post("/.gateway/login", headers={"Origin": origin.format(port=gateway.port)}, data={
            "username": "bob", "password": PASSWORD, "csrf_token": csrf_token(form.text), "next": "/"})
        assert response.status_code == 403
        assert "gateway_session" not in client.cookies


def test_same_origin_post_is_accepted(gateway: Gateway) -> None:
    with gateway.client() as client:
        form = client.get("/.gateway/login")
        response = client.post("/.gateway/login", headers={"Origin": gateway.url}, data={
            "username": "bob", "password": PASSWORD, "csrf_token": csrf_token(form.text), "next": "/"})
        assert response.status_code == 303


def test_logout_requires_post_with_token(alice: httpx.Client, gateway: Gateway) -> None:
    assert alice.post("/.gateway/logout", data={"csrf_token": "forged"}).status_code == 400
    assert alice.get("/.gateway/whoami").status_code == 200  # still signed in


@pytest.mark.parametrize("cookie", [
    "garbage", "a.b.c", "", "x" * 5000, "IjEi.AAAA.AAAA", "\u00e9t\u00e9",
])
def test_malformed_cookies_are_anonymous(gateway: Gateway, cookie: str) -> None:
    header = b"Cookie: gateway_session=" + cookie.encode("utf-8") + b"\r\nAccept: application/json\r\n"
    status, _, _ = raw_get(gateway.port, b"/private", header)
    assert status in (400, 401)
    status, _, _ = raw_get(gateway.port, b"/.gateway/whoami", header)
    assert status in (400, 401)


def test_forged_cookie_with_valid_shape_is_refused(gateway: Gateway, alice: httpx.Client) -> None:
    real = alice.cookies["gateway_session"]
    payload, stamp, signature = real.split(".")
    tampered = payload + "." + stamp + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    with gateway.client(cookies={"gateway_session": tampered}) as client:
        assert client.get("/private").status_code == 401


def test_whoami(alice: httpx.Client) -> None:
    body = alice.get("/.gateway/whoami").json()
    assert body["user"] == "alice" and body["roles"] == ["admin"]
    assert "session" in body and len(body["session"]) < 20


@pytest.mark.parametrize("form", [
    {"username": "bob"}, {"password": PASSWORD}, {"username": "", "password": ""},
    {"username": "bob\x00", "password": PASSWORD}, {"username": "b" * 5000, "password": PASSWORD},
])
def test_malformed_sign_in_forms_get_4xx(gateway: Gateway, form: dict[str, str]) -> None:
    with gateway.client() as client:
        page = client.get("/.gateway/login")
        response = client.post("/.gateway/login", data={**form, "csrf_token": csrf_token(page.text)})
        assert 400 <= response.status_code < 500
        assert "gateway_session" not in client.cookies


def test_oversized_form_is_refused(gateway: Gateway) -> None:
    with gateway.client() as client:
        page = client.get("/.gateway/login")
        response = client.post("/.gateway/login", data={
            "username": "bob", "password": "p" * 200_000, "csrf_token": csrf_token(page.text)})
        assert response.status_code == 413


def test_gateway_pages_send_security_headers(gateway: Gateway) -> None:
    with gateway.client() as client:
        page = client.get("/.gateway/login")
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_secure_cookie_mode_uses_host_prefix(make_gateway: Any) -> None:
    gateway = make_gateway(settings={"session": {"secure_cookie": True}}, users={"jo": "staff"})
    with gateway.client() as client:
        form = client.get("/.gateway/login")
        csrf_cookie = form.headers["set-cookie"]
        assert csrf_cookie.startswith("__Host-gateway_csrf=") and "Secure" in csrf_cookie
        binding = csrf_cookie.split(";")[0].split("=", 1)[1]
        # Over plain http a client keeps Secure cookies to itself, so send them by hand.
        response = client.post("/.gateway/login", headers={"Cookie": f"__Host-gateway_csrf={binding}"}, data={
            "username": "jo", "password": PASSWORD, "csrf_token": csrf_token(form.text), "next": "/"})
        assert response.status_code == 303
        cookies = response.headers.get_list("set-cookie")
        cookie = next(c for c in cookies if c.startswith("__Host-gateway_session="))
        assert all(c.startswith("__Host-") and "Secure" in c for c in cookies)
        for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=Lax"):
            assert attribute in cookie
        assert "domain" not in cookie.lower()
        value = cookie.split(";")[0].split("=", 1)[1]
    with gateway.client() as client:
        sent = {"Cookie": f"__Host-gateway_session={value}; app=1"}
        assert client.get("/.gateway/whoami", headers=sent).json()["user"] == "jo"
        seen = client.get("/page", headers=sent).json()
        cookie_seen = dict((k.lower(), v) for k, v in seen["headers"])["cookie"]
        assert cookie_seen == "app=1" and seen["user"] == "jo"
        # The insecure name is not accepted in secure mode.
        assert client.get("/.gateway/whoami", headers={"Cookie": f"gateway_session={value}"}).status_code == 401


def test_hash_is_upgraded_at_sign_in_when_parameters_change(make_gateway: Any) -> None:
    import sqlite3

    gateway = make_gateway(users={"kim": "staff"}, start=False)
    db = gateway.directory / "var" / "gateway.db"

    def stored() -> str:
        with sqlite3.connect(db) as conn:
            return str(conn.execute("SELECT password_hash FROM users WHERE name = 'kim'").fetchone()[0])

    before = stored()
    assert ",t=1," in before
    gateway.config.write_text(gateway.config.read_text().replace("time_cost = 1", "time_cost = 2"))
    gateway.start()
    with gateway.client() as client:
        assert sign_in(client, "kim").status_code == 303
    after = stored()
    assert after != before and ",t=2," in after
    with gateway.client() as client:
        assert sign_in(client, "kim").status_code == 303  # the new hash verifies
