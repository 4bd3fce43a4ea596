"""Sign-in and sign-out, from the attacker's side (in process: see tests/inproc/conftest.py)."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from tests.e2e.harness import PASSWORD, csrf_token
from tests.inproc.conftest import InProcess, MakeApp, sign_in

COOKIE = "gateway_session"


async def _failure(gateway: InProcess, user: str, password: str) -> tuple[int, str]:
    response = await sign_in(gateway.client(), user, password)
    return response.status_code, response.text


async def test_one_generic_failure_for_unknown_wrong_and_disabled(gateway: InProcess) -> None:
    unknown = await _failure(gateway, "nobody-here", PASSWORD)
    wrong = await _failure(gateway, "bob", "not the right password")
    disabled = await _failure(gateway, "dora", PASSWORD)  # disabled in the template store
    assert unknown[0] == wrong[0] == disabled[0] == 401
    messages = {text.count("Wrong user name or password.") for _, text in (unknown, wrong, disabled)}
    assert messages == {1}
    assert "dora" in disabled[1] and "disabled" not in disabled[1].lower()


async def test_success_sets_a_new_session_id_and_hardened_cookie(gateway: InProcess) -> None:
    client = gateway.client()
    first = await sign_in(client, "bob")
    assert first.status_code == 303
    cookie = next(c for c in first.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    old = client.cookies[COOKIE]
    # Signing in again (also over an existing session) issues a new id and kills the old one.
    assert (await sign_in(client, "bob")).status_code == 303
    assert client.cookies[COOKIE] != old
    replay = gateway.client(cookies={COOKIE: old})
    assert (await replay.get("/.gateway/whoami")).status_code == 401


async def test_fixation_a_planted_cookie_is_never_adopted(gateway: InProcess) -> None:
    planted = "attacker-chosen-value"
    response = await sign_in(gateway.client(cookies={COOKIE: planted}), "bob")
    assert response.status_code == 303
    issued = response.cookies[COOKIE]
    assert issued and issued != planted


@pytest.mark.parametrize("next_value", [
    "//evil.example/", "/\\evil.example", "\\\\evil.example", "http://evil.example/", "https:evil.example",
    "javascript:alert(1)", "/\t/evil.example", "/%0d%0aSet-Cookie:x=y", " /x", "evil.example",
    "/.gateway/login", "", "///evil.example",
])
async def test_next_only_ever_redirects_to_a_local_path(gateway: InProcess, next_value: str) -> None:
    response = await sign_in(gateway.client(), "bob", next_path=next_value)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/") and not location.startswith("//") and "\\" not in location
    assert "evil" not in location


@pytest.mark.parametrize("next_value", ["//evil.example/", "/\\evil.example", "https:evil.example",
                                        "javascript:alert(1)", "/\t/evil.example", "\"><script>x</script>"])
async def test_switching_user_never_sends_the_browser_off_site(gateway: InProcess, next_value: str) -> None:
    """The 403 page's "sign in as someone else" goes through /.gateway/logout?next=..."""
    client = await gateway.signed_in("bob")
    form = await client.get("/.gateway/logout", params={"next": next_value})
    assert form.status_code == 200 and "evil" not in form.text and "<script>x" not in form.text
    out = await client.post("/.gateway/logout", data={"csrf_token": csrf_token(form.text), "next": next_value})
    assert out.status_code == 303 and out.headers["location"] == "/.gateway/login?next=%2F"


async def test_next_keeps_a_safe_path_and_query(gateway: InProcess) -> None:
    response = await sign_in(gateway.client(), "bob", next_path="/docs/a%20b?x=1&y=%2F")
    assert response.headers["location"] == "/docs/a%20b?x=1&y=%2F"


async def test_login_without_csrf_token_changes_nothing(gateway: InProcess) -> None:
    client = gateway.client()
    await client.get("/.gateway/login")
    response = await client.post("/.gateway/login", data={"username": "bob", "password": PASSWORD, "next": "/"})
    assert response.status_code == 400
    assert COOKIE not in client.cookies
    bad = await client.post("/.gateway/login", data={"username": "bob", "password": PASSWORD, "csrf_token": "x" * 43})
    assert bad.status_code == 400
    assert COOKIE not in client.cookies


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://127.0.0.1:8080", "http://127.0.0.1:1"])
async def test_cross_site_post_is_refused(gateway: InProcess, origin: str) -> None:
    client = gateway.client()
    form = await client.get("/.gateway/login")
    response = await client.post("/.gateway/login", headers={"Origin": origin}, data={
        "username": "bob", "password": PASSWORD, "csrf_token": csrf_token(form.text), "next": "/"})
    assert response.status_code == 403
    assert COOKIE not in client.cookies


async def test_same_origin_post_is_accepted(gateway: InProcess) -> None:
    client = gateway.client()
    form = await client.get("/.gateway/login")
    response = await client.post("/.gateway/login", headers={"Origin": gateway.url}, data={
        "username": "bob", "password": PASSWORD, "csrf_token": csrf_token(form.text), "next": "/"})
    assert response.status_code == 303


async def test_logout_requires_post_with_token(gateway: InProcess) -> None:
    alice = await gateway.signed_in("alice")
    assert (await alice.post("/.gateway/logout", data={"csrf_token": "forged"})).status_code == 400
    assert (await alice.get("/.gateway/whoami")).status_code == 200  # still signed in
    form = await alice.get("/.gateway/logout")
    assert (await alice.post("/.gateway/logout", data={"csrf_token": csrf_token(form.text)})).status_code == 200
    assert (await alice.get("/.gateway/whoami")).status_code == 401


