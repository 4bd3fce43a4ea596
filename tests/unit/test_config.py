from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings

KEY = "k" * 40


def write(tmp_path: Path, text: str, key: str | None = KEY) -> Path:
    (tmp_path / "gateway.toml").write_text(text)
    if key is not None:
        (tmp_path / "secret.key").write_text(key)
    return tmp_path / "gateway.toml"


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nsecret_key_file = "secret.key"\n')
    settings = load_settings(path, env={}, require_secret=True)
    assert settings.server.port == 8080 and settings.server.host == "127.0.0.1"
    assert settings.session.secure_cookie is True
    assert settings.session.cookie_name == "__Host-gateway_session"
    assert settings.session.idle_timeout == 1800 and settings.session.absolute_timeout == 12 * 3600
    assert settings.store.path == tmp_path / "var" / "gateway.db"
    assert settings.policy.dir == tmp_path / "policies"
    assert settings.server.secret_key == KEY


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 1\nsecret_key_file = "secret.key"\n')
    env = {"GATEWAY_SERVER_PORT": "9000", "GATEWAY_UPSTREAM_URL": "http://10.0.0.5:5000",
           "GATEWAY_SESSION_SECURE_COOKIE": "false", "GATEWAY_UPSTREAM_CONNECT_TIMEOUT": "2s",
           "GATEWAY_SERVER_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}
    settings = load_settings(path, env=env)
    assert settings.server.port == 9000
    assert settings.upstream.url == "http://10.0.0.5:5000"
    assert settings.session.secure_cookie is False and settings.session.cookie_name == "gateway_session"
    assert settings.upstream.connect_timeout == 2.0
    assert len(settings.server.trusted_proxies) == 2
    assert settings.warnings  # plain-http cookies are warned about


def test_secret_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "", key=None)
    settings = load_settings(path, env={"GATEWAY_SERVER_SECRET_KEY": "e" * 40}, require_secret=True)
    assert settings.server.secret_key == "e" * 40


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, (
        '[server]\nport = "http"\nsecret_key = "inline"\nbogus = 1\n'
        '[upstream]\nurl = "ftp://x"\n[session]\nidle_timeout = "soon"\nsecure_cookie = "maybe"\n'
        '[nonsense]\nx = 1\n'
    ), key=None)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={"GATEWAY_SERVER_PROT": "1"}, require_secret=True)
    text = "\n".join(info.value.problems)
    for fragment in ("server.port", "server.secret_key: not allowed", "server.bogus: unknown",
                     "upstream.url", "session.idle_timeout", "session.secure_cookie", "nonsense.x",
                     "GATEWAY_SERVER_PROT", "secret"):
        assert fragment in text, fragment
    assert all(line.startswith((str(path), "environment:")) for line in info.value.problems)


