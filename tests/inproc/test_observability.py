"""Who may read /.gateway/metrics, policy reload counters, and the access log's lines, in process.
(Counts across a running gateway, several workers and streams cut mid-way: tests/e2e/test_observability.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.inproc.conftest import InProcess, MakeApp

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(gateway: InProcess, headers: dict[str, str] | None = None) -> Samples:
    response = await gateway.client().get("/.gateway/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def access_lines(gateway: InProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{") and '"request_id"' in line]


async def _until(check: Any, what: str, timeout: float = 10.0) -> None:
    """Poll an async check; the watcher reads the files on its own schedule (real time)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)  # a poll interval: the check decides


async def test_metrics_refused_to_clients_not_listed(make_app: MakeApp) -> None:
    gateway = await make_app(settings={"metrics": {"allow": ["10.0.0.0/8"]}})
    client = gateway.client()
    response = await client.get("/.gateway/metrics")
    assert response.status_code == 404
    assert "gateway_" not in response.text
    for method in ("POST", "OPTIONS", "DELETE"):  # a 405 would tell that the page exists
        assert (await client.request(method, "/.gateway/metrics")).status_code == 404
    assert (await client.get("/.gateway/healthz")).status_code == 200
    listed = gateway.client(client_ip="10.9.8.7")
    assert (await listed.get("/.gateway/metrics")).status_code == 200


async def test_metrics_judge_the_real_client_behind_trusted_proxies(make_app: MakeApp) -> None:
    # 127.0.0.1 is a trusted proxy here: the client is the address it names, as everywhere else.
    gateway = await make_app(settings={"server": {"trusted_proxies": ["127.0.0.1/32"]},
                                       "metrics": {"allow": ["127.0.0.1/32", "10.0.0.0/8"]}})
    named = {"X-Forwarded-For": "192.0.2.9"}
    assert (await gateway.client().get("/.gateway/metrics", headers=named)).status_code == 404
    assert await scrape(gateway, {"X-Forwarded-For": "10.1.2.3"})  # a listed client behind the proxy


async def test_an_untrusted_peer_cannot_claim_an_allowed_address(make_app: MakeApp) -> None:
    gateway = await make_app(settings={"metrics": {"allow": ["10.0.0.0/8"]}})
    response = await gateway.client().get("/.gateway/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
    assert response.status_code == 404


async def test_policy_reloads_and_failures(gateway: InProcess) -> None:
    policy = gateway.directory / "policies" / "main.yaml"
    metric = "gateway_policy_reloads_total"

    async def counted(result: str) -> bool:
        return value(await scrape(gateway), metric, result=result) == 1

    policy.write_text(policy.read_text() + "\n  - paths: [\"/extra\"]\n    allow: anyone\n")
    await _until(lambda: counted("success"), "a reload counted")
    policy.write_text("rules:\n  - paths: [/x]\n    nonsense: 1\n")
    await _until(lambda: counted("failure"), "a failed reload counted")
    samples = await scrape(gateway)
    assert value(samples, "gateway_policy_loaded") == 0 and value(samples, metric, result="success") == 1


async def test_one_access_line_per_request(gateway: InProcess) -> None:
    client = gateway.client()
    ids = [f"count-{n}" for n in range(5)]
    for request_id in ids:
        assert (await client.get("/public/x", headers={"X-Request-ID": request_id})).status_code == 200

    async def written() -> bool:  # lines are written in batches, a moment after the response
        return len([f for f in access_lines(gateway) if f["path"] == "/public/x"]) >= 5

    await _until(written, "five access lines")
    assert sorted(f["request_id"] for f in access_lines(gateway) if f["path"] == "/public/x") == ids


async def test_text_format_access_lines(make_app: MakeApp) -> None:
    text = await make_app(settings={"log": {"format": "text"}})
    response = await text.client().get("/public/x", headers={"X-Request-ID": "text-1"})
    assert response.status_code == 200

    async def written() -> bool:
        return 'request_id="text-1"' in text.log()

    await _until(written, "the text access line")
    (line,) = [line for line in text.log().splitlines() if 'request_id="text-1"' in line]
    assert line.startswith("time=") and 'path="/public/x"' in line and "status=200" in line


async def test_switching_the_access_log_off(make_app: MakeApp) -> None:
    quiet = await make_app(settings={"log": {"access": False}})
    response = await quiet.client().get("/public/x", headers={"X-Request-ID": "quiet-1"})
    assert response.status_code == 200
    # The metrics still count it; only the line is off.
    assert value(await scrape(quiet), "gateway_requests_total", decision="allow", status="200") == 1
    await quiet.stop()  # shutting down writes whatever lines are waiting
    assert "quiet-1" not in quiet.log()
