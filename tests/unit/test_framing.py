"""The body framing the gateway forwards: decided from the head, never copied from it."""

from __future__ import annotations

import pytest

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.proxy.framing import CHUNKED, NO_BODY, Framing, request_framing

CL = b"content-length"
TE = b"transfer-encoding"


@pytest.mark.parametrize(("method", "headers", "expected"), [
    ("GET", [], NO_BODY),
    ("POST", [], NO_BODY),
    ("POST", [(CL, b"0")], Framing(False, 0)),
    ("GET", [(CL, b"0")], Framing(False, 0)),
    ("POST", [(CL, b"004")], Framing(True, 4)),
    ("POST", [(CL, b"12"), (CL, b"12")], Framing(True, 12)),
    ("POST", [(CL, b"12, 12")], Framing(True, 12)),
    ("PUT", [(TE, b"chunked")], CHUNKED),
    ("PATCH", [(TE, b"Chunked")], CHUNKED),
    ("DELETE", [(CL, b"3")], Framing(True, 3)),
])
def test_declared_bodies(method: str, headers: list[tuple[bytes, bytes]], expected: Framing) -> None:
    assert request_framing(method, headers) == expected


@pytest.mark.parametrize(("method", "headers"), [
    ("GET", [(CL, b"5")]),
    ("HEAD", [(CL, b"1")]),
    ("TRACE", [(CL, b"1")]),
    ("GET", [(TE, b"chunked")]),
    ("POST", [(CL, b"5"), (TE, b"chunked")]),
    ("POST", [(CL, b"5"), (CL, b"6")]),
    ("POST", [(CL, b"5, 6")]),
    ("POST", [(CL, b"-1")]),
    ("POST", [(CL, b"+5")]),
    ("POST", [(CL, b"0x10")]),
    ("POST", [(CL, b"")]),
    ("POST", [(CL, b"9" * 30)]),
    ("POST", [(TE, b"gzip, chunked")]),
    ("POST", [(TE, b"chunked, chunked")]),
    ("POST", [(TE, b"identity")]),
])
def test_refused(method: str, headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(BadRequest):
        request_framing(method, headers)


def test_a_declared_length_over_the_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        request_framing("POST", [(CL, b"1001")], max_body_size=1000)
    assert request_framing("POST", [(CL, b"1000")], max_body_size=1000) == Framing(True, 1000)


def test_the_forwarded_length_is_the_gateways_own_writing() -> None:
    assert Framing(True, 4).header() == (CL, b"4")
    assert Framing(False, 0).header() == (CL, b"0")
    assert NO_BODY.header() is None and CHUNKED.header() is None