@pytest.mark.parametrize(("text", "fragment"), [
    ("[server\n", "not valid TOML"),
    ('[upstream]\nurl = "http://x/path"\n', "upstream.url"),
    ('[session]\nidle_timeout = "13h"\n', "longer than session.absolute_timeout"),
    ('[headers]\nuser = "X User"\n', "headers.user"),
    ('[server]\ntrusted_proxies = ["not-an-ip"]\n', "trusted_proxies"),
    ('[server]\nport = 70000\n', "server.port"),
])
def test_bad_values(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert fragment in str(info.value)


def test_missing_and_short_secret(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nsecret_key_file = "secret.key"\n', key="short")
    with pytest.raises(ConfigError, match="too short"):
        load_settings(path, env={}, require_secret=True)
    (tmp_path / "secret.key").unlink()
    with pytest.raises(ConfigError, match="not found"):
        load_settings(path, env={}, require_secret=True)
    assert load_settings(path, env={}).server.secret_key is None  # user commands need no key


def test_config_file_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[server]\nport = 1234\n")
    assert load_settings(None, env={"GATEWAY_CONFIG": str(path)}).server.port == 1234
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, env={}).server.port == 1234
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_upstream_transport_choice(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={}).upstream.transport == "aiohttp"
    assert load_settings(write(tmp_path, ""), env={"GATEWAY_UPSTREAM_TRANSPORT": "httpx"}).upstream.transport == "httpx"
    with pytest.raises(ConfigError, match=r"upstream\.transport"):
        load_settings(write(tmp_path, '[upstream]\ntransport = "curl"\n'), env={})


@pytest.mark.parametrize(("text", "fragment"), [
    ('[server]\ncertfile = "cert.pem"\n', "server.keyfile: needed with server.certfile"),
    ('[server]\nkeyfile = "key.pem"\n', "server.certfile: needed with server.keyfile"),
])
def test_tls_files_come_in_pairs(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert [line for line in info.value.problems if fragment in line]


def test_tls_files_are_checked_only_for_serving(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nsecret_key_file = "secret.key"\ncertfile = "tls/c.pem"\nkeyfile = "tls/k.pem"\n')
    # Commands that never listen (users, policy) still work while the certificate is being sorted out.
    settings = load_settings(path, env={})
    assert settings.server.tls and settings.server.certfile == tmp_path / "tls" / "c.pem"
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={}, require_secret=True)
    assert any("server.certfile: cannot read" in line and "c.pem" in line for line in info.value.problems)
    assert any("server.keyfile: cannot read" in line for line in info.value.problems)
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "c.pem").write_text("not a certificate")
    (tmp_path / "tls" / "k.pem").write_text("not a key")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={}, require_secret=True)
    assert len(info.value.problems) == 1 and "cannot load" in info.value.problems[0]


def test_hsts_setting(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={}).server.hsts is True
    assert load_settings(write(tmp_path, ""), env={"GATEWAY_SERVER_HSTS": "false"}).server.hsts is False
@pytest.mark.parametrize(("value", "size"), [
    ("0", 0), (0, 0), (1048576, 1048576), ('"100"', 100), ('"512k"', 512 * 1024), ('"10m"', 10 * 1024**2),
    ('"10M"', 10 * 1024**2), ('"1g"', 1024**3), ('" 2m "', 2 * 1024**2),
])
def test_max_body_size(tmp_path: Path, value: object, size: int) -> None:
    assert load_settings(write(tmp_path, ""), env={}).server.max_body_size == 0  # default: no limit
    path = write(tmp_path, f"[server]\nmax_body_size = {value}\n")
    assert load_settings(path, env={}).server.max_body_size == size


@pytest.mark.parametrize("value", ['"10 mb"', '"1t"', '"-1"', "-1", '"m"', '""', "true", "1.5", '"1.5m"'])
def test_bad_max_body_size(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.max_body_size"):
        load_settings(write(tmp_path, f"[server]\nmax_body_size = {value}\n"), env={})


def test_max_body_size_from_environment(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), env={"GATEWAY_SERVER_MAX_BODY_SIZE": "3k"})
    assert settings.server.max_body_size == 3072
@pytest.mark.parametrize(("value", "expected"), [
    ('"16MiB"', 16 * 1024 * 1024), ('"512KiB"', 512 * 1024), ('"1GiB"', 1024**3), ("65536", 65536), ('"2048"', 2048),
])
def test_websocket_max_message_sizes(tmp_path: Path, value: str, expected: int) -> None:
    path = write(tmp_path, f"[upstream]\nwebsocket_max_message = {value}\nwebsocket_memory = \"2GiB\"\n")
    assert load_settings(path, env={}).upstream.websocket_max_message == expected


