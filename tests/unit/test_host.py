"""The Host header, checked before anything copies it."""

from __future__ import annotations

import pytest

from gateway.errors import BadRequest
from gateway.http import HostRules, check_host

ANY = HostRules()


@pytest.mark.parametrize("value", [
    b"localhost", b"127.0.0.1", b"127.0.0.1:8080", b"[::1]", b"[::1]:443", b"App.Example.com", b"a_b.internal:80",
    b"example.com.",
])
def test_well_formed_hosts_pass(value: bytes) -> None:
    assert check_host([(b"host", value)], ANY) == value


@pytest.mark.parametrize("value", [
    b"", b"user@example.com", b"user:pw@example.com", b"exa mple.com", b"example.com/x", b"example.com?x",
    b"example.com:0", b"example.com:65536", b"example.com:", b"example..com", b"[::1", b"-", b"example.com\\x",
    b"\xc3\xa9.com", b"example.com:80:80", b"http://example.com",
])
def test_malformed_hosts_are_refused(value: bytes) -> None:
    with pytest.raises(BadRequest):
        check_host([(b"host", value)], ANY)


def test_exactly_one_host() -> None:
    with pytest.raises(BadRequest):
        check_host([(b"host", b"a"), (b"host", b"a")], ANY)
    with pytest.raises(BadRequest):
        check_host([], ANY)
    assert check_host([], ANY, "1.0") == b""


def test_listed_hosts_and_the_public_url() -> None:
    rules = HostRules.from_settings(["app.example.com", "other.example.com:8443"], "https://gw.example.com")
    for good in (b"app.example.com", b"APP.example.com:8080", b"other.example.com:8443", b"gw.example.com",
                 b"gw.example.com:443"):
        assert check_host([(b"host", good)], rules) == good
    for bad in (b"evil.example.com", b"other.example.com", b"gw.example.com:444", b"app.example.com.evil"):
        with pytest.raises(BadRequest):
            check_host([(b"host", bad)], rules)
    with pytest.raises(BadRequest):  # a restricted gateway needs the Host, HTTP/1.0 too
        check_host([], rules, "1.0")


def test_a_public_url_with_a_port() -> None:
    rules = HostRules.from_settings([], "http://127.0.0.1:8080")
    assert check_host([(b"host", b"127.0.0.1:8080")], rules)
    with pytest.raises(BadRequest):
        check_host([(b"host", b"127.0.0.1")], rules)
