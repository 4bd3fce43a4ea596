"""One policy per machine (issue 13): every worker of one `gateway serve` enforces the same accepted
policy version, whatever the timing of edits.

The editor's attack: save a good edit, then a broken version of it a fraction of a second later (an
autosave). Before, each worker polled the folder on its own: one loaded the good edit, the other
only ever saw the broken one, and the same request was allowed or refused depending on which worker
the kernel picked, until the file was fixed."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import httpx

from tests.e2e.harness import Gateway, sign_in, wait_until

RELOAD_DEADLINE = 2.5  # the promise is 2 s; the margin absorbs the test's own polling
FRESH = 24  # fresh connections per look: the kernel spreads them over both workers

BASE = 'rules:\n  - paths: ["/**"]\n    allow: authenticated\n  - paths: ["/admin/**"]\n    roles: [admin]\n'
BROKEN = 'rules:\n  - paths: ["/admin/**"]\n    allow: everybody\n'
OPERATOR = {"metrics": {"allow": ["127.0.0.1/32"]}}


def readyz_everywhere(gateway: Gateway) -> list[dict[str, Any]]:
    """readyz's details (the tests' loopback client is on the [metrics] allow list), each on a fresh
    connection."""
    return [httpx.get(gateway.url + "/.gateway/readyz", timeout=10).json() for _ in range(FRESH)]


def versions(gateway: Gateway) -> set[str]:
    return {body["policy"]["version"] for body in readyz_everywhere(gateway)}


def answers(gateway: Gateway, cookies: httpx.Cookies, path: str) -> set[int]:
    """The status of ``path`` on many fresh connections, with one session."""
    seen = set()
    for _ in range(FRESH):
        with httpx.Client(base_url=gateway.url, cookies=cookies, timeout=10) as fresh:
            seen.add(fresh.get(path).status_code)
    return seen


def audit_events(gateway: Gateway, event: str) -> int:
    count = 0
    for line in gateway.log().splitlines():
        if line.startswith("{"):
            try:
                count += json.loads(line).get("event") == event
            except ValueError:
                continue
    return count


def test_good_edit_then_broken_save_leaves_every_worker_on_one_version(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=BASE, users={"lee": "staff"},
                                    settings={"server": {"workers": 2}, **OPERATOR})
    policies = gateway.directory / "policies"
    with gateway.client() as lee:
        assert sign_in(lee, "lee").status_code == 303
        cookies = lee.cookies
    start_versions = versions(gateway)
    assert len(start_versions) == 1

    rng = random.Random(13)
    for round_ in range(4):
        roles = "[admin, staff]" if round_ % 2 == 0 else "[admin]"
        (policies / "main.yaml").write_text(BASE.replace("[admin]", roles))
        time.sleep(rng.uniform(0.05, 0.2))  # the autosave's gap: part of the attack, not a wait
        (policies / "main.yaml").write_text(BROKEN)

        def rejected_everywhere() -> bool:
            bodies = readyz_everywhere(gateway)
            return all(not body["ready"] and any("main.yaml:3" in p for p in body["problems"]) for body in bodies)

        wait_until(rejected_everywhere, "the broken save rejected on every worker", timeout=RELOAD_DEADLINE)
        seen = versions(gateway)
        assert len(seen) == 1, f"round {round_}: workers disagree: {seen}"
        statuses = answers(gateway, cookies, "/admin/x")
        assert len(statuses) == 1, f"round {round_}: the same request got {statuses}"
        assert statuses <= {200, 403}

    # Fixed: every worker on the new version, and `gateway policy check` names the same one.
    (policies / "main.yaml").write_text(BASE.replace("[admin]", "[admin, staff]"))
    check = gateway.cli("policy", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    shown = [line.split(":", 1)[1].strip() for line in check.stdout.splitlines() if line.startswith("policy version:")]
    assert len(shown) == 1 and len(shown[0]) >= 12
    wait_until(lambda: versions(gateway) == {shown[0]}, "every worker on the fixed version", timeout=RELOAD_DEADLINE)
    assert answers(gateway, cookies, "/admin/x") == {200}
    with httpx.Client(base_url=gateway.url, timeout=10) as scraper:
        metrics = scraper.get("/.gateway/metrics").text
    assert f'gateway_policy_info{{version="{shown[0]}"}} 1.0' in metrics


def test_one_reload_and_one_rejection_are_audited_once(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(policy=BASE, users={"lee": "staff"},
                                    settings={"server": {"workers": 2}, **OPERATOR})
    policies = gateway.directory / "policies"
    wait_until(lambda: len(versions(gateway)) == 1, "both workers serving")
    first = versions(gateway)

    (policies / "main.yaml").write_text(BASE.replace("[admin]", "[admin, staff]"))
    wait_until(lambda: len(versions(gateway) - first) == 1, "the edit on every worker", timeout=RELOAD_DEADLINE)
    wait_until(lambda: audit_events(gateway, "policy.reloaded") >= 1, "the reload audited", timeout=RELOAD_DEADLINE)

    (policies / "extra.yaml").write_text(BROKEN)
    wait_until(lambda: audit_events(gateway, "policy.rejected") >= 1, "the rejection audited", timeout=RELOAD_DEADLINE)
    wait_until(lambda: all(not body["ready"] for body in readyz_everywhere(gateway)), "readyz not ready everywhere",
               timeout=RELOAD_DEADLINE)

    # The denial names the version in force.
    with gateway.client() as lee:
        assert sign_in(lee, "lee").status_code == 303
        (version,) = versions(gateway)
        (policies / "extra.yaml").write_text('rules:\n  - paths: ["/secret/**"]\n    deny: true\n')
        wait_until(lambda: versions(gateway) not in ({version}, set()) and len(versions(gateway)) == 1,
                   "the fixed file on every worker", timeout=RELOAD_DEADLINE)
        (now,) = versions(gateway)
        assert lee.get("/secret/x").status_code == 403

    def denial_with_version() -> bool:
        for line in gateway.log().splitlines():
            if line.startswith("{") and '"access.denied"' in line and json.loads(line).get("policy") == now:
                return True
        return False

    wait_until(denial_with_version, "the denial's audit line naming the policy version", timeout=RELOAD_DEADLINE)
    gateway.stop()
    assert audit_events(gateway, "policy.reloaded") == 2, gateway.log()
    assert audit_events(gateway, "policy.rejected") == 1, gateway.log()