def test_websocket_max_message_default_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_settings(path, env={}).upstream.websocket_max_message == 16 * 1024 * 1024
    env = {"GATEWAY_UPSTREAM_WEBSOCKET_MAX_MESSAGE": "1MiB"}
    assert load_settings(path, env=env).upstream.websocket_max_message == 1024 * 1024
    for bad in ('"16MB"', '"lots"', "10", '"2GiB"', "true"):
        path = write(tmp_path, f"[upstream]\nwebsocket_max_message = {bad}\n")
        with pytest.raises(ConfigError) as info:
            load_settings(path, env={})
        assert "upstream.websocket_max_message" in str(info.value)


def test_websocket_memory_default_values_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_settings(path, env={}).upstream.websocket_memory == 256 * 1024 * 1024
    env = {"GATEWAY_UPSTREAM_WEBSOCKET_MEMORY": "1GiB"}
    assert load_settings(path, env=env).upstream.websocket_memory == 1024**3
    for bad in ('"256MB"', '"lots"', "0", "-1", "true"):
        with pytest.raises(ConfigError) as info:
            load_settings(write(tmp_path, f"[upstream]\nwebsocket_memory = {bad}\n"), env={})
        assert "upstream.websocket_memory" in str(info.value)


@pytest.mark.parametrize(("text", "env", "where"), [
    ('websocket_memory = "20MiB"', {}, "gateway.toml: upstream.websocket_memory"),
    ('websocket_max_message = "200MiB"', {}, "gateway.toml: upstream.websocket_memory"),  # the default budget
    ("", {"GATEWAY_UPSTREAM_WEBSOCKET_MEMORY": "20MiB"}, "environment: GATEWAY_UPSTREAM_WEBSOCKET_MEMORY"),
])
def test_websocket_memory_must_hold_the_largest_message_each_way(tmp_path: Path, text: str, env: dict[str, str],
                                                                 where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, f"[upstream]\n{text}\n"), env=env)
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert where in problem and "less than twice upstream.websocket_max_message" in problem
    # Exactly twice is enough: one message of the largest size each way.
    settings = load_settings(write(tmp_path, '[upstream]\nwebsocket_max_message = "1MiB"\nwebsocket_memory = "2MiB"\n'),
                             env={})
    assert settings.upstream.websocket_memory == 2 * settings.upstream.websocket_max_message
def test_ui_defaults_and_values(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={}).ui.product_name == "Gateway"
    path = write(tmp_path, '[ui]\nproduct_name = "Acme <Reports>"\ntitle = "Staff sign-in"\n'
                           'logo_url = "https://cdn.example.com:8443/logo.svg"\nlogo_text = "AR"\nfooter_text = "Help: x4357"\n')
    ui = load_settings(path, env={"GATEWAY_UI_FOOTER_TEXT": "Call 4357"}).ui
    assert ui.product_name == "Acme <Reports>" and ui.title == "Staff sign-in" and ui.logo_text == "AR"
    assert ui.footer_text == "Call 4357"  # the environment wins
    assert ui.logo_origin == "https://cdn.example.com:8443"
    local = load_settings(write(tmp_path, '[ui]\nlogo_url = "/static/logo.png?v=2"\n'), env={}).ui
    assert local.logo_url == "/static/logo.png?v=2" and local.logo_origin is None


@pytest.mark.parametrize("text", [
    'logo_url = "http://cdn.example.com/logo.png"',   # could be swapped in transit
    'logo_url = "javascript:alert(1)"',
    'logo_url = "data:image/svg+xml,<svg onload=alert(1)>"',
    'logo_url = "//cdn.example.com/logo.png"',        # scheme-relative: another site
    'logo_url = "/\\\\evil.example/logo.png"',           # read by browsers as //evil.example
    'logo_url = "https://user:pw@cdn.example.com/x"',
    'logo_url = "logo.png"',
    'logo_url = "/logo one.png"',
    'product_name = ""',
    'product_name = "two\\nlines"',
    'title = "' + "t" * 101 + '"',
    "footer_text = 3",
])
def test_bad_ui_values_name_the_key(tmp_path: Path, text: str) -> None:
    key = text.split(" =")[0]
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, f"[ui]\n{text}\n"), env={})
    assert len(info.value.problems) == 1 and f"ui.{key}:" in info.value.problems[0], info.value.problems


