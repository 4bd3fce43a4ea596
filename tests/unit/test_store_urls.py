"""[store] users and sessions: URLs, defaulting to store.path; schemes of a later release refused."""

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
    ("users", "postgresql://gw@db/gateway", "store.users: postgresql:// stores are not available yet"),
    ("sessions", "redis://127.0.0.1:6379/0", "store.sessions: redis:// stores are not available yet"),
    ("users", "mysql://db/x", "store.users: 'mysql://db/x': not a store URL"),
    ("sessions", "sqlite:///", "store.sessions: 'sqlite:///': expected sqlite:///PATH"),
])
def test_bad_urls_are_one_line_config_errors(tmp_path: Path, key: str, url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, f'{key} = "{url}"'), env={})
    assert len(caught.value.problems) == 1 and message in caught.value.problems[0]
    assert "\n" not in caught.value.problems[0]
    with pytest.raises(ConfigError):  # the environment is checked the same way
        load_settings(_write(tmp_path, ""), env={f"GATEWAY_STORE_{key.upper()}": url})


def _write(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[store]\n{store}\n")
    return path
