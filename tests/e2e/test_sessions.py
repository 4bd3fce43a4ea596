"""Sessions against a running gateway: revocation from the CLI, the audit trail (log and store), and
settings refused at start. Timeouts, fresh sign-in, remember-me, binding, self-service and
throttling are checked in process with a FakeClock: tests/inproc/test_sessions.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.harness import PASSWORD, csrf_token, sign_in, wait_until, within_a_second


def session_of(client: httpx.Client) -> str:
    return client.cookies["gateway_session"]


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


@pytest.mark.parametrize("setting", [{"bind": "sometimes"}, {"remember_lifetime": "forever"}])
def test_session_settings_are_validated(make_gateway: Any, setting: dict[str, str]) -> None:
    gateway = make_gateway(settings={"session": setting}, start=False)
    result = gateway.cli("serve")
    assert result.returncode == 2 and "session." in result.stderr