def test_log_and_metrics_settings(tmp_path: Path) -> None:
    import ipaddress

    defaults = load_settings(write(tmp_path, ""), env={})
    assert (defaults.log.format, defaults.log.access) == ("json", True)
    assert defaults.metrics.allow == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    path = write(tmp_path, '[log]\nformat = "text"\naccess = false\n[metrics]\nallow = ["10.0.0.0/8"]\n')
    settings = load_settings(path, env={"GATEWAY_METRICS_ALLOW": "192.0.2.0/24, 127.0.0.1"})
    assert (settings.log.format, settings.log.access) == ("text", False)
    assert settings.metrics.allow == (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("127.0.0.1/32"))
    bad = write(tmp_path, '[log]\nformat = "xml"\n[metrics]\nallow = ["nowhere"]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(bad, env={})
    assert [p.split(": ")[1] for p in caught.value.problems] == ["log.format", "metrics.allow"]


def test_workers_default_to_one_per_core(tmp_path: Path) -> None:
    import os

    from gateway.config import MAX_AUTO_WORKERS

    cores = max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))
    assert load_settings(write(tmp_path, ""), env={}).server.workers == cores
    assert load_settings(write(tmp_path, '[server]\nworkers = "auto"\n'), env={}).server.workers == cores
    assert load_settings(write(tmp_path, "[server]\nworkers = 3\n"), env={}).server.workers == 3
    assert load_settings(write(tmp_path, ""), env={"GATEWAY_SERVER_WORKERS": "1"}).server.workers == 1
    for bad in ("0", '"many"', "65", "true"):
        with pytest.raises(ConfigError, match=r"server\.workers"):
            load_settings(write(tmp_path, f"[server]\nworkers = {bad}\n"), env={})


def test_strip_headers_default_file_and_environment(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={}).proxy.strip_headers == ()
    path = write(tmp_path, '[proxy]\nstrip_headers = ["X-Custom-User", "X_Acme_*", "X-Custom-User", "x-forwarded-foo"]\n')
    assert load_settings(path, env={}).proxy.strip_headers == ("X-Custom-User", "X_Acme_*", "x-forwarded-foo")
    env = {"GATEWAY_PROXY_STRIP_HEADERS": "X-Employee-Id, X-Corp-*"}
    assert load_settings(path, env=env).proxy.strip_headers == ("X-Employee-Id", "X-Corp-*")


@pytest.mark.parametrize("value", [
    '"X User"', '["X User"]', '["X-User:"]', '[""]', '["*"]', '["X-*-User"]', '["X-User**"]', '[1]', '[["X-A"]]',
    "5", "true", '["Ünïcode"]', '["Content-Length"]', '["transfer_encoding"]', '["Content-*"]', '["T*"]',
])
def test_strip_headers_bad_values(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, f"[proxy]\nstrip_headers = {value}\n"), env={})
    [problem] = info.value.problems
    assert "\n" not in problem and "unknown setting" not in problem
    assert problem.startswith(f"{tmp_path / 'gateway.toml'}: proxy.strip_headers: ")


def test_strip_headers_problems_are_reported_with_the_others(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = "x"\n[proxy]\nstrip_headers = ["X User"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert [line.split(": ")[1] for line in info.value.problems] == ["server.port", "proxy.strip_headers"]
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""), env={"GATEWAY_PROXY_STRIP_HEADERS": "X-Ok, Bad Name"})
    assert info.value.problems == ["environment: GATEWAY_PROXY_STRIP_HEADERS: expected header names "
                                   "(letters, digits, '-', '_'; a trailing '*' for a prefix), got 'Bad Name'"]


# --- each default is declared once, in config/schema.py: everything else must agree with it


