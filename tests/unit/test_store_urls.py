"""[store] users and sessions: URLs, defaulting to store.path; each side takes its own schemes, checked
without connecting, and no error shows a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings


def test_an_old_config_keeps_one_file_for_everything(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, 'path = "data/g.db"'), env={})
    assert settings.store.users == settings.store.sessions == f"sqlite:///{tmp_path}/data/g.db"


def test_urls_are_relative_to_the_config_folder_or_absolute(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, 'users = "sqlite:///var/users.db"\nsessions = "sqlite:////srv/s.db"'),
                             env={})
    assert settings.store.users == f"sqlite:///{tmp_path}/var/users.db"
    assert settings.store.sessions == "sqlite:////srv/s.db"
    settings = load_settings(_write(tmp_path, 'sessions = "sqlite:///s.db"'), env={})
    assert settings.store.users == f"sqlite:///{tmp_path}/var/gateway.db"  # the other one: store.path


@pytest.mark.parametrize(("key", "url", "message"), [
    ("users", "redis://127.0.0.1:6379/0", "store.users: redis:// cannot hold users: expected sqlite:///PATH or postgresql://"),
    ("sessions", "postgresql://gw@db/gateway", "store.sessions: postgresql:// cannot hold sessions"),
    ("users", "mysql://db/x", "store.users: mysql://db/x: not a store URL"),
    ("users", "mysql://gw:secret@db/x", "store.users: mysql://***@db/x: not a store URL"),
    ("sessions", "sqlite:///", "store.sessions: 'sqlite:///': expected sqlite:///PATH"),
    ("users", "postgresql://gw:secret@/gateway", "store.users: postgresql://gw:***@/gateway: no host"),
    ("users", "postgresql://gw:secret@db:99999/gateway", "store.users: postgresql://gw:***@db:99999/gateway: Port out of range"),
    # What the careless write: an @ or / in the password, a password in the query. Never shown.
    ("users", "postgresql://gw:S3c:r@t/W#x%40y@127.0.0.1:5499/gw", "percent-encode them (%40 %2F %3F %23)"),
    ("users", "postgresql://gw:Ab@secret@127.0.0.1:5499/gw", "store.users: postgresql://gw:***@127.0.0.1:5499/gw: the user"),
    ("users", "postgresql://gw:ab/secret@db/gw", "postgresql://gw:***@db/gw: the user name or password holds"),
    ("sessions", "redis://127.0.0.1:6391/2?password=secret", "put the password in the user info"),
    ("users", "postgresql://gw@/gw?host=/tmp&password=secret", "postgresql://***@/gw?host=***&password=***: no host"),
    ("users", "postgresql://gw@db/gw?options=secret", "unknown option 'options' (only application_name"),
    ("sessions", "redis://secret@cache/99", "redis://***@cache/99: the Redis database must be"),
    ("users", "postgresql://gw:secret@db", "no database name"),
    ("sessions", "redis://:secret@cache/99", "the Redis database must be a number from 0 to 15"),
    ("sessions", "redis://cache/0?ssl=1", "unknown option 'ssl' (only prefix)"),
    ("sessions", "ftp://cache", "not a store URL: expected sqlite:///PATH or redis://"),
])
def test_bad_urls_are_one_line_config_errors(tmp_path: Path, key: str, url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, f'{key} = "{url}"'), env={})
    assert len(caught.value.problems) == 1 and message in caught.value.problems[0]
    assert "\n" not in caught.value.problems[0] and "secret" not in caught.value.problems[0]
    with pytest.raises(ConfigError):  # the environment is checked the same way
        load_settings(_write(tmp_path, ""), env={f"GATEWAY_STORE_{key.upper()}": url})


@pytest.mark.parametrize(("key", "url"), [
    ("users", "postgresql://gw:secret@db.internal:5433/gateway"),
    ("users", "postgres://db/gateway"),
    ("sessions", "redis://:secret@cache.internal:6380/2?prefix=app1:"),
    ("sessions", "rediss://cache"),
])
def test_server_urls_are_kept_as_written(tmp_path: Path, key: str, url: str) -> None:
    settings = load_settings(_write(tmp_path, f'{key} = "{url}"'), env={})
    assert getattr(settings.store, key) == url


def _write(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[store]\n{store}\n")
    return path
