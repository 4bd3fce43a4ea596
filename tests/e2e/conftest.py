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
    for name, roles in USERS.items():
        instance.add_user(name, roles)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def make_gateway(upstream: Upstream, tmp_path: Path) -> Iterator[object]:
    """Start a gateway with its own settings/policy: make_gateway(settings=..., policy=..., users=...)."""
    started: list[Gateway] = []

    def make(*, settings: dict[str, dict[str, object]] | None = None, policy: str | None = None,
             users: dict[str, str] | None = None, upstream_url: str | None = None, start: bool = True) -> Gateway:
        kwargs = {"policy": policy} if policy is not None else {}
        instance = write_gateway(tmp_path / f"gw{len(started)}", upstream_url or upstream.url,
                                 settings=settings, **kwargs)  # type: ignore[arg-type]
        for name, roles in (users or {}).items():
            instance.add_user(name, roles)
        started.append(instance)
        if start:
            instance.start()
        return instance

    yield make
    for instance in started:
        instance.stop()


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