def _section_classes() -> dict[str, type]:
    import typing

    from gateway.config import Settings

    hints = typing.get_type_hints(Settings)
    return {name: cls for name, cls in hints.items() if isinstance(cls, type) and hasattr(cls, "__dataclass_fields__")}


# Keys read into something other than a field of the same name, or resolved against the config's folder.
NOT_A_FIELD = {("server", "secret_key_file")}
RESOLVED_PATHS = {("store", "path"), ("store", "users"), ("store", "sessions"), ("policy", "dir")}


def test_every_key_is_a_settings_field_and_every_field_default_is_the_schema_default() -> None:
    import dataclasses

    from gateway.config import SCHEMA

    classes = _section_classes()
    assert {section for section, _ in SCHEMA} == set(classes)
    for section, cls in classes.items():
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        for (key_section, name), key in SCHEMA.items():
            if key_section != section or (section, name) in NOT_A_FIELD:
                continue
            assert name in by_name, f"{section}.{name} has no field in {cls.__name__}"
            field = by_name[name]
            if (section, name) in RESOLVED_PATHS:
                assert field.default is dataclasses.MISSING
                continue
            # A literal default in the dataclass is a second declaration; it must at least agree.
            assert field.default == key.value, f"{cls.__name__}.{name} = {field.default!r}, schema says {key.value!r}"


def test_an_empty_config_gives_exactly_the_dataclass_defaults(tmp_path: Path) -> None:
    from gateway.config import ServerSettings

    settings = load_settings(write(tmp_path, ""), env={})
    for section, cls in _section_classes().items():
        if section in {"store", "policy"}:
            continue
        assert getattr(settings, section) == cls(), section
    assert settings.server == ServerSettings()
    assert not settings.policy.case_insensitive and not settings.policy.allow_path_params


def test_inits_template_shows_the_schema_defaults() -> None:
    import re
    import tomllib

    from gateway.config import SCHEMA, InitOptions, config_text

    section = ""
    shown: dict[tuple[str, str], object] = {}
    for line in config_text(InitOptions()).splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif match := re.match(r"^(?:# )?(\w+) = ", line):
            shown[(section, match.group(1))] = tomllib.loads(line.removeprefix("# "))[match.group(1)]
    for name, key in SCHEMA.items():
        expected = key.default if key.default is not None else key.example
        if name == ("server", "secret_key_file"):
            continue  # init writes the key file it creates
        assert shown[name] == expected, name


def _readme_rows() -> list[tuple[str, str]]:
    """(section.key, default cell) for each key in the README's table of settings."""
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = []
    for line in readme.splitlines():
        match = re.match(r"^\| (`\w+\.\w+`[^|]*)\| ([^|]*) \|", line)
        if not match:
            continue
        names = re.findall(r"`([\w.]+)`", match.group(1))
        defaults = [cell.strip() for cell in match.group(2).split(" / ")] if " / " in match.group(2) else None
        section = names[0].split(".")[0]
        for index, name in enumerate(names):
            full = name if "." in name else f"{section}.{name}"
            rows.append((full, defaults[index] if defaults else match.group(2).strip()))
    return rows


def test_the_readme_documents_every_key_at_its_schema_default() -> None:
    from gateway.config import SCHEMA, toml_string
    from gateway.config.template import toml_value

    documented = _readme_rows()
    assert documented, "the README's table of settings was not found"
    for full, cell in documented:
        section, name = full.split(".")
        key = SCHEMA[(section, name)]
        if key.default is None:
            assert cell == "—" or cell.startswith("= "), f"README: {full} shows {cell}, the schema has no default"
            continue
        value = key.default if isinstance(key.default, str) else toml_value(key.default)
        assert cell.strip("`") == value, f"README: {full} default {cell}, schema: {toml_string(str(value))}"
    assert {tuple(full.split(".")) for full, _ in documented} == set(SCHEMA), "a key missing from the README"
