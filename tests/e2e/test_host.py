"""Host is checked before the gateway copies it anywhere (X-Forwarded-Host, Location, the app's Host)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Gateway, raw_request

PUBLIC = 'rules:\n  - paths: ["/**"]\n    allow: anyone\n'


def ask(gateway: Gateway, host_lines: bytes, target: bytes = b"/x?redirect=/next") -> tuple[int, dict[str, str], bytes]:
    return raw_request(gateway.port, b"GET " + target + b" HTTP/1.1\r\n" + host_lines + b"Connection: close\r\n\r\n")


@pytest.mark.parametrize("host_lines", [
    b"",  # none
    b"Host: a.example\r\nHost: b.example\r\n",
    b"Host: user@evil.example\r\n",
    b"Host: evil.example/path\r\n",
    b"Host: evil example\r\n",
    b"Host: evil.example:99999\r\n",
], ids=["missing", "two", "userinfo", "path", "space", "port"])
def test_malformed_host_is_refused_before_anything(gateway: Gateway, host_lines: bytes) -> None:
    status, _, body = ask(gateway, host_lines, b"/.gateway/login")
    assert status == 400
    status, _, body = ask(gateway, host_lines, b"/public/x?redirect=/next")
    assert status == 400 and b"evil" not in body
