"""Metrics (/.gateway/metrics) and the access log, through the real gateway and demo app: counts over a
running gateway, several workers adding up, a stream cut mid-way. Who may scrape, reload counters and
the access log's format switches are checked in process: tests/inproc/test_observability.py."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import (
    PASSWORD,
    USER_AGENT,
    Gateway,
    Upstream,
    raw_get,
    sign_in,
    wait_until,
    write_gateway,
)
from tests.e2e.test_workers import uvicorn_workers

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(gateway: Gateway, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(gateway.url + "/.gateway/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, decision: str, status: int) -> float:
    return value(samples, "gateway_requests_total", decision=decision, status=str(status))


def access_lines(gateway: Gateway) -> list[dict[str, Any]]:
    """The access-log lines in the gateway's log (stderr), one JSON object each."""
    found = []
    for line in gateway.log().splitlines():
        if line.startswith("{") and '"request_id"' in line:
            found.append(json.loads(line))
    return found


def access_line(gateway: Gateway, request_id: str) -> dict[str, Any]:
    # The line is written as the response ends: poll until it is there.
    wait_until(lambda: any(f["request_id"] == request_id for f in access_lines(gateway)),
               f"the access line of {request_id}", timeout=5)
    (line,) = [f for f in access_lines(gateway) if f["request_id"] == request_id]
    return line


