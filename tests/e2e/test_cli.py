"""The gateway command: exit codes, one-line errors, and changes reaching a running gateway."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.harness import PASSWORD, Gateway, sign_in, within_a_second


@pytest.fixture
def fresh(make_gateway: Any) -> Gateway:
    gateway: Gateway = make_gateway(start=False)
    return gateway


def test_user_lifecycle_and_exit_codes(fresh: Gateway) -> None:
    ok = fresh.cli("users", "add", "erin", "--roles", "staff,admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert ok.returncode == 0, ok.stderr
    duplicate = fresh.cli("users", "add", "ERIN", "--password-stdin", stdin=PASSWORD)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    assert len(duplicate.stderr.strip().splitlines()) == 1 and "Traceback" not in duplicate.stderr

    short = fresh.cli("users", "add", "frank", "--password-stdin", stdin="short")
    assert short.returncode == 1 and "too short" in short.stderr
    common = fresh.cli("users", "add", "frank", "--password-stdin", stdin="password1234")
    assert common.returncode == 1 and "too common" in common.stderr

    listing = fresh.cli("users", "list")
    assert listing.returncode == 0 and "erin" in listing.stdout and "admin,staff" in listing.stdout
    assert "argon2" not in listing.stdout

    assert fresh.cli("users", "set-roles", "erin", "ops").returncode == 0
    assert "ops" in fresh.cli("users", "list").stdout
    assert fresh.cli("users", "disable", "erin").returncode == 0
    assert "disabled" in fresh.cli("users", "list").stdout
    assert fresh.cli("users", "enable", "erin").returncode == 0
    assert fresh.cli("users", "set-password", "erin", "--password-stdin", stdin="another fine passphrase").returncode == 0
    assert fresh.cli("users", "delete", "erin").returncode == 0
    for args in (["users", "delete", "erin"], ["users", "disable", "ghost"], ["users", "set-roles", "ghost", "a"]):
        result = fresh.cli(*args)
        assert result.returncode == 1 and "no user named" in result.stderr


@pytest.mark.parametrize("args", [
    ["users", "add", "bad name!", "--password-stdin"],
    ["users", "add", "ok", "--roles", "bad role", "--password-stdin"],
    ["users", "nonsense"],
    ["users", "add"],
    ["users", "add", "someone"],  # no terminal to prompt on, and no --password-stdin
])
def test_bad_usage_exits_2(fresh: Gateway, args: list[str]) -> None:
    result = fresh.cli(*args, stdin=PASSWORD)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr


def test_help_on_every_command(fresh: Gateway) -> None:
    for args in ([], ["serve"], ["users"], ["users", "add"], ["users", "list"], ["users", "set-password"],
                 ["users", "set-roles"], ["users", "disable"], ["users", "enable"], ["users", "delete"]):
        result = fresh.cli(*args, "--help", config=False)
        assert result.returncode == 0 and "Usage:" in result.stdout, args


def test_config_option_before_or_after_and_env(fresh: Gateway) -> None:
    after = fresh.cli("users", "list", "--config", str(fresh.config), config=False)
    assert after.returncode == 0
    env = fresh.cli("users", "list", config=False, env={"GATEWAY_CONFIG": str(fresh.config)})
    assert env.returncode == 0


def test_invalid_config_reports_every_problem_and_exits_2(fresh: Gateway) -> None:
    fresh.config.write_text(fresh.config.read_text() + '\n[bogus]\nx = 1\n[log]\nlevel = "loud"\n')
    result = fresh.cli("serve")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any("bogus.x" in line for line in lines) and any("log.level" in line for line in lines)
    assert all(str(fresh.config) in line for line in lines)


def test_serve_refuses_to_start_without_a_secret(fresh: Gateway) -> None:
    (fresh.directory / "var" / "secret.key").unlink()
    result = fresh.cli("serve")
    assert result.returncode == 2 and "secret" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_an_invalid_policy(fresh: Gateway) -> None:
    (fresh.directory / "policies" / "broken.yaml").write_text("rules:\n  - paths: [\"/x\"]\n    allow: everyone\n")
    result = fresh.cli("serve")
    assert result.returncode == 2
    assert "broken.yaml:3" in result.stderr and "Traceback" not in result.stderr


def test_changes_reach_a_running_gateway(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(users={"gina": "staff", "hal": "staff"})
    with gateway.client() as gina, gateway.client() as hal:
        assert sign_in(gina, "gina").status_code == 303
        assert sign_in(hal, "hal").status_code == 303
        assert gina.get("/admin/x").status_code == 403

        def status(client: httpx.Client, path: str, expected: int) -> Callable[[], bool]:
            return lambda: client.get(path).status_code == expected

        assert gateway.cli("users", "set-roles", "gina", "admin").returncode == 0
        within_a_second(status(gina, "/admin/x", 200), "a role added")  # roles are read live
        assert gateway.cli("users", "set-roles", "gina", "staff").returncode == 0
        within_a_second(status(gina, "/admin/x", 403), "a role removed")

        assert gateway.cli("users", "disable", "gina").returncode == 0
        within_a_second(status(gina, "/page", 401), "disabling")
        assert sign_in(gina, "gina").status_code == 401  # and no new sign-in
        assert gateway.cli("users", "enable", "gina").returncode == 0
        assert sign_in(gina, "gina").status_code == 303

        assert gateway.cli("users", "set-password", "gina", "--password-stdin",
                           stdin="a brand new passphrase").returncode == 0
        within_a_second(status(gina, "/page", 401), "a password change")
        assert sign_in(gina, "gina").status_code == 401
        assert sign_in(gina, "gina", "a brand new passphrase").status_code == 303

        assert gateway.cli("users", "delete", "hal").returncode == 0
        within_a_second(status(hal, "/page", 401), "deleting a user")


def test_readyz_and_healthz(gateway: Gateway) -> None:
    # The tests' client is loopback, on the default [metrics] allow list: it is told the details.
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/.gateway/healthz").json() == {"status": "ok"}
        ready = client.get("/.gateway/readyz")
        assert ready.status_code == 200
        details = ready.json()
        assert details["ready"] is True and details["status"] == "ready" and details["problems"] == []
        assert details["store"] == "ok" and details["policy"]["rules"] > 0


def test_unusable_store_is_one_line_not_a_traceback(fresh: Gateway) -> None:
    # The parent of the store "folder" is a regular file: the store cannot be created.
    result = fresh.cli("serve", env={"GATEWAY_STORE_PATH": str(fresh.config / "gateway.db")})
    assert result.returncode == 2
    assert result.stderr.startswith("gateway: store.path:") and "Traceback" not in result.stderr


@pytest.mark.parametrize(("variable", "url", "expected"), [
    # Nothing listens on port 1: refused at once.
    ("GATEWAY_STORE_USERS", "postgresql://gw:hunter2@127.0.0.1:1/gateway", "gateway: store.users: PostgreSQL at 127.0.0.1:1"),
    ("GATEWAY_STORE_SESSIONS", "redis://:hunter2@127.0.0.1:1/0", "gateway: store.sessions: redis://127.0.0.1:1/0"),
    # The wrong kind of store for the key: a configuration error, before anything connects.
    ("GATEWAY_STORE_USERS", "redis://:hunter2@127.0.0.1:6379/0", "redis:// cannot hold users"),
    ("GATEWAY_STORE_SESSIONS", "mysql://gw:hunter2@db/x", "not a store URL"),
])
def test_a_store_that_cannot_be_used_stops_serve_with_one_line(fresh: Gateway, variable: str, url: str,
                                                               expected: str) -> None:
    result = fresh.cli("serve", env={variable: url})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("gateway: "), result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_operators_list_and_reset_second_factors(fresh: Gateway) -> None:
    import asyncio

    from gateway.store.sqlite import SqliteStore

    assert fresh.cli("users", "add", "erin", "--password-stdin", stdin="a fine long passphrase").returncode == 0

    async def enrol() -> None:
        store = SqliteStore(fresh.directory / "var" / "gateway.db")
        await store.open()
        try:
            user = await store.get_user("erin")
            assert user is not None
            await store.add_factor(user.id, "totp", "work phone", "sealed", 1.0)
            await store.set_recovery_codes(user.id, ["d1", "d2"], 1.0)
            await store.create_session("e" * 64, user.id, 1.0, "", "", mfa="totp")
        finally:
            await store.close()

    asyncio.run(enrol())
    listing = fresh.cli("users", "mfa", "erin")
    assert listing.returncode == 0, listing.stderr
    assert "work phone" in listing.stdout and "totp" in listing.stdout and "never" in listing.stdout
    assert "1 factor(s); 2 recovery code(s) left" in listing.stdout
    assert "sealed" not in listing.stdout
    reset = fresh.cli("users", "mfa-reset", "erin")
    assert reset.returncode == 0, reset.stderr
    assert "removed 1 factor(s)" in reset.stdout and "1 session(s) ended" in reset.stdout
    assert "0 factor(s); 0 recovery code(s) left" in fresh.cli("users", "mfa", "erin").stdout

    async def trail() -> list[str]:
        store = SqliteStore(fresh.directory / "var" / "gateway.db")
        await store.open()
        try:
            return [r.event for r in await store.list_audit(user="erin")]
        finally:
            await store.close()

    assert "mfa.reset" in asyncio.run(trail())
    for args in (["users", "mfa", "ghost"], ["users", "mfa-reset", "ghost"]):
        result = fresh.cli(*args)
        assert result.returncode == 1 and "no user named" in result.stderr
