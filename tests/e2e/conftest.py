from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import USERS, Gateway, Upstream, sign_in, start_upstream, write_gateway


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    server = start_upstream()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The shared gateway: default policy, users alice (admin), bob (staff), carol (analyst), dave (staff)."""
    instance = write_gateway(tmp_path_factory.mktemp("gateway"), upstream.url)
    instance.add_users(USERS)
    instance.start()
    yield instance
    instance.stop()


PUBLIC = 'rules:\n  - paths: ["/**"]\n    allow: anyone\n'


@pytest.fixture(scope="session")
def public_gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A shared gateway with default settings and one rule, allow anyone: for the raw-socket tests that
    need no sign-in and change nothing (framing, pipelining, parsers' limits)."""
    instance = write_gateway(tmp_path_factory.mktemp("public"), upstream.url, policy=PUBLIC)
    instance.start()
    yield instance
    instance.stop()


class _Maker:
    """make(settings=..., policy=..., users=..., upstream_url=..., start=...): a gateway of its own."""

    def __init__(self, upstream: Upstream, folder: Path) -> None:
        self.upstream = upstream
        self.folder = folder
        self.started: list[Gateway] = []

    def __call__(self, *, settings: dict[str, dict[str, object]] | None = None, policy: str | None = None,
                 users: dict[str, str] | None = None, upstream_url: str | None = None, start: bool = True) -> Gateway:
        kwargs = {"policy": policy} if policy is not None else {}
        instance = write_gateway(self.folder / f"gw{len(self.started)}", upstream_url or self.upstream.url,
                                 settings=settings, **kwargs)  # type: ignore[arg-type]
        instance.add_users(users or {})
        self.started.append(instance)
        if start:
            instance.start()
        return instance

    def stop_all(self) -> None:
        for instance in self.started:
            instance.stop()


@pytest.fixture
def make_gateway(upstream: Upstream, tmp_path: Path) -> Iterator[_Maker]:
    """Start a gateway with its own settings/policy: make_gateway(settings=..., policy=..., users=...)."""
    maker = _Maker(upstream, tmp_path)
    yield maker
    maker.stop_all()


@pytest.fixture(scope="module")
def make_module_gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Maker]:
    """Like make_gateway, but what it starts serves the whole module: for tests that change nothing
    in the gateway (raw sockets, limits), so a module pays for one start instead of one per test."""
    maker = _Maker(upstream, tmp_path_factory.mktemp("module"))
    yield maker
    maker.stop_all()


def _signed_in(gateway: Gateway, user: str) -> Iterator[httpx.Client]:
    with gateway.client() as client:
        response = sign_in(client, user)
        assert response.status_code == 303, response.text
        yield client


@pytest.fixture
def alice(gateway: Gateway) -> Iterator[httpx.Client]:
    yield from _signed_in(gateway, "alice")


@pytest.fixture
def bob(gateway: Gateway) -> Iterator[httpx.Client]:
    yield from _signed_in(gateway, "bob")


@pytest.fixture
def carol(gateway: Gateway) -> Iterator[httpx.Client]:
    yield from _signed_in(gateway, "carol")