@pytest.fixture(scope="module")
def observed(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway of its own, so counts here move only with this module's requests."""
    instance = write_gateway(tmp_path_factory.mktemp("observed"), upstream.url)
    instance.add_users({name: "admin" if name == "alice" else "staff" for name in ("alice", "ivy", "olga")})
    instance.start()
    yield instance
    instance.stop()


# --- access control


def test_metrics_answer_loopback_by_default(observed: Gateway) -> None:
    samples = scrape(observed)
    assert ("gateway_sessions_live", frozenset()) in samples
    for outcome in ("success", "failure", "throttled"):  # every series exists from the start
        assert ("gateway_signins_total", frozenset({("outcome", outcome)})) in samples
    assert value(samples, "gateway_policy_loaded") == 1


# --- what the metrics count


def test_request_counters_follow_decisions_and_statuses(observed: Gateway) -> None:
    before = scrape(observed)
    with observed.client() as alice:
        assert sign_in(alice, "alice").status_code == 303
        for _ in range(3):
            assert alice.get("/page").status_code == 200
        assert alice.get("/internal/x").status_code == 403
        assert alice.get("/page", params={"status": "404"}).status_code == 404
    with observed.client() as anonymous:
        assert anonymous.get("/page", headers=JSON).status_code == 401
        assert anonymous.get("/page", headers=HTML).status_code == 302
    assert raw_get(observed.port, b"/a%2Fb")[0] == 400
    after = scrape(observed)
    expected = {("allow", 200): 3, ("deny", 403): 1, ("allow", 404): 1, ("login", 401): 1, ("login", 302): 1,
                ("bad_request", 400): 1}
    for (decision, status), count in expected.items():
        assert requests(after, decision, status) - requests(before, decision, status) == count, (decision, status)
    # The sign-in page, the form post and the first scrape: gateway pages are counted too.
    assert requests(after, "gateway", 200) - requests(before, "gateway", 200) == 2  # GET login, first scrape
    assert requests(after, "gateway", 303) - requests(before, "gateway", 303) == 1  # the successful POST
    # One upstream response head timed per proxied request, in buckets.
    count = "gateway_upstream_response_seconds_count"
    assert value(after, count) - value(before, count) == 4
    assert value(after, "gateway_upstream_response_seconds_bucket", le="+Inf") == value(after, count)
    assert ("gateway_upstream_response_seconds_bucket", frozenset({("le", "0.001")})) in after
    assert value(after, "gateway_upstream_response_seconds_sum") > 0


def test_signin_outcomes_and_throttled_attempts(observed: Gateway) -> None:
    before = scrape(observed)
    with observed.client() as client:
        assert sign_in(client, "ivy").status_code == 303
    statuses = []
    with observed.client() as client:
        # Wrong passwords until the throttle answers (the back-off starts after a few failures).
        while 429 not in statuses:
            assert len(statuses) < 12, statuses
            statuses.append(sign_in(client, "ivy", password="not the password").status_code)
    after = scrape(observed)
    outcome = lambda s, o: value(s, "gateway_signins_total", outcome=o)  # noqa: E731
    assert outcome(after, "success") - outcome(before, "success") == 1
    assert outcome(after, "failure") - outcome(before, "failure") == statuses.count(401) >= 3
    assert outcome(after, "throttled") - outcome(before, "throttled") == 1
    throttled = lambda s: value(s, "gateway_throttled_attempts_total", form="signin")  # noqa: E731
    assert throttled(after) - throttled(before) == 1


def test_live_sessions_gauge_counts_the_store(observed: Gateway) -> None:
    observed.cli("sessions", "revoke", "--all")
    assert value(scrape(observed), "gateway_sessions_live") == 0
    clients = [observed.client() for _ in range(2)]
    try:
        for client in clients:
            assert sign_in(client, "olga").status_code == 303
        assert value(scrape(observed), "gateway_sessions_live") == 2
        assert observed.cli("users", "disable", "olga").returncode == 0
        assert value(scrape(observed), "gateway_sessions_live") == 0  # computed at scrape time
    finally:
        for client in clients:
            client.close()
        observed.cli("users", "enable", "olga")


# --- several workers


def _metrics_dir(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    (entry,) = [e for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(os.fsdecode(entry.split(b"=", 1)[1]))


def _served_by(directory: Path, pid: int) -> float:
    """The requests one worker counted, read from its own file (the scrape adds all of them up)."""
    total = 0.0
    for metric in MultiProcessCollector.merge([str(directory / f"counter_{pid}.db")]):
        for sample in metric.samples:
            if sample.name == "gateway_requests_total" and sample.labels.get("decision") == "allow":
                total += sample.value
    return total


def test_two_workers_add_up(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(settings={"server": {"workers": 2}}, users={"ivy": "staff"})

    wait_until(lambda: len(uvicorn_workers(gateway)) == 2, "two worker processes", timeout=60)
    pids = uvicorn_workers(gateway)
    directory = _metrics_dir(pids[0])
    assert _metrics_dir(pids[1]) == directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    wait_until(lambda: all((directory / f"counter_{pid}.db").exists() for pid in pids), "both workers' metrics")
    with gateway.client() as ivy:
        assert sign_in(ivy, "ivy").status_code == 303
        cookie = ivy.cookies["gateway_session"]
    headers = {"Cookie": f"gateway_session={cookie}", "User-Agent": USER_AGENT.decode()}
    sent = 0
    # A new connection per request: the kernel hands them to both workers, sooner or later.
    while sent < 20 or not all(_served_by(directory, pid) for pid in pids):
        assert sent < 400, "one worker served every request"
        assert httpx.get(gateway.url + "/page", headers=headers, timeout=10).status_code == 200
        sent += 1
    # Each worker counts a request as it ends: the last one may still be on its way to the file.
    wait_until(lambda: sum(_served_by(directory, pid) for pid in pids) == sent, "every request counted", timeout=5)
    # Whichever worker answers the scrape, it reports every worker's requests.
    for _ in range(6):
        samples = scrape(gateway)
        assert requests(samples, "allow", 200) == sent
        assert value(samples, "gateway_upstream_response_seconds_count") == sent
        assert value(samples, "gateway_sessions_live") == 1
        assert value(samples, "gateway_signins_total", outcome="success") == 1
    gateway.stop()
    assert not directory.exists()  # the parent removes the workers' files


# --- the access log and X-Request-ID


def test_access_log_lines(observed: Gateway) -> None:
    with observed.client() as client:
        form = client.get("/.gateway/login", headers={"X-Request-ID": "login-form-1"})
        assert form.headers["x-request-id"] == "login-form-1"
        assert sign_in(client, "alice").status_code == 303
        cookie = client.cookies["gateway_session"]
        response = client.get("/a/./b//c", params={"token": "s3cr3t-query"}, headers={"X-Request-ID": "page-1"})
        assert response.status_code == 200
        denied = client.get("/internal/x", headers={"X-Request-ID": "denied-1"})
        assert denied.status_code == 403
    assert raw_get(observed.port, b"/bad%2Fpath?also=secret", b"X-Request-ID: bad-1\r\n")[0] == 400

    page = access_line(observed, "page-1")
    assert {k: page[k] for k in ("client", "user", "method", "path", "decision", "status")} == {
        "client": "127.0.0.1", "user": "alice", "method": "GET", "path": "/a/b/c", "decision": "allow", "status": 200}
    assert page["bytes"] == len(response.content)
    assert 0 <= page["upstream_s"] <= page["total_s"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", page["time"])
    assert {"decision": "deny", "status": 403, "user": "alice", "upstream_s": None}.items() <= \
        access_line(observed, "denied-1").items()
    form_line = access_line(observed, "login-form-1")
    assert (form_line["decision"], form_line["status"], form_line["path"]) == ("gateway", 200, "/.gateway/login")
    bad = access_line(observed, "bad-1")
    assert (bad["decision"], bad["status"], bad["path"]) == ("bad_request", 400, "/bad%2Fpath")
    # The sign-in POST names the user who just signed in.
    assert any(f["method"] == "POST" and f["status"] == 303 and f["user"] == "alice" for f in access_lines(observed))

    log = observed.log()
    assert "s3cr3t-query" not in log and "also=secret" not in log  # never the query string
    assert PASSWORD not in log and cookie not in log
    session_id = json.loads(base64.urlsafe_b64decode(cookie.split(".")[0] + "=" * (-len(cookie.split(".")[0]) % 4)))
    assert len(session_id) >= 43 and session_id not in log


def test_request_id_kept_generated_and_passed_upstream(observed: Gateway) -> None:
    def echoed(headers: dict[str, str]) -> tuple[str, str]:
        response = httpx.get(observed.url + "/public/echo", headers=headers, timeout=10)
        assert response.status_code == 200
        upstream = [v for k, v in response.json()["headers"] if k.lower() == "x-request-id"]
        assert len(upstream) == 1  # exactly one, never the client's copy beside the gateway's
        return response.headers["x-request-id"], upstream[0]

    assert echoed({"X-Request-ID": "abc.DEF_123-x"}) == ("abc.DEF_123-x", "abc.DEF_123-x")
    for insane in ("has space", "x" * 129, "semi;colon"):
        returned, upstream = echoed({"X-Request-ID": insane})
        assert returned == upstream and re.fullmatch(r"[0-9a-f]{16}", returned)
    first, _ = echoed({})
    second, _ = echoed({})
    assert re.fullmatch(r"[0-9a-f]{16}", first) and first != second
    # Every answer carries one, the gateway's own refusals and pages included.
    for path in ("/internal/x", "/.gateway/healthz", "/.gateway/nowhere"):
        assert re.fullmatch(r"[0-9a-f]{16}", httpx.get(observed.url + path, timeout=10).headers["x-request-id"])
    status, headers, _ = raw_get(observed.port, b"/bad%2Fpath")
    assert status == 400 and re.fullmatch(r"[0-9a-f]{16}", headers["x-request-id"])


def test_a_stream_cut_by_the_read_timeout_is_logged_and_counted_as_aborted(make_gateway: Any) -> None:
    """The client gets a truncated body under status 200: the access line and the metrics say so."""
    gateway: Gateway = make_gateway(policy='rules:\n  - paths: ["/**"]\n    allow: anyone\n',
                                    settings={"upstream": {"read_timeout": "1s"}})
    # The demo app sends a chunk every 3 s: the second one is past the gateway's 1 s idle limit.
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
            "GET", gateway.url + "/cut", params={"chunks": "3", "every": "3"},
            headers={"X-Request-ID": "cut-by-timeout"}, timeout=20) as response:
        assert response.status_code == 200
        for _ in response.iter_raw():
            pass
    line = access_line(gateway, "cut-by-timeout")
    assert line["status"] == 200 and line["ended"] == "upstream_timeout"
    complete = httpx.get(gateway.url + "/whole", headers={"X-Request-ID": "whole"}, timeout=10)
    assert complete.status_code == 200 and access_line(gateway, "whole")["ended"] == "complete"
    samples = scrape(gateway)
    assert value(samples, "gateway_aborted_responses_total", ended="upstream_timeout") == 1
    assert value(samples, "gateway_aborted_responses_total", ended="upstream_error") == 0
