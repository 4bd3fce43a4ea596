"""The proxy through the real process: raw bytes on the wire, hop-by-hop headers, streaming both ways,
a client that goes away. Identity headers, spoofing, cookies, redirects and upstream failures are
checked in process: tests/inproc/test_proxy.py."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Gateway, raw_request


def echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    data["names"] = [name.lower() for name, _ in data["headers"]]
    return data


SPOOFS = [
    "X-Forwarded-User", "x-forwarded-user", "X_Forwarded_User", "X-FORWARDED-USER", "x_forwarded-user",
    "X-Forwarded-Roles", "X_FORWARDED_ROLES", "Remote-Addr",
]


@pytest.mark.parametrize("name", SPOOFS)
def test_spoofed_identity_headers_are_removed_on_public_paths(gateway: Gateway, name: str) -> None:
    with gateway.client() as client:
        seen = echo(client.get("/public/x", headers={name: "mallory"}))
    assert "mallory" not in str(seen["headers"])
    assert seen["user"] is None


def test_hop_by_hop_headers_are_not_forwarded(gateway: Gateway) -> None:
    status, _, body = raw_request(gateway.port, (
        b"GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close, X-Secret-Hop\r\n"
        b"X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\n"
        b"Upgrade: h2c\r\nX-Kept: yes\r\n\r\n"))
    assert status == 200
    names = [name.lower() for name, _ in json.loads(body)["headers"]]
    for hop in ("x-secret-hop", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert hop not in names
    assert "x-kept" in names


def test_upload_is_streamed_intact(alice: httpx.Client) -> None:
    size = 24 * 1024 * 1024
    block = bytes(range(256)) * 4096

    def body() -> Any:
        sent = 0
        while sent < size:
            yield block
            sent += len(block)

    expected = hashlib.sha256(block * (size // len(block))).hexdigest()
    seen = echo(alice.post("/upload", content=body()))  # chunked: no Content-Length
    assert seen["body_length"] == size and seen["body_sha256"] == expected
    sized = echo(alice.put("/upload", content=block * 8))
    assert sized["body_length"] == len(block) * 8


def test_download_is_streamed_intact(alice: httpx.Client) -> None:
    size = 48 * 1024 * 1024
    digest = hashlib.sha256()
    received = 0
    with alice.stream("GET", "/download", params={"bytes": str(size)}) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_raw():
            digest.update(chunk)
            received += len(chunk)
    block = bytes(range(256)) * 256
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(block * (size // len(block))).hexdigest()


def test_chunked_responses_are_flushed_as_they_arrive(alice: httpx.Client) -> None:
    arrivals: list[float] = []
    with alice.stream("GET", "/events", params={"chunks": "3", "every": "0.5"}) as response:
        assert response.status_code == 200
        for _ in response.iter_raw():
            arrivals.append(time.monotonic())
    # Buffering would deliver everything together at the end; streaming spreads it over ~1 s.
    assert len(arrivals) >= 3
    assert arrivals[-1] - arrivals[0] > 0.6


def test_abandoned_stream_is_dropped_not_drained(gateway: Gateway, alice: httpx.Client) -> None:
    from tests.e2e.harness import wait_until

    before = gateway.log().count("client went away")  # the shared gateway: count only this test's
    with alice.stream("GET", "/events", params={"chunks": "200", "every": "0.05"}) as response:
        assert response.status_code == 200
        next(response.iter_raw())
    alice.close()  # closed the connection after one chunk of a ten-second stream
    wait_until(lambda: gateway.log().count("client went away") > before, "the gateway noticing the disconnect",
               timeout=10)
    with gateway.client() as client:
        assert client.get("/public/x").status_code == 200


def test_the_client_library_adds_no_headers_of_its_own(gateway: Gateway) -> None:
    status, _, body = raw_request(gateway.port, b"GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 200
    names = {name.lower() for name, _ in json.loads(body)["headers"]}
    # Only what the gateway itself adds (X-Request-ID ties the app's log lines to the gateway's).
    assert names == {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}


# Raw bytes a client library would percent-encode, through the default (aiohttp) transport; the
# other queries and the httpx transport: tests/inproc/test_proxy.py.
@pytest.mark.parametrize("query", [b"q=\"'<>`{}|^", b"q=%2F..%2F&x=%00"])
def test_the_query_reaches_the_app_byte_for_byte(gateway: Gateway, query: bytes) -> None:
    from tests.e2e.harness import raw_get

    status, _, body = raw_get(gateway.port, b"/public/a?" + query)
    assert status == 200 and json.loads(body)["path"].encode() == b"/public/a?" + query


@pytest.mark.parametrize("query", [b"q=\xc3\xa9", b"q=\x7f", b"q=\x01"])
def test_a_query_with_raw_non_ascii_or_control_bytes_is_refused(gateway: Gateway, query: bytes) -> None:
    from tests.e2e.harness import raw_get

    status, _, _ = raw_get(gateway.port, b"/public/a?" + query)
    assert status == 400  # never re-encoded on the way (the app would see other bytes than were decided on)

