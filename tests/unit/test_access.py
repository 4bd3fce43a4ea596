"""The access-log record and line: request ids, both formats, nothing secret (pure parts)."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.observe.access import AccessLog, Exchange, _text_line, request_id
from gateway.observe.metrics import Metrics


@pytest.mark.parametrize("given", [b"abc", b"A-Z.a_z-09", b"x" * 128, b"0123456789abcdef"])
def test_a_sane_request_id_is_kept(given: bytes) -> None:
    assert request_id(given) == given


@pytest.mark.parametrize("given", [None, b"", b"x" * 129, b"a b", b"a\r\nb", b"id;drop", b"\xc3\xa9", b"a/b", b'"x"'])
def test_anything_else_gets_a_fresh_random_id(given: bytes | None) -> None:
    made = request_id(given)
    assert made != given and len(made) == 16 and all(c in b"0123456789abcdef" for c in made)
    assert request_id(given) != made  # random, not a constant


def test_text_lines_quote_what_a_client_chooses() -> None:
    line = _text_line({"path": '/a"b\nc', "user": None, "status": 200})
    assert "\n" not in line and line == 'path="/a\\"b\\nc" user=- status=200'


def _finished(caplog: pytest.LogCaptureFixture, text: bool) -> str:
    metrics = Metrics()
    exchange = Exchange(b"rid-1", "GET", "127.0.0.1")
    exchange.path, exchange.user, exchange.decision, exchange.status, exchange.bytes = "/p", "alice", "allow", 200, 5
    exchange.upstream = 0.0012345678
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        AccessLog(metrics, enabled=True, text=text).finish(exchange)
    assert metrics.requests.labels("allow", "200")._value.get() == 1  # counted once, whatever the format
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    return record.getMessage()


def test_json_line(caplog: pytest.LogCaptureFixture) -> None:
    fields = json.loads(_finished(caplog, text=False))
    assert set(fields) == {"time", "request_id", "client", "user", "method", "path", "decision", "status", "ended", "bytes",
                           "upstream_s", "total_s"}
    assert (fields["request_id"], fields["user"], fields["status"], fields["upstream_s"]) == ("rid-1", "alice", 200, 0.001235)
    assert fields["ended"] == "complete"
    assert fields["time"].endswith("Z") and fields["total_s"] >= 0


def test_text_line(caplog: pytest.LogCaptureFixture) -> None:
    line = _finished(caplog, text=True)
    assert line.startswith("time=") and 'request_id="rid-1"' in line and "status=200" in line and 'path="/p"' in line
