"""Real processes for end-to-end tests: the demo upstream and the gateway, on free loopback ports.

Readiness is polled (TCP connect, then /.gateway/healthz); nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
START_TIMEOUT = 20.0

# Cheap argon2 parameters keep the suite fast; the code path is the production one.
FAST_PASSWORDS = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}

DEFAULT_POLICY = """
rules:
  - paths: ["/static/**", "/favicon.ico", "/public/**"]
    allow: anyone
  - paths: ["/**"]
    allow: authenticated
  - paths: ["/admin/**"]
    roles: [admin]
  - paths: ["/reports/**"]
    methods: [GET]
    roles: [analyst, admin]
  - paths: ["/internal/**"]
    deny: true
  - paths: ["/fresh/**"]
    roles: [admin]
    fresh: 1h
"""

PASSWORD = "correct horse battery staple"
USERS = {"alice": "admin", "bob": "staff", "carol": "analyst", "dave": "staff"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)  # a poll interval, not synchronisation: the check decides
    raise TimeoutError(f"{what} not ready after {timeout}s")


# The contract: a change made with `gateway users ...`/`sessions ...` reaches a running gateway within
# one second (the gateway caches session rows for session.cache_ttl, at most 1 s).
CHANGE_BOUND = 1.0


def within_a_second(check: Callable[[], bool], what: str = "the change") -> None:
    """Poll ``check``; every attempt that starts within CHANGE_BOUND of the call counts."""
    deadline = time.monotonic() + CHANGE_BOUND
    while True:
        started = time.monotonic()
        if check():
            return
        if started > deadline:
            raise AssertionError(f"{what} did not reach the running gateway within {CHANGE_BOUND} s")
        time.sleep(0.02)  # a poll interval: the check decides


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Upstream:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_upstream() -> Upstream:
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, str(ROOT / "demo" / "legacy_app.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: port_open(port), "upstream")
    return Upstream(port, process)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Gateway:
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.directory / "gateway.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.directory / "gateway.toml"

    def cli(self, *args: str, stdin: str | bytes | None = None, env: dict[str, str] | None = None,
            config: bool = True) -> subprocess.CompletedProcess[str]:
        command = [PYTHON, "-m", "gateway", *(["--config", str(self.config)] if config else []), *args]
        data = stdin.encode() if isinstance(stdin, str) else stdin
        result = subprocess.run(command, input=data, capture_output=True, timeout=60,
                                env={**os.environ, **(env or {})}, cwd=self.directory)
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                           result.stderr.decode())

    def add_user(self, name: str, roles: str, password: str = PASSWORD) -> None:
        result = self.cli("users", "add", name, "--roles", roles, "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr

    def add_users(self, users: dict[str, str], password: str = PASSWORD) -> None:
        """Users a test starts from ({name: "role,role"}): what `gateway users add` does for each (the
        same settings, stores, Accounts.add and "user.added" audit event), in this process: a command
        process per user cost ~0.3 s of CPU, for fixtures only. tests/e2e/test_cli.py runs the command."""
        if users:
            # In a thread of its own: the caller may be inside an event loop (Playwright's sync API).
            with ThreadPoolExecutor(max_workers=1) as thread:
                thread.submit(asyncio.run, _add_users(self.config, users, password)).result()

    def start(self, *, new_session: bool = False) -> None:
        """``new_session``: the supervisor and its workers form a process group of their own, which
        a test may kill as one (``os.killpg``), as a machine going down would."""
        with self.log_path.open("ab") as log:  # the child has its own copy of the descriptor
            self.process = subprocess.Popen([PYTHON, "-m", "gateway", "serve", "--config", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
                                            start_new_session=new_session)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                return httpx.get(self.url + "/.gateway/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, "gateway")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30, **kwargs)  # type: ignore[arg-type]


def write_gateway(directory: Path, upstream_url: str, *, policy: str = DEFAULT_POLICY,
                  settings: dict[str, dict[str, object]] | None = None) -> Gateway:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policies").mkdir(exist_ok=True)
    (directory / "policies" / "main.yaml").write_text(policy)
    (directory / "var").mkdir(exist_ok=True)
    key = directory / "var" / "secret.key"
    key.write_text(secrets.token_urlsafe(48))
    key.chmod(0o600)
    port = free_port()
    sections: dict[str, dict[str, object]] = {
        # One worker unless a test asks for more: quicker to start, and tests/e2e/test_workers.py
        # and others cover several.
        "server": {"host": "127.0.0.1", "port": port, "secret_key_file": "var/secret.key", "workers": 1},
        "upstream": {"url": upstream_url, "read_timeout": "10s"},
        "session": {"secure_cookie": False},
        "store": {"path": "var/gateway.db"},
        "policy": {"dir": "policies"},
        "passwords": dict(FAST_PASSWORDS),
    }
    for section, values in (settings or {}).items():
        sections.setdefault(section, {}).update(values)
    text = "".join(
        f"[{section}]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()) + "\n"
        for section, values in sections.items()
    )
    (directory / "gateway.toml").write_text(text)
    return Gateway(directory, port)


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no csrf_token in the form"
    return match.group(1)


def sign_in(client: httpx.Client, user: str, password: str = PASSWORD, next_path: str = "/") -> httpx.Response:
    form = client.get("/.gateway/login", params={"next": next_path})
    assert form.status_code == 200
    return client.post("/.gateway/login", data={
        "username": user, "password": password, "csrf_token": csrf_token(form.text), "next": next_path,
    })


def raw_request(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given (httpx would normalise paths) and parse the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


# The User-Agent httpx sends: sessions are bound to it ([session] bind = "user_agent"), so raw
# requests replaying a cookie that an httpx client obtained must present the same one.
USER_AGENT = f"python-httpx/{httpx.__version__}".encode()


def raw_get(port: int, target: bytes, headers: bytes = b"", method: bytes = b"GET") -> tuple[int, dict[str, str], bytes]:
    return raw_request(port, method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                       + b"User-Agent: " + USER_AGENT + b"\r\n" + headers + b"\r\n")


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


async def _add_users(config: Path, users: dict[str, str], password: str) -> None:
    from gateway.auth.accounts import Accounts, parse_roles
    from gateway.auth.passwords import Passwords
    from gateway.config import load_settings
    from gateway.observe.audit import Audit
    from gateway.store import open_stores

    settings = load_settings(config)
    stores = open_stores(settings.store)
    await stores.open()
    try:
        accounts = Accounts(stores, Passwords(settings.passwords))
        trail = Audit(stores.audit)
        for name, roles in users.items():
            added = await accounts.add(name, password, parse_roles(roles))
            trail.record("user.added", by="cli", operator=_operator(), user=added.name, roles=list(added.roles))
        await trail.flush()
    finally:
        await stores.close()
