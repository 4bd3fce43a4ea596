"""Sessions to ASVS level 2, against a running gateway: timeouts, fresh sign-in, revocation,
remember-me, binding, self-service, throttling, and the audit trail."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import httpx
import pytest

from tests.e2e.harness import PASSWORD, Gateway, csrf_token, sign_in, wait_until, within_a_second

HTML = {"Accept": "text/html"}


def session_of(client: httpx.Client) -> str:
    return client.cookies["gateway_session"]


def test_idle_timeout_ends_a_quiet_session(make_gateway: Any) -> None:
    gateway = make_gateway(settings={"session": {"idle_timeout": "2s", "absolute_timeout": "1h"}}, users={"ida": "staff"})
    with gateway.client() as ida:
        assert sign_in(ida, "ida").status_code == 303
        active_until = time.monotonic() + 4  # twice the idle limit, but never idle: still signed in
        while time.monotonic() < active_until:
            assert ida.get("/page").status_code == 200
            time.sleep(0.4)  # the pace of a user clicking, not synchronisation
        time.sleep(2.6)  # quiet for longer than the idle limit: the behaviour under test (polling would be activity)
        assert ida.get("/.gateway/whoami").status_code == 401
    assert '"reason": "idle timeout"' in gateway.log() or '"reason":"idle timeout"' in gateway.log()


def test_absolute_timeout_ends_even_a_busy_session(make_gateway: Any) -> None:
    gateway = make_gateway(settings={"session": {"idle_timeout": "3s", "absolute_timeout": "3s"}}, users={"abe": "staff"})
    with gateway.client() as abe:
        started = time.monotonic()
        assert sign_in(abe, "abe").status_code == 303
        wait_until(lambda: abe.get("/page").status_code == 401, "absolute expiry", timeout=8)
        assert time.monotonic() - started >= 3  # it lived (busy) for its 3 s, then ended


def test_fresh_rule_asks_for_the_password_again(make_gateway: Any) -> None:
    policy = ('rules:\n  - paths: ["/**"]\n    allow: authenticated\n'
              '  - paths: ["/vault/**"]\n    roles: [staff]\n    fresh: 2s\n')
    gateway = make_gateway(policy=policy, users={"fay": "staff"})
    with gateway.client() as fay:
        assert sign_in(fay, "fay").status_code == 303
        assert fay.get("/vault/x").status_code == 200
        old = session_of(fay)
        wait_until(lambda: fay.get("/vault/x", headers=HTML).status_code == 302, "sign-in ageing", timeout=6)
        api = fay.get("/vault/x")
        assert api.status_code == 401 and api.json()["error"] == "reauthentication_required"
        assert fay.get("/page").status_code == 200  # the session itself is alive

        location = fay.get("/vault/x?q=1", headers=HTML).headers["location"]
        assert "reauth=1" in location
        page = fay.get(location, headers=HTML)
        assert 'value="fay"' in page.text and "readonly" in page.text  # the name is filled in
        again = fay.post("/.gateway/login", data={"username": "fay", "password": PASSWORD,
                                                  "csrf_token": csrf_token(page.text), "next": "/vault/x?q=1"})
        assert again.status_code == 303 and again.headers["location"] == "/vault/x?q=1"
        assert session_of(fay) != old  # a new session id again
        assert fay.get("/vault/x").status_code == 200


def test_remember_me_makes_the_cookie_persist(gateway: Gateway) -> None:
    with gateway.client() as client:
        plain = sign_in(client, "bob")
        session_cookie = next(c for c in plain.headers.get_list("set-cookie") if c.startswith("gateway_session="))
        assert "max-age" not in session_cookie.lower() and "expires" not in session_cookie.lower()
        form = client.get("/.gateway/login")
        assert 'name="remember"' in form.text and "checked" not in form.text.split('name="remember"')[1].split(">")[0]
        kept = client.post("/.gateway/login", data={"username": "bob", "password": PASSWORD, "remember": "1",
                                                    "csrf_token": csrf_token(form.text), "next": "/"})
        session_cookie = next(c for c in kept.headers.get_list("set-cookie") if c.startswith("gateway_session="))
        assert re.search(r"max-age=\d+", session_cookie.lower())
        assert client.get("/.gateway/whoami").json()["persistent"] is True


def test_a_copied_cookie_in_another_browser_is_signed_out(gateway: Gateway) -> None:
    with gateway.client() as owner:
        assert sign_in(owner, "bob").status_code == 303
        stolen = session_of(owner)
    with gateway.client(cookies={"gateway_session": stolen}, headers={"User-Agent": "EvilBrowser/1.0"}) as thief:
        assert thief.get("/page").status_code == 401
    with gateway.client(cookies={"gateway_session": stolen}) as owner_again:
        assert owner_again.get("/page").status_code == 401  # the session was ended, not just refused
    assert "binding mismatch" in gateway.log()


def test_users_see_and_end_their_other_sessions(make_gateway: Any) -> None:
    gateway = make_gateway(users={"sue": "staff"})
    with gateway.client() as laptop, gateway.client(headers={"User-Agent": "Phone/2"}) as phone:
        assert sign_in(laptop, "sue").status_code == 303
        assert sign_in(phone, "sue").status_code == 303
        page = laptop.get("/.gateway/sessions", headers=HTML)
        assert page.status_code == 200 and "Phone/2" in page.text and "This browser" in page.text
        phone_id = phone.get("/.gateway/whoami").json()["session"]
        assert phone_id in page.text
        ended = laptop.post("/.gateway/sessions", data={"csrf_token": csrf_token(page.text), "session": phone_id})
        assert ended.status_code == 200
        assert phone.get("/page").status_code == 401
        assert laptop.get("/page").status_code == 200
        # Someone else's session id cannot be named.
        assert laptop.post("/.gateway/sessions", data={"csrf_token": csrf_token(page.text),
                                                       "session": "0123456789ab"}).status_code == 400
        assert laptop.post("/.gateway/sessions", data={"session": "others"}).status_code == 400  # no CSRF token
    with gateway.client() as anonymous:
        assert anonymous.get("/.gateway/sessions", headers=HTML).status_code == 302
        assert anonymous.get("/.gateway/sessions").status_code == 401


def test_users_change_their_own_password(make_gateway: Any) -> None:
    gateway = make_gateway(users={"pat": "staff"})
    with gateway.client() as here, gateway.client() as there:
        assert sign_in(here, "pat").status_code == 303
        assert sign_in(there, "pat").status_code == 303
        form = here.get("/.gateway/account", headers=HTML)
        token = csrf_token(form.text)

        def change(current: str, new: str, repeat: str | None = None) -> httpx.Response:
            return here.post("/.gateway/account", data={"csrf_token": token, "current_password": current,
                                                        "new_password": new, "repeat_password": repeat or new})

        assert change("not my password", "a fresh new passphrase").status_code == 401
        assert change(PASSWORD, "a fresh new passphrase", "something else entirely").status_code == 400
        assert change(PASSWORD, "password1234").status_code == 400
        assert there.get("/page").status_code == 200  # nothing changed yet
        before = session_of(here)
        done = change(PASSWORD, "a fresh new passphrase")
        assert done.status_code == 200 and "Password changed" in done.text
        assert there.get("/page").status_code == 401  # other sessions end
        assert here.get("/page").status_code == 200  # this browser stays signed in...
        assert session_of(here) != before  # ...under a new session id
    with gateway.client(cookies={"gateway_session": before}) as copy:
        assert copy.get("/page").status_code == 401  # a copy of the old cookie is dead
    with gateway.client() as later:
        assert sign_in(later, "pat").status_code == 401
        assert sign_in(later, "pat", "a fresh new passphrase").status_code == 303


def test_sessions_cli_lists_and_revokes(make_gateway: Any) -> None:
    gateway = make_gateway(users={"ann": "staff", "ben": "staff"})
    with gateway.client() as ann1, gateway.client() as ann2, gateway.client() as ben:
        for client, name in ((ann1, "ann"), (ann2, "ann"), (ben, "ben")):
            assert sign_in(client, name).status_code == 303
        listing = gateway.cli("sessions", "list")
        assert listing.returncode == 0 and listing.stdout.count("ann ") == 2 and "ben" in listing.stdout
        assert "python-httpx" in listing.stdout and "127.0.0.1" in listing.stdout
        only_ann = gateway.cli("sessions", "list", "--user", "ann").stdout
        assert "ben" not in only_ann

        one = ann1.get("/.gateway/whoami").json()["session"]
        revoked = gateway.cli("sessions", "revoke", one)
        assert revoked.returncode == 0
        line = json.loads(revoked.stderr.strip().splitlines()[-1])  # the audit line, as the gateway writes them
        assert line["event"] == "session.revoked" and line["user"] == "ann" and line["by"] == "cli"
        within_a_second(lambda: ann1.get("/page").status_code == 401, "a revoked session")
        assert ann2.get("/page").status_code == 200
        assert gateway.cli("sessions", "revoke", "--user", "ann").returncode == 0
        within_a_second(lambda: ann2.get("/page").status_code == 401, "a user's sessions revoked")
        assert ben.get("/page").status_code == 200
        # A terminal escape in a header never gets as far as a session row or the upstream.
        assert ben.get("/page", headers={"User-Agent": "Moz\x1b]0;PWNED\x07"}).status_code == 400
        assert gateway.cli("sessions", "revoke", "--all").returncode == 0
        within_a_second(lambda: ben.get("/page").status_code == 401, "every session revoked")

        assert gateway.cli("sessions", "revoke", "abcdef0123").returncode == 1
        assert gateway.cli("sessions", "revoke").returncode == 2
        assert gateway.cli("sessions", "revoke", "--all", "--user", "ann").returncode == 2


def _wrong(client: httpx.Client, user: str, password: str = "wrong password here") -> httpx.Response:
    form = client.get("/.gateway/login")
    return client.post("/.gateway/login", data={"username": user, "password": password,
                                                "csrf_token": csrf_token(form.text), "next": "/"})


def test_rapid_guessing_is_throttled_but_the_owner_gets_in(make_gateway: Any) -> None:
    gateway = make_gateway(users={"tom": "staff"})
    with gateway.client() as owner:  # the owner signed in from this browser before the attack
        assert sign_in(owner, "tom").status_code == 303
    owner_cookies = owner.cookies
    with gateway.client() as attacker:
        started = time.monotonic()
        statuses = [_wrong(attacker, "tom").status_code for _ in range(120)]
        elapsed = time.monotonic() - started
    # 3 free failures, then waits of 1, 2, 4, ... s: in `elapsed` seconds at most this many more.
    allowed = 3 + int(math.log2(elapsed + 1)) + 1
    assert statuses.count(401) <= allowed, (statuses[:20], elapsed)
    assert statuses.count(429) == 120 - statuses.count(401)
    with gateway.client() as attacker:
        throttled = _wrong(attacker, "tom", PASSWORD)  # even the right password gets the same answer now
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
        wrong = _wrong(attacker, "tom")
        assert wrong.status_code == 429 and wrong.text.replace("wrong", "") and "Retry-After" in wrong.headers

    # The owner's browser carries a device cookie: the attack on the account does not lock it out.
    with gateway.client(cookies=owner_cookies) as owner:
        assert sign_in(owner, "tom").status_code == 303
        refreshed = owner.cookies

    # Device cookies are worth nothing once the password changes.
    assert gateway.cli("users", "set-password", "tom", "--password-stdin", stdin="a changed passphrase").returncode == 0
    with gateway.client(cookies=refreshed) as old_device:
        assert _wrong(old_device, "tom").status_code == 429  # back under the account's back-off

    # The throttling state survives a restart: with the count kept, two quick guesses already meet a
    # wait (after a reset the first three would be free).
    gateway.stop()
    gateway.start()
    with gateway.client() as attacker:
        assert 429 in (_wrong(attacker, "tom").status_code, _wrong(attacker, "tom").status_code)


def test_a_correct_password_after_the_wait_works(make_gateway: Any) -> None:
    gateway = make_gateway(users={"una": "staff"})
    with gateway.client() as client:
        statuses = [_wrong(client, "una").status_code for _ in range(3)]
        assert statuses == [401, 401, 401]  # the free failures
        for _ in range(10):  # then a wait (a slow machine may pass a short one between two attempts)
            throttled = _wrong(client, "una")
            if throttled.status_code == 429:
                break
        assert throttled.status_code == 429
        wait = int(throttled.headers["Retry-After"])
        time.sleep(wait + 0.2)  # the wait the gateway announced is the behaviour under test
        assert sign_in(client, "una").status_code == 303


def test_audit_trail_and_no_secrets_in_logs(make_gateway: Any) -> None:
    gateway = make_gateway(users={"val": "staff"})
    cookies: list[str] = []
    with gateway.client() as val:
        assert sign_in(val, "val").status_code == 303
        cookies.append(session_of(val))
        assert val.get("/internal-nothing").status_code == 200
        assert _wrong(val, "val").status_code == 401
        assert _wrong(val, "nobody").status_code == 401
        logout = val.get("/.gateway/logout")
        assert val.post("/.gateway/logout", data={"csrf_token": csrf_token(logout.text)}).status_code == 200
    gateway.cli("users", "set-roles", "val", "staff,ops")
    policies = gateway.directory / "policies"
    (policies / "x.yaml").write_text('rules:\n  - paths: ["/x"]\n    deny: true\n')
    wait_until(lambda: "policy.reloaded" in gateway.log(), "policy reload audited", timeout=3)
    with gateway.client() as val:
        assert sign_in(val, "val").status_code == 303
        assert val.get("/x").status_code == 403

    def events() -> list[dict[str, Any]]:
        result = gateway.cli("audit", "--json", "--since", "1h")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    wait_until(lambda: any(e["event"] == "access.denied" for e in events()), "audit rows stored", timeout=3)
    seen = events()
    kinds = {e["event"] for e in seen}
    for kind in ("signin.success", "signin.failure", "signout", "access.denied", "policy.reloaded",
                 "user.added", "user.roles_changed"):
        assert kind in kinds, kind
    failure = next(e for e in seen if e["event"] == "signin.failure" and e.get("user") == "val")
    assert failure["reason"] == "wrong password" and failure["client"] == "127.0.0.1"
    denied = next(e for e in seen if e["event"] == "access.denied")
    assert denied["path"] == "/x" and denied["rule"].endswith("x.yaml:2")
    assert all(e.get("user") == "val" for e in json.loads("[" + ",".join(
        gateway.cli("audit", "--json", "--user", "val").stdout.splitlines()) + "]"))
    text = gateway.cli("audit", "--user", "val").stdout
    assert "signin.success" in text

    log = gateway.log()
    assert '"event": "signin.success"' in log  # one JSON line per event in the log too
    for secret in (PASSWORD, "wrong password here", *cookies):
        assert secret not in log
    session_ids = [c.split(".")[0] for c in cookies]
    for value in session_ids:
        assert value not in log


def test_a_password_typed_as_the_user_name_is_never_logged(make_gateway: Any) -> None:
    """Failed and throttled sign-ins with an unknown name log a fingerprint of it, never the text."""
    gateway = make_gateway()
    typed = "Tr0ub4dor-and-3-horses"
    with gateway.client() as client:
        statuses = [_wrong(client, typed).status_code for _ in range(6)]
    assert 401 in statuses and 429 in statuses  # both lines were written
    wait_until(lambda: '"event": "signin.throttled"' in gateway.log(), "the throttled sign-in logged", timeout=3)
    log = gateway.log()
    assert typed not in log and typed.lower() not in log
    assert '"attempted": "sha256:' in log


@pytest.mark.parametrize("setting", [{"bind": "sometimes"}, {"remember_lifetime": "forever"}])
def test_session_settings_are_validated(make_gateway: Any, setting: dict[str, str]) -> None:
    gateway = make_gateway(settings={"session": setting}, start=False)
    result = gateway.cli("serve")
    assert result.returncode == 2 and "session." in result.stderr
