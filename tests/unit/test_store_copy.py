"""`gateway store copy`: users and the audit trail move between user stores, exactly; a non-empty
target is refused untouched; bad URLs are one line, exit 2, without the password. PostgreSQL as the
target and back runs against the suite's throwaway server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.store import AuditRecord, User, open_user_store
from gateway.store.stores import sqlite_url
from tests.servers import PostgresServer

USERS = [
    User(7, "alice", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", ("admin", "staff"), False, 1000.5, 0.0),
    User(9, "bob", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdDI$aGFzaDI", (), True, 1001.0, 2000.25),
]
AUDIT = [AuditRecord(1000.0 + i, "user.added" if i % 2 else "signin.success", "alice" if i % 3 else None,
                     "10.0.0.1" if i % 5 else None, f'{{"n": {i}}}') for i in range(2345)]  # > 2 pages


async def _fill(url: str) -> None:
    store = open_user_store(url)
    await store.open()
    try:
        await store.import_users(USERS)
        await store.add_audit(AUDIT)
    finally:
        await store.close()


async def _read(url: str) -> tuple[list[User], list[AuditRecord]]:
    store = open_user_store(url)
    await store.open()
    try:
        return await store.list_users(), await store.export_audit(offset=0, limit=10_000)
    finally:
        await store.close()


async def _add(url: str) -> User:
    store = open_user_store(url)
    await store.open()
    try:
        return await store.add_user("carol", "h", ("x",), 3000.0)
    finally:
        await store.close()


def _copy(source: str, target: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["store", "copy", "--from", source, "--to", target])
    return result.exit_code, result.stdout, result.stderr


def _check_copy(source: str, target: str) -> None:
    asyncio.run(_fill(source))
    code, out, err = _copy(source, target)
    assert (code, err) == (0, ""), err
    assert out.startswith("copied 2 users and 2345 audit records from ")
    users, trail = asyncio.run(_read(target))
    assert users == USERS
    assert trail[:-1] == AUDIT and trail[-1].event == "store.copied"
    assert asyncio.run(_add(target)).id > 9  # new ids continue after the copied ones
    # Again into the now non-empty target: refused, and nothing changed.
    code, out, err = _copy(source, target)
    assert code == 1 and "already holds users or audit records" in err and out == ""
    users, trail = asyncio.run(_read(target))
    assert len(users) == 3 and len(trail) == len(AUDIT) + 1  # carol, added above, and nothing more


def test_sqlite_to_sqlite(tmp_path: Path) -> None:
    _check_copy(sqlite_url(tmp_path / "one.db"), sqlite_url(tmp_path / "two.db"))


def test_sqlite_to_postgresql_and_back(tmp_path: Path, postgres_server: PostgresServer) -> None:
    target = postgres_server.create_database()
    _check_copy(sqlite_url(tmp_path / "one.db"), target)
    back = sqlite_url(tmp_path / "back.db")
    code, _, err = _copy(target, back)
    assert code == 0, err
    users, trail = asyncio.run(_read(back))
    assert [u.name for u in users] == ["alice", "bob", "carol"] and users[:2] == USERS
    assert trail[:len(AUDIT)] == AUDIT and [r.event for r in trail[len(AUDIT):]] == ["store.copied"] * 2


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "sqlite:///nowhere.db", "--to", "sqlite:///x.db"], "nowhere.db: no such file"),
    (["--from", "redis://h/0", "--to", "sqlite:///x.db"], "--from: redis:// cannot hold users"),
    (["--from", "sqlite:///a.db", "--to", "mysql://u:hunter2@h/d"], "--to: mysql://***@h/d: not a store URL"),
    (["--from", "sqlite:///a.db", "--to", "sqlite:///a.db"], "--from and --to are the same store"),
])
def test_bad_urls_are_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                          message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.db").write_bytes(b"")
    result = CliRunner().invoke(main, ["store", "copy", *args])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    if "no such file" in message:  # a relative path is shown as the absolute one it means
        assert f"--from: {tmp_path}/nowhere.db" in result.stderr
    assert result.stderr.count("\n") == 1 and "hunter2" not in result.stderr


def test_an_unreachable_target_is_one_line(tmp_path: Path) -> None:
    source = sqlite_url(tmp_path / "one.db")
    asyncio.run(_fill(source))
    code, _, err = _copy(source, "postgresql://gw:hunter2@127.0.0.1:1/gateway")
    assert code == 1 and err.count("\n") == 1 and "hunter2" not in err and "127.0.0.1:1" in err, err
