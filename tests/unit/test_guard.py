"""The answers the guarded HTTP protocol writes itself, before any app sees the request."""

from __future__ import annotations

from gateway.http.guard import GuardedHttpToolsProtocol, _answer, protocol_options
from gateway.proxy.headers import HSTS


def test_an_answer_is_complete_and_carries_the_gateways_headers() -> None:
    raw = _answer(b"431 Request Header Fields Too Large", b"too large\n", (HSTS,))
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"connection: close" in lines and HSTS[0] + b": " + HSTS[1] in lines
    assert body == b"too large\n" and b"content-length: 10" in lines


def test_configure_sets_this_processs_limits() -> None:
    before = (GuardedHttpToolsProtocol.max_head, GuardedHttpToolsProtocol.head_timeout)
    try:
        assert protocol_options(1024, 2.5, (HSTS,)) == {"http": GuardedHttpToolsProtocol}
        assert GuardedHttpToolsProtocol.max_head == 1024 and GuardedHttpToolsProtocol.head_timeout == 2.5
        assert GuardedHttpToolsProtocol.extra_headers == (HSTS,)
    finally:
        protocol_options(*before)
