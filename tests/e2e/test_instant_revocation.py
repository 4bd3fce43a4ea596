"""One machine, instant (issue 13): a sign-out, a revocation, a disable or a role change made by any
process (a worker, the CLI) is in force on every worker before its answer or the command returns.
Real processes: a gateway with two workers, every request on a fresh connection (the kernel hands
them to both workers), each worker's session cache warm first."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.e2e.harness import USER_AGENT, Gateway, csrf_token, sign_in, wait_until
from tests.e2e.test_workers import worker_pids

REPLAYS = 20


def statuses(gateway: Gateway, cookie: str, path: str = "/page", *, parallel: bool = False) -> list[int]:
    """The status of REPLAYS requests with ``cookie``, each on a new connection."""
    headers = {"Cookie": f"gateway_session={cookie}", "User-Agent": USER_AGENT.decode()}

    def one(_: int) -> int:
        return httpx.get(gateway.url + path, headers=headers, timeout=10).status_code

    if not parallel:
        return [one(i) for i in range(REPLAYS)]
    with ThreadPoolExecutor(max_workers=REPLAYS) as pool:
        return list(pool.map(one, range(REPLAYS)))


def two_workers(make_gateway: Any) -> Gateway:
    gateway: Gateway = make_gateway(settings={"server": {"workers": 2}},
                                    users={"ivy": "staff", "jon": "admin", "kim": "staff", "lea": "admin"})
    wait_until(lambda: len(worker_pids(gateway)) >= 2, "two worker processes")
    return gateway


def test_a_sign_out_is_in_force_on_every_worker_when_it_returns(make_gateway: Any) -> None:
    gateway = two_workers(make_gateway)
    for parallel in (False, True):
        with gateway.client() as ivy:
            assert sign_in(ivy, "ivy").status_code == 303
            cookie = ivy.cookies["gateway_session"]
            assert statuses(gateway, cookie) == [200] * REPLAYS  # both workers have it cached now
            token = csrf_token(ivy.get("/.gateway/logout").text)
            assert ivy.post("/.gateway/logout", data={"csrf_token": token}).status_code == 200
            # At once, no wait: the copied cookie is dead in every worker.
            assert statuses(gateway, cookie, parallel=parallel) == [401] * REPLAYS


def test_cli_changes_are_in_force_on_every_worker_when_the_command_returns(make_gateway: Any) -> None:
    gateway = two_workers(make_gateway)
    with gateway.client() as jon, gateway.client() as kim, gateway.client() as lea:
        assert sign_in(jon, "jon").status_code == 303
        assert sign_in(kim, "kim").status_code == 303
        assert sign_in(lea, "lea").status_code == 303
        jon_cookie, kim_cookie, lea_cookie = (c.cookies["gateway_session"] for c in (jon, kim, lea))

        assert statuses(gateway, jon_cookie, "/admin/x") == [200] * REPLAYS
        assert gateway.cli("users", "set-roles", "jon", "staff").returncode == 0
        assert statuses(gateway, jon_cookie, "/admin/x") == [403] * REPLAYS
        assert statuses(gateway, jon_cookie) == [200] * REPLAYS
        assert gateway.cli("sessions", "revoke", "--user", "jon").returncode == 0
        assert statuses(gateway, jon_cookie) == [401] * REPLAYS

        assert statuses(gateway, kim_cookie) == [200] * REPLAYS
        assert gateway.cli("users", "disable", "kim").returncode == 0
        assert statuses(gateway, kim_cookie, parallel=True) == [401] * REPLAYS

        assert statuses(gateway, lea_cookie, "/admin/x") == [200] * REPLAYS
        assert gateway.cli("users", "delete", "lea").returncode == 0
        assert statuses(gateway, lea_cookie, "/admin/x", parallel=True) == [401] * REPLAYS
