"""Policy hot reload against a running gateway: edits, new and deleted files within 2 seconds, a
broken file keeps the last good policy and makes readyz say which file, no request dropped."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.e2e.harness import Gateway, sign_in, wait_until

RELOAD_DEADLINE = 2.5  # the promise is 2 s; the margin absorbs the test's own polling

BASE = 'rules:\n  - paths: ["/**"]\n    allow: authenticated\n  - paths: ["/admin/**"]\n    roles: [admin]\n'


def status_becomes(client: httpx.Client, path: str, status: int) -> None:
    wait_until(lambda: client.get(path).status_code == status, f"{path} -> {status}", timeout=RELOAD_DEADLINE)


def test_edit_add_delete_take_effect(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=BASE, users={"lee": "staff"})
    policies = gateway.directory / "policies"
    with gateway.client() as lee:
        assert sign_in(lee, "lee").status_code == 303
        assert lee.get("/admin/x").status_code == 403

        (policies / "main.yaml").write_text(BASE.replace("[admin]", "[admin, staff]"))
        status_becomes(lee, "/admin/x", 200)

        (policies / "extra.yaml").write_text('rules:\n  - paths: ["/admin/secret"]\n    deny: true\n')
        status_becomes(lee, "/admin/secret", 403)
        assert lee.get("/admin/other").status_code == 200

        (policies / "extra.yaml").unlink()
        status_becomes(lee, "/admin/secret", 200)
    assert "policy reloaded" in gateway.log()


def test_broken_file_keeps_last_good_policy(make_gateway: Any) -> None:
    # readyz names the broken file to the [metrics] allow list only: the tests' client is on it.
    gateway: Gateway = make_gateway(policy=BASE, users={"lee": "staff"}, settings={"metrics": {"allow": ["127.0.0.1/32"]}})
    policies = gateway.directory / "policies"
    with gateway.client() as lee:
        assert sign_in(lee, "lee").status_code == 303
        (policies / "broken.yaml").write_text('rules:\n  - paths: ["/admin/**"]\n    allow: everybody\n')

        def not_ready() -> bool:
            ready = lee.get("/.gateway/readyz")
            return ready.status_code == 503 and "broken.yaml:3" in ready.text

        wait_until(not_ready, "readyz naming the broken file", timeout=RELOAD_DEADLINE)
        assert lee.get("/admin/x").status_code == 403  # the last good policy is still in force
        assert lee.get("/page").status_code == 200
        assert "broken.yaml:3" in gateway.log() and "last good policy" in gateway.log()

        (policies / "broken.yaml").write_text('rules:\n  - paths: ["/admin/new/**"]\n    roles: [staff]\n')
        wait_until(lambda: lee.get("/.gateway/readyz").status_code == 200, "readyz recovering",
                   timeout=RELOAD_DEADLINE)
        assert lee.get("/admin/new/x").status_code == 200


def test_no_request_is_dropped_while_the_policy_changes(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=BASE, users={"lee": "admin"})
    policies = gateway.directory / "policies"
    failures: list[str] = []
    done = threading.Event()
    counts = {"requests": 0}

    clients = [gateway.client() for _ in range(5)]
    for client in clients:  # one after another: parallel sign-ins of one account are throttled
        assert sign_in(client, "lee").status_code == 303
    probe = clients.pop()

    def hammer(client: httpx.Client) -> None:
        while not done.is_set():
            try:
                response = client.get("/admin/x")
                counts["requests"] += 1
                if response.status_code not in (200, 403):
                    failures.append(f"status {response.status_code}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(6):
            roles = "[admin]" if round_ % 2 else "[nobody]"
            (policies / "main.yaml").write_text(BASE.replace("[admin]", roles))
            status_becomes(probe, "/admin/x", 200 if round_ % 2 else 403)
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
        for client in (*clients, probe):
            client.close()
    assert not failures, failures[:5]
    assert counts["requests"] > 50


BROKEN = 'rules:\n  - paths: ["/admin/**"]\n    allow: everybody\n'


def test_readyz_tells_anonymous_callers_only_ready_or_not(make_gateway: Any) -> None:
    """Issue 10 (Low): readyz told anyone absolute file paths and error texts. Now only the
    [metrics] allow list, judged as for the metrics (behind trusted proxies, the real client), sees
    them; everyone else learns ready / not ready."""
    gateway: Gateway = make_gateway(policy=BASE, settings={
        "server": {"trusted_proxies": ["127.0.0.1/32"]}, "metrics": {"allow": ["127.0.0.1/32", "10.0.0.0/8"]}})
    outsider = {"X-Forwarded-For": "203.0.113.9"}  # through the trusted proxy: not on the list
    operator = {"X-Forwarded-For": "10.1.2.3"}  # through the trusted proxy: on the list

    def readyz(headers: dict[str, str]) -> httpx.Response:
        return httpx.get(gateway.url + "/.gateway/readyz", headers=headers, timeout=10)

    ready = readyz(outsider)
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert ready.headers["cache-control"] == "no-store"
    assert readyz(operator).json()["problems"] == []

    (gateway.directory / "policies" / "broken.yaml").write_text(BROKEN)
    wait_until(lambda: readyz(operator).status_code == 503, "readyz not ready", timeout=RELOAD_DEADLINE)
    details = readyz(operator).json()
    assert details["ready"] is False and any("broken.yaml:3" in p for p in details["problems"])
    assert str(gateway.directory) in readyz(operator).text  # the operator is told where

    hidden = readyz(outsider)
    assert hidden.status_code == 503 and hidden.json() == {"ready": False}
    for secret in ("broken.yaml", "everybody", "policies", str(gateway.directory), "/tmp", "problems"):
        assert secret not in hidden.text, secret
    # The peer alone (loopback, on the list) does not make a forwarded outsider an operator.
    assert readyz({"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}).json() == {"ready": False}

