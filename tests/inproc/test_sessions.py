"""Sessions to ASVS level 2, in process with a FakeClock: timeouts, fresh sign-in, remember-me,
binding, self-service and throttling, each checked at the exact second its rule says, without sleeping.
(Revocation from the CLI, the audit trail and restarts under Uvicorn stay in tests/e2e/test_sessions.py.)"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.harness import PASSWORD, csrf_token
from tests.inproc.conftest import InProcess, MakeApp, sign_in

HTML = {"Accept": "text/html"}
COOKIE = "gateway_session"


async def test_idle_timeout_ends_a_quiet_session(make_app: MakeApp) -> None:
    gateway = await make_app(settings={"session": {"idle_timeout": "10m", "absolute_timeout": "12h"}})
    ida = await gateway.signed_in("bob")
    for _ in range(8):  # forty minutes, four times the idle limit, but never idle: still signed in
        gateway.clock.advance(5 * 60)
        assert (await ida.get("/page")).status_code == 200
    gateway.clock.advance(10 * 60)  # quiet for exactly the limit: still alive (and this request is activity)
    assert (await ida.get("/.gateway/whoami")).status_code == 200
    gateway.clock.advance(10 * 60 + 1)  # quiet for longer than the limit: ended
    assert (await ida.get("/.gateway/whoami")).status_code == 401
    assert (await ida.get("/page")).status_code == 401  # dead, not merely refused once
    assert re.search(r'"reason": ?"idle timeout"', gateway.log())


async def test_absolute_timeout_ends_even_a_busy_session(make_app: MakeApp) -> None:
    gateway = await make_app(settings={"session": {"idle_timeout": "30m", "absolute_timeout": "2h"}})
    abe = await gateway.signed_in("bob")
    for _ in range(11):  # busy every ten minutes for 1 h 50 m
        gateway.clock.advance(10 * 60)
        assert (await abe.get("/page")).status_code == 200
    gateway.clock.advance(10 * 60)
    assert (await abe.get("/page")).status_code == 200  # exactly two hours old: the limit itself
    gateway.clock.advance(1)
    assert (await abe.get("/page")).status_code == 401
    assert re.search(r'"reason": ?"absolute timeout"', gateway.log())


async def test_fresh_rule_asks_for_the_password_again(make_app: MakeApp) -> None:
    policy = ('rules:\n  - paths: ["/**"]\n    allow: authenticated\n'
              '  - paths: ["/vault/**"]\n    roles: [staff]\n    fresh: 15m\n')
    gateway = await make_app(policy=policy)
    fay = await gateway.signed_in("bob")
    assert (await fay.get("/vault/x")).status_code == 200
    old = fay.cookies[COOKIE]
    gateway.clock.advance(15 * 60)
    assert (await fay.get("/vault/x")).status_code == 200  # exactly 15 minutes old: still fresh
    gateway.clock.advance(1)
    assert (await fay.get("/vault/x", headers=HTML)).status_code == 302
    api = await fay.get("/vault/x")
    assert api.status_code == 401 and api.json()["error"] == "reauthentication_required"
    assert (await fay.get("/page")).status_code == 200  # the session itself is alive

    location = (await fay.get("/vault/x?q=1", headers=HTML)).headers["location"]
    assert "reauth=1" in location
    page = await fay.get(location, headers=HTML)
    assert 'value="bob"' in page.text and "readonly" in page.text  # the name is filled in
    again = await fay.post("/.gateway/login", data={"username": "bob", "password": PASSWORD,
                                                    "csrf_token": csrf_token(page.text), "next": "/vault/x?q=1"})
    assert again.status_code == 303 and again.headers["location"] == "/vault/x?q=1"
    assert fay.cookies[COOKIE] != old  # a new session id again
    assert (await fay.get("/vault/x")).status_code == 200


async def test_remember_me_makes_the_cookie_persist(gateway: InProcess) -> None:
    client = gateway.client()
    plain = await sign_in(client, "bob")
    session_cookie = next(c for c in plain.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    assert "max-age" not in session_cookie.lower() and "expires" not in session_cookie.lower()
    assert (await client.get("/.gateway/whoami")).json()["persistent"] is False
    form = await client.get("/.gateway/login")
    assert 'name="remember"' in form.text and "checked" not in form.text.split('name="remember"')[1].split(">")[0]
    kept = await client.post("/.gateway/login", data={"username": "bob", "password": PASSWORD, "remember": "1",
                                                      "csrf_token": csrf_token(form.text), "next": "/"})
    session_cookie = next(c for c in kept.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    assert re.search(r"max-age=\d+", session_cookie.lower())
    assert (await client.get("/.gateway/whoami")).json()["persistent"] is True


async def test_a_copied_cookie_in_another_browser_is_signed_out(gateway: InProcess) -> None:
    owner = await gateway.signed_in("bob")
    stolen = owner.cookies[COOKIE]
    thief = gateway.client(cookies={COOKIE: stolen}, headers={"User-Agent": "EvilBrowser/1.0"})
    assert (await thief.get("/page")).status_code == 401
    owner_again = gateway.client(cookies={COOKIE: stolen})
    assert (await owner_again.get("/page")).status_code == 401  # the session was ended, not just refused
    assert "binding mismatch" in gateway.log()


async def test_users_see_and_end_their_other_sessions(gateway: InProcess) -> None:
    laptop = await gateway.signed_in("bob")
    phone = await gateway.signed_in("bob", headers={"User-Agent": "Phone/2"})
    page = await laptop.get("/.gateway/sessions", headers=HTML)
    assert page.status_code == 200 and "Phone/2" in page.text and "This browser" in page.text
    phone_id = (await phone.get("/.gateway/whoami")).json()["session"]
    assert phone_id in page.text
    ended = await laptop.post("/.gateway/sessions", data={"csrf_token": csrf_token(page.text), "session": phone_id})
    assert ended.status_code == 200
    assert (await phone.get("/page")).status_code == 401
    assert (await laptop.get("/page")).status_code == 200
    # Someone else's session id cannot be named.
    carol = await gateway.signed_in("carol")
    carols = (await carol.get("/.gateway/whoami")).json()["session"]
    for other in (carols, "0123456789ab"):
        refused = await laptop.post("/.gateway/sessions", data={"csrf_token": csrf_token(page.text), "session": other})
        assert refused.status_code == 400
    assert (await carol.get("/page")).status_code == 200
    assert (await laptop.post("/.gateway/sessions", data={"session": "others"})).status_code == 400  # no CSRF token
    anonymous = gateway.client()
    assert (await anonymous.get("/.gateway/sessions", headers=HTML)).status_code == 302
    assert (await anonymous.get("/.gateway/sessions")).status_code == 401


async def test_users_change_their_own_password(gateway: InProcess) -> None:
    here = await gateway.signed_in("bob")
    there = await gateway.signed_in("bob")
    form = await here.get("/.gateway/account", headers=HTML)
    token = csrf_token(form.text)

    async def change(current: str, new: str, repeat: str | None = None) -> httpx.Response:
        return await here.post("/.gateway/account", data={"csrf_token": token, "current_password": current,
                                                          "new_password": new, "repeat_password": repeat or new})

    assert (await change("not my password", "a fresh new passphrase")).status_code == 401
    assert (await change(PASSWORD, "a fresh new passphrase", "something else entirely")).status_code == 400
    assert (await change(PASSWORD, "password1234")).status_code == 400
    assert (await there.get("/page")).status_code == 200  # nothing changed yet
    before = here.cookies[COOKIE]
    done = await change(PASSWORD, "a fresh new passphrase")
    assert done.status_code == 200 and "Password changed" in done.text
    assert (await there.get("/page")).status_code == 401  # other sessions end
    assert (await here.get("/page")).status_code == 200  # this browser stays signed in...
    assert here.cookies[COOKIE] != before  # ...under a new session id
    assert (await gateway.client(cookies={COOKIE: before}).get("/page")).status_code == 401  # a copy is dead
    later = gateway.client()
    assert (await sign_in(later, "bob")).status_code == 401
    assert (await sign_in(later, "bob", "a fresh new passphrase")).status_code == 303


async def _wrong(client: httpx.AsyncClient, user: str, password: str = "wrong password here") -> httpx.Response:
    return await sign_in(client, user, password)


async def test_rapid_guessing_is_throttled_but_the_owner_gets_in(make_app: MakeApp) -> None:
    gateway = await make_app()
    owner = await gateway.signed_in("bob")  # the owner signed in from this browser before the attack
    owner_cookies = owner.cookies
    attacker = gateway.client()
    # The clock stands still: exactly the 3 free failures are answered, every later guess waits.
    statuses = [(await _wrong(attacker, "bob")).status_code for _ in range(40)]
    assert statuses == [401] * 3 + [429] * 37
    throttled = await _wrong(gateway.client(), "bob", PASSWORD)  # even the right password gets the same answer
    wrong = await _wrong(gateway.client(), "bob")
    assert throttled.status_code == wrong.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1 and "Retry-After" in wrong.headers
    token = re.compile(r'name="csrf_token" value="[^"]*"')
    assert token.sub("", throttled.text) == token.sub("", wrong.text)  # nothing tells them apart
    # Time alone lets a guess through again, one per doubling wait (1, 2, 4, ... s).
    gateway.clock.advance(1)
    assert (await _wrong(attacker, "bob")).status_code == 401
    assert (await _wrong(attacker, "bob")).status_code == 429

    # The owner's browser carries a device cookie: the attack on the account does not lock it out.
    returning = gateway.client(cookies=owner_cookies)
    assert (await sign_in(returning, "bob")).status_code == 303
    refreshed = returning.cookies

    # Device cookies are worth nothing once the password changes.
    changed = await gateway.cli("users", "set-password", "bob", "--password-stdin", stdin="a changed passphrase")
    assert changed.returncode == 0, changed.stderr
    assert (await _wrong(gateway.client(cookies=refreshed), "bob")).status_code == 429  # back under the back-off

    # The throttling state survives a restart: with the count kept, the next guess meets a wait
    # (after a reset the first three would be free).
    await gateway.stop()
    again = await make_app(directory=gateway.directory)
    assert (await _wrong(again.client(), "bob")).status_code == 429


async def test_a_correct_password_after_the_wait_works(gateway: InProcess) -> None:
    client = gateway.client()
    assert [(await _wrong(client, "bob")).status_code for _ in range(3)] == [401] * 3  # the free failures
    throttled = await _wrong(client, "bob")
    assert throttled.status_code == 429
    wait = int(throttled.headers["Retry-After"])
    gateway.clock.advance(wait - 0.5)
    assert (await sign_in(client, "bob")).status_code == 429  # not yet
    gateway.clock.advance(0.5)
    assert (await sign_in(client, "bob")).status_code == 303


async def test_guesses_from_many_addresses_still_meet_the_accounts_back_off(make_app: MakeApp) -> None:
    gateway = await make_app(settings={"server": {"trusted_proxies": ["127.0.0.1/32"]}})
    statuses = []
    for index in range(8):
        client = gateway.client(headers={"X-Forwarded-For": f"10.0.0.{index + 1}"})
        statuses.append((await _wrong(client, "carol")).status_code)
    assert statuses == [401] * 3 + [429] * 5


async def test_a_password_typed_as_the_user_name_is_never_logged(gateway: InProcess) -> None:
    """Failed and throttled sign-ins with an unknown name log a fingerprint of it, never the text."""
    typed = "Tr0ub4dor-and-3-horses"
    client = gateway.client()
    statuses = [(await _wrong(client, typed)).status_code for _ in range(6)]
    assert statuses == [401] * 3 + [429] * 3  # both kinds of line were written
    log = gateway.log()
    assert '"event": "signin.throttled"' in log and '"event": "signin.failure"' in log
    assert typed not in log and typed.lower() not in log
    assert '"attempted": "sha256:' in log


@pytest.mark.parametrize("persistent", [False, True], ids=["browser session", "remembered"])
async def test_whoami_reports_the_sign_in_time_from_the_clock(gateway: InProcess, persistent: bool) -> None:
    client = gateway.client()
    signed_at = gateway.clock()
    response = await sign_in(client, "alice", **({"remember": "1"} if persistent else {}))
    assert response.status_code == 303
    gateway.clock.advance(20 * 60)  # within the default idle limit (30 m)
    body = (await client.get("/.gateway/whoami")).json()
    assert body["persistent"] is persistent
    assert abs(float(body["signed_in_at"]) - signed_at) < 1
