"""What `gateway init` writes: a config that loads, examples that load once uncommented, a policy."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import pytest

from gateway.cli.scaffold import Writer, first_clash, policy_text, write_files
from gateway.config import SCHEMA, ConfigError, InitOptions, check_options, config_text, load_settings, toml_string
from gateway.policy import Principal, decide, load_policy

EXAMPLE = re.compile(r"^# (\w+) = ")


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gateway.toml").write_text(text)
    (tmp_path / "secret.key").write_text("k" * 64)
    return tmp_path / "gateway.toml"


def test_config_loads_with_the_chosen_values(tmp_path: Path) -> None:
    options = InitOptions(upstream="http://127.0.0.1:9001", host="127.0.0.1", port=9443, secure_cookie=False)
    settings = load_settings(_write(tmp_path, config_text(options)), env={}, require_secret=True)
    assert settings.upstream.url == "http://127.0.0.1:9001"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 9443)
    assert settings.session.secure_cookie is False
    assert settings.store.path == tmp_path / "var" / "gateway.db"
    assert settings.policy.dir == tmp_path / "policies"
    assert settings.server.secret_key == "k" * 64


def test_secure_cookie_is_the_default() -> None:
    assert tomllib.loads(config_text(InitOptions()))["session"]["secure_cookie"] is True


def test_every_setting_is_explained_and_every_example_loads(tmp_path: Path) -> None:
    text = config_text(InitOptions())
    lines = text.splitlines()
    section = ""
    mentioned: set[tuple[str, str]] = set()
    for index, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip("[]")
            continue
        match = EXAMPLE.match(line) or re.match(r"^(\w+) = ", line)
        if not match:
            continue
        mentioned.add((section, match.group(1)))
        if line.startswith("# ") and (section, match.group(1)) not in {("server", "certfile"), ("server", "keyfile")}:
            # Uncommented, the example is a valid setting (the TLS pair needs real files; see below).
            edited = [*lines[:index], line[2:], *lines[index + 1:]]
            load_settings(_write(tmp_path, "\n".join(edited)), env={})
    assert mentioned == set(SCHEMA) - {("server", "secret_key")}, "a setting missing from init's config"


def test_tls_example_lines_need_each_other(tmp_path: Path) -> None:
    text = config_text(InitOptions()).replace('# certfile = "tls/cert.pem"', 'certfile = "tls/cert.pem"')
    with pytest.raises(ConfigError, match=r"server\.keyfile: needed with server\.certfile"):
        load_settings(_write(tmp_path, text), env={})


@pytest.mark.parametrize("text", ['a"b', "a\\b", "tab\there", "nl\nx", "\x7f", "é"])
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


@pytest.mark.parametrize(("options", "fragment"), [
    (InitOptions(upstream="ftp://x"), "--upstream"),
    (InitOptions(upstream="http://127.0.0.1:8081/path"), "--upstream"),
    (InitOptions(port=0), "--port"),
    (InitOptions(port=70000), "--port"),
    (InitOptions(host=" "), "--host"),
])
def test_bad_options(options: InitOptions, fragment: str) -> None:
    problems = check_options(options)
    assert len(problems) == 1 and problems[0].startswith(fragment)


def test_example_policy_decides_as_described(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(policy_text())
    policy = load_policy(tmp_path)
    admin = Principal(user="a", roles=frozenset({"admin"}), auth_time=0.0)
    staff = Principal(user="b", roles=frozenset({"staff"}), auth_time=0.0)
    assert decide(policy, None, "GET", "/static/app.css").allowed
    assert not decide(policy, None, "GET", "/").allowed
    assert decide(policy, staff, "GET", "/").allowed
    assert not decide(policy, staff, "GET", "/admin/users").allowed
    assert decide(policy, admin, "POST", "/admin/users").allowed


def test_writer_makes_the_key_owner_only_and_undoes_exactly_its_own_work(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    target = tmp_path / "new" / "gw"
    old_umask = os.umask(0)  # even the loosest umask must not widen the key
    try:
        writer = Writer()
        write_files(target, InitOptions(), writer)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((target / "secret.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((target / "var").stat().st_mode) == 0o700
    assert first_clash(target) == target / "gateway.toml"
    writer.undo()
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_writer_never_writes_through_an_existing_file_or_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "gateway.toml").symlink_to(victim)
    assert first_clash(tmp_path) == tmp_path / "gateway.toml"
    with pytest.raises(FileExistsError):
        Writer().file(tmp_path / "gateway.toml", "x")
    assert victim.read_text() == "untouched"


def test_any_policy_file_already_there_is_a_clash(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "other.yaml").write_text("rules: []\n")
    assert first_clash(tmp_path) == tmp_path / "policies" / "other.yaml"
    assert first_clash(tmp_path / "elsewhere") is None


def test_inits_options_and_folders_default_to_the_settings_defaults() -> None:
    from gateway.cli.init import init
    from gateway.cli.scaffold import POLICY_FOLDER, STORE_FILE, STORE_FOLDER

    defaults = {param.name: param.default for param in init.params}
    assert defaults["upstream"] == SCHEMA[("upstream", "url")].default
    assert defaults["host"] == SCHEMA[("server", "host")].default
    assert defaults["port"] == SCHEMA[("server", "port")].default
    assert f"{STORE_FOLDER}/{STORE_FILE}" == SCHEMA[("store", "path")].default
    assert SCHEMA[("policy", "dir")].default == POLICY_FOLDER
