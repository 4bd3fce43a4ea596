"""Sign-in against the real process: a CLI change reaching the running gateway, the cookie over a real
socket, raw cookie bytes through Uvicorn. The rest of sign-in and sign-out (CSRF, redirects, forms,
cookies) is checked in process: tests/inproc/test_signin.py."""

from __future__ import annotations

import pytest

from tests.e2e.harness import PASSWORD, Gateway, raw_get, sign_in


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


@pytest.mark.parametrize("cookie", [
    "garbage", "a.b.c", "", "x" * 5000, "IjEi.AAAA.AAAA", "\u00e9t\u00e9",
])
def test_malformed_cookies_are_anonymous(gateway: Gateway, cookie: str) -> None:
    header = b"Cookie: gateway_session=" + cookie.encode("utf-8") + b"\r\nAccept: application/json\r\n"
    status, _, _ = raw_get(gateway.port, b"/private", header)
    assert status in (400, 401)
    status, _, _ = raw_get(gateway.port, b"/.gateway/whoami", header)
    assert status in (400, 401)