@pytest.mark.parametrize("cookie", [
    b"garbage", b"a.b.c", b"", b"x" * 5000, b"IjEi.AAAA.AAAA", "\u00e9t\u00e9".encode(),
])
async def test_malformed_cookies_are_anonymous(gateway: InProcess, cookie: bytes) -> None:
    client = gateway.client()
    headers = [(b"Cookie", b"gateway_session=" + cookie), (b"Accept", b"application/json")]
    for path in ("/private", "/.gateway/whoami"):
        response = await client.get(path, headers=headers)
        assert response.status_code in (400, 401), (path, response.status_code)


async def test_forged_cookie_with_valid_shape_is_refused(gateway: InProcess) -> None:
    alice = await gateway.signed_in("alice")
    real = alice.cookies[COOKIE]
    payload, stamp, signature = real.split(".")
    tampered = payload + "." + stamp + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    assert (await gateway.client(cookies={COOKIE: tampered}).get("/private")).status_code == 401
    assert (await alice.get("/private")).status_code == 200  # the real one still works


async def test_whoami(gateway: InProcess) -> None:
    alice = await gateway.signed_in("alice")
    body = (await alice.get("/.gateway/whoami")).json()
    assert body["user"] == "alice" and body["roles"] == ["admin"]
    assert "session" in body and len(body["session"]) < 20
    anonymous = await gateway.client().get("/.gateway/whoami")
    assert anonymous.status_code == 401


@pytest.mark.parametrize("form", [
    {"username": "bob"}, {"password": PASSWORD}, {"username": "", "password": ""},
    {"username": "bob\x00", "password": PASSWORD}, {"username": "b" * 5000, "password": PASSWORD},
])
async def test_malformed_sign_in_forms_get_4xx(gateway: InProcess, form: dict[str, str]) -> None:
    client = gateway.client()
    page = await client.get("/.gateway/login")
    response = await client.post("/.gateway/login", data={**form, "csrf_token": csrf_token(page.text)})
    assert 400 <= response.status_code < 500
    assert COOKIE not in client.cookies


async def test_oversized_form_is_refused(gateway: InProcess) -> None:
    client = gateway.client()
    page = await client.get("/.gateway/login")
    response = await client.post("/.gateway/login", data={
        "username": "bob", "password": "p" * 200_000, "csrf_token": csrf_token(page.text)})
    assert response.status_code == 413


async def test_gateway_pages_send_security_headers(gateway: InProcess) -> None:
    page = await gateway.client().get("/.gateway/login")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_secure_cookie_mode_uses_host_prefix(make_app: MakeApp) -> None:
    gateway = await make_app(settings={"session": {"secure_cookie": True}})
    # Behind the TLS the secure mode is for (the scheme is what Quart-Auth checks).
    client = gateway.client(base_url="https://127.0.0.1:8080")
    form = await client.get("/.gateway/login")
    csrf_cookie = form.headers["set-cookie"]
    assert csrf_cookie.startswith("__Host-gateway_csrf=") and "Secure" in csrf_cookie
    binding = csrf_cookie.split(";")[0].split("=", 1)[1]
    # Over plain http a client keeps Secure cookies to itself, so send them by hand.
    response = await client.post("/.gateway/login", headers={"Cookie": f"__Host-gateway_csrf={binding}"}, data={
        "username": "bob", "password": PASSWORD, "csrf_token": csrf_token(form.text), "next": "/"})
    assert response.status_code == 303
    cookies = response.headers.get_list("set-cookie")
    cookie = next(c for c in cookies if c.startswith("__Host-gateway_session="))
    assert all(c.startswith("__Host-") and "Secure" in c for c in cookies)
    for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=Lax"):
        assert attribute in cookie
    assert "domain" not in cookie.lower()
    value = cookie.split(";")[0].split("=", 1)[1]
    other = gateway.client(base_url="https://127.0.0.1:8080")
    sent = {"Cookie": f"__Host-gateway_session={value}; app=1"}
    assert (await other.get("/.gateway/whoami", headers=sent)).json()["user"] == "bob"
    seen = (await other.get("/page", headers=sent)).json()
    cookie_seen = dict((k.lower(), v) for k, v in seen["headers"])["cookie"]
    assert cookie_seen == "app=1" and seen["user"] == "bob"
    # The insecure name is not accepted in secure mode.
    assert (await other.get("/.gateway/whoami", headers={"Cookie": f"gateway_session={value}"})).status_code == 401


async def test_hash_is_upgraded_at_sign_in_when_parameters_change(make_app: MakeApp) -> None:
    first = await make_app()
    db = first.directory / "var" / "gateway.db"

    def stored() -> str:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return str(conn.execute("SELECT password_hash FROM users WHERE name = 'bob'").fetchone()[0])

    before = stored()
    assert ",t=1," in before
    await first.stop()
    config = first.directory / "gateway.toml"
    config.write_text(config.read_text().replace("time_cost = 1", "time_cost = 2"))
    gateway = await make_app(directory=first.directory)
    assert (await sign_in(gateway.client(), "bob")).status_code == 303
    after = stored()
    assert after != before and ",t=2," in after
    assert (await sign_in(gateway.client(), "bob")).status_code == 303  # the new hash verifies

