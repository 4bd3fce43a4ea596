"""`gateway init`: a folder that serves at once, a key only its owner reads, and no overwriting ever."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import PASSWORD, PYTHON, Gateway, Upstream, free_port, sign_in

# Cheap argon2 for the hash init makes (the same code path); serve reads the parameters from the hash.
FAST = {"GATEWAY_PASSWORDS_TIME_COST": "1", "GATEWAY_PASSWORDS_MEMORY_COST": "8192",
        "GATEWAY_PASSWORDS_PARALLELISM": "1"}


def init(cwd: Path, *args: str, stdin: str | None = PASSWORD + "\n",
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "gateway", "init", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={**os.environ, **FAST, **(env or {})})


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_init_then_serve_and_sign_in_as_the_admin(upstream: Upstream, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    result = init(tmp_path, "site", "--upstream", upstream.url, "--port", str(port), "--admin", "root-admin",
                  "--password-stdin")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "site"
    assert "gateway --config site/gateway.toml serve" in result.stdout
    assert f"http://127.0.0.1:{port}/" in result.stdout
    # The policy check ran on what was written, with the new user's roles known.
    assert "policy check:" in result.stdout and "rule(s) in 1 file(s): ok" in result.stderr
    assert "roles not checked" not in result.stderr and "warning" not in result.stdout
    assert stat.S_IMODE((folder / "secret.key").stat().st_mode) == 0o600
    assert len((folder / "secret.key").read_text().strip()) >= 32
    assert "secure_cookie = true" in (folder / "gateway.toml").read_text()
    assert PASSWORD not in result.stdout + result.stderr

    # A plain-http test client cannot send a Secure cookie back: the documented override turns it off.
    monkeypatch.setenv("GATEWAY_SESSION_SECURE_COOKIE", "false")
    gateway = Gateway(folder, port)
    try:
        gateway.start()
        with gateway.client() as client:
            assert client.get("/", headers={"Accept": "text/html"}).status_code == 302
            signed_in = sign_in(client, "root-admin")
            assert signed_in.status_code == 303, signed_in.text
            assert client.get("/.gateway/whoami").json()["roles"] == ["admin"]
            admin_page = client.get("/admin/")
            assert admin_page.status_code == 200 and admin_page.json()["user"] == "root-admin"
        with gateway.client() as anonymous:
            assert anonymous.get("/static/app.css").status_code == 200  # the example policy: static for anyone
    finally:
        gateway.stop()


def test_a_second_init_refuses_and_changes_nothing(tmp_path: Path) -> None:
    assert init(tmp_path, "gw", "--password-stdin").returncode == 0
    folder = tmp_path / "gw"
    before = snapshot(folder)
    again = init(tmp_path, "gw", "--password-stdin", "--port", "9999", "--admin", "other")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"gateway: {Path('gw') / 'gateway.toml'} already exists; init never overwrites (nothing was changed)"]
    assert snapshot(folder) == before

    # Any one of its files is enough to refuse, and the missing ones are not written either.
    (folder / "gateway.toml").unlink()
    del before["gateway.toml"]
    partial = init(tmp_path, "gw", "--password-stdin")
    assert partial.returncode == 1 and "secret.key already exists" in partial.stderr
    assert snapshot(folder) == before


def test_init_into_the_current_folder(tmp_path: Path) -> None:
    result = init(tmp_path, "--password-stdin", "--insecure-cookie")
    assert result.returncode == 0, result.stderr
    assert "gateway --config gateway.toml serve" in result.stdout
    assert "secure_cookie = false" in (tmp_path / "gateway.toml").read_text()
    assert (tmp_path / "var" / "gateway.db").is_file() and (tmp_path / "policies" / "main.yaml").is_file()


def test_a_refused_password_leaves_nothing_and_a_retry_works(tmp_path: Path) -> None:
    for password, reason in (("short", "too short"), ("password1234", "too common")):
        refused = init(tmp_path, "gw", "--password-stdin", stdin=password)
        assert refused.returncode == 1 and reason in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "gw").exists()
    retry = init(tmp_path, "gw", "--password-stdin")
    assert retry.returncode == 0, retry.stderr


def test_a_failure_after_writing_removes_what_init_wrote(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the store's folder would go")
    failed = init(tmp_path, "gw", "--password-stdin", env={"GATEWAY_STORE_PATH": str(tmp_path / "blocker" / "x.db")})
    assert failed.returncode == 1 and "cannot open the store" in failed.stderr, failed.stderr
    assert "nothing was left behind" in failed.stderr
    assert not (tmp_path / "gw").exists()
    assert (tmp_path / "blocker").read_text().startswith("a file")
    assert init(tmp_path, "gw", "--password-stdin").returncode == 0


@pytest.mark.parametrize(("args", "stdin"), [
    (["gw"], PASSWORD),                                   # no terminal to prompt on, no --password-stdin
    (["gw", "--password-stdin", "--port", "0"], PASSWORD),
    (["gw", "--password-stdin", "--upstream", "ftp://x"], PASSWORD),
    (["gw", "--password-stdin", "--admin", "bad name!"], PASSWORD),
])
def test_bad_usage_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], stdin: str) -> None:
    result = init(tmp_path, *args, stdin=stdin)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "gw").exists()


def test_config_option_is_refused_and_help_is_there(tmp_path: Path) -> None:
    run = subprocess.run([PYTHON, "-m", "gateway", "--config", "x.toml", "init", "gw", "--password-stdin"],
                         input=PASSWORD, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 2 and "not --config" in run.stderr and not (tmp_path / "gw").exists()
    helped = init(tmp_path, "--help", stdin=None)
    assert helped.returncode == 0 and "Usage:" in helped.stdout and "--password-stdin" in helped.stdout


def test_the_config_from_init_is_what_the_other_commands_read(tmp_path: Path) -> None:
    assert init(tmp_path, "gw", "--password-stdin", "--admin", "ops").returncode == 0
    listing = subprocess.run([PYTHON, "-m", "gateway", "--config", "gw/gateway.toml", "users", "list"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert listing.returncode == 0 and "ops" in listing.stdout and "admin" in listing.stdout
    explained = subprocess.run([PYTHON, "-m", "gateway", "--config", "gw/gateway.toml", "policy", "explain", "GET",
                                "/admin/x", "--user", "ops"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert explained.returncode == 0 and "allow" in explained.stdout.lower()
