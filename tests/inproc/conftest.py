"""The in-process tier: the gateway that ``create_app`` builds, driven over ASGI in the test's own
event loop, with a FakeClock for every time-based rule (session timeouts, fresh sign-in, throttling).

What is real: the settings (a gateway.toml in a temp folder, read by ``load_settings``), the SQLite
store, argon2 (the cheap profile), the policy files, the Quart pages, the proxy path and its
upstream client, which connects over loopback to the demo app running in a thread of this process.
What is not: Uvicorn, sockets between client and gateway, signals, workers. Those stay in tests/e2e.

Users are made once per session with the real ``gateway users add`` into a template store; each
test gets its own copy of that file, so tests may change anything without meeting each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from gateway.app import create_app
from gateway.clock import FakeClock
from gateway.config import Settings, load_settings
from tests.e2e.harness import DEFAULT_POLICY, PASSWORD, ROOT, Gateway, csrf_token, write_gateway

# Every user a test may sign in as; "dora" is disabled. Each test has its own copy of the store.
USERS = {"alice": "admin", "bob": "staff", "carol": "analyst", "dave": "staff", "erin": "staff,reports",
         "dora": "staff"}
DISABLED = ("dora",)
BASE_URL = "http://127.0.0.1:8080"  # what the client asks for; nothing listens there (ASGI in process)
STARTUP_TIMEOUT = 30.0


# --- the upstream: the demo app, in a thread --------------------------------------------------------

def _demo_handler() -> type:
    spec = importlib.util.spec_from_file_location("demo_legacy_app", ROOT / "demo" / "legacy_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Handler  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def upstream_url() -> Iterator[str]:
    """The demo app (it echoes method, path, headers and identity as JSON) on a free loopback port."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), _demo_handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="demo-upstream", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


# --- the template store: users made once, by the real CLI -------------------------------------------

@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = write_gateway(tmp_path_factory.mktemp("template"), "http://127.0.0.1:9")
    for name, roles in USERS.items():
        files.add_user(name, roles)
    for name in DISABLED:
        result = files.cli("users", "disable", name)
        assert result.returncode == 0, result.stderr
    return files.directory / "var"


# --- the app, through its lifespan ------------------------------------------------------------------

@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the ASGI lifespan (startup, then shutdown) as a server would, in this event loop."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))

    async def expect(wanted: str) -> None:
        message = await asyncio.wait_for(from_app.get(), STARTUP_TIMEOUT)
        if message["type"] != wanted:
            raise RuntimeError(f"lifespan: expected {wanted}, got {message}")

    await to_app.put({"type": "lifespan.startup"})
    await expect("lifespan.startup.complete")
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await expect("lifespan.shutdown.complete")
        await asyncio.wait_for(task, STARTUP_TIMEOUT)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class InProcess:
    """One gateway built by create_app; ``client()`` is a browser talking to it over ASGI."""

    directory: Path
    settings: Settings
    app: Any
    clock: FakeClock
    _lines: _Lines
    _stack: contextlib.AsyncExitStack
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return BASE_URL

    def client(self, *, client_ip: str = "127.0.0.1", base_url: str = BASE_URL, **kwargs: Any) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(client_ip, 50000 + len(self._clients)))
        made = httpx.AsyncClient(transport=transport, base_url=base_url, follow_redirects=False, **kwargs)
        self._clients.append(made)
        return made

    def log(self) -> str:
        """Every log line the gateway wrote since it was made (audit lines included)."""
        return "\n".join(self._lines.lines)

    async def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`gateway ARGS` against this gateway's files, as an operator would run it. In a thread: the
        event loop (this gateway) keeps serving meanwhile, as a real one would."""
        return await asyncio.to_thread(Gateway(self.directory, 0).cli, *args, stdin=stdin)

    async def stop(self) -> None:
        """Shut the app down now (its lifespan's shutdown), as stopping the server would."""
        await self._stack.aclose()

    async def signed_in(self, user: str, **kwargs: Any) -> httpx.AsyncClient:
        browser = self.client(**kwargs)
        response = await sign_in(browser, user)
        assert response.status_code == 303, response.text
        return browser


class MakeApp(Protocol):
    def __call__(self, *, settings: dict[str, dict[str, object]] | None = None, policy: str | None = None,
                 upstream: str | None = None, directory: Path | None = None) -> Awaitable[InProcess]: ...


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@contextlib.contextmanager
def _capture_logs() -> Iterator[_Lines]:
    """The gateway's log lines, whether or not some earlier code stopped them propagating."""
    handler = _Lines()
    names = ["gateway", *(n for n in ("gateway.audit", "gateway.access") if not logging.getLogger(n).propagate)]
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(saved[name])


@pytest.fixture
async def make_app(tmp_path: Path, template_store: Path, upstream_url: str, clock: FakeClock) -> AsyncIterator[MakeApp]:
    """make_app(settings=..., policy=..., upstream=..., directory=...): a started in-process gateway.
    Passing the ``directory`` of an earlier one starts the same files again (a restart)."""
    async with contextlib.AsyncExitStack() as stack:
        made: list[InProcess] = []

        async def make(*, settings: dict[str, dict[str, object]] | None = None, policy: str | None = None,
                       upstream: str | None = None, directory: Path | None = None) -> InProcess:
            if directory is None:
                directory = tmp_path / f"gw{len(made)}"
                write_gateway(directory, upstream or upstream_url, policy=policy or DEFAULT_POLICY, settings=settings)
                for part in template_store.glob("gateway.db*"):
                    shutil.copy2(part, directory / "var" / part.name)
            loaded = load_settings(directory / "gateway.toml", env={}, require_secret=True)
            own = await stack.enter_async_context(contextlib.AsyncExitStack())
            lines = own.enter_context(_capture_logs())
            app = create_app(loaded, clock=clock)
            await own.enter_async_context(lifespan(app))
            instance = InProcess(directory, loaded, app, clock, lines, own)
            own.push_async_callback(_close_clients, instance)
            made.append(instance)
            return instance

        yield make


async def _close_clients(instance: InProcess) -> None:
    for client in instance._clients:
        await client.aclose()


@pytest.fixture
async def gateway(make_app: MakeApp) -> InProcess:
    """The default gateway: tests/e2e/harness.py's DEFAULT_POLICY and the USERS above."""
    return await make_app()


async def sign_in(client: httpx.AsyncClient, user: str, password: str = PASSWORD, next_path: str = "/",
                  **extra: str) -> httpx.Response:
    form = await client.get("/.gateway/login", params={"next": next_path})
    assert form.status_code == 200
    return await client.post("/.gateway/login", data={
        "username": user, "password": password, "csrf_token": csrf_token(form.text), "next": next_path, **extra,
    })


Factory = Callable[..., Awaitable[InProcess]]
