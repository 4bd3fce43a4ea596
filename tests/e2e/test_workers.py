"""Several worker processes: one gateway to the browser, whichever process answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import USER_AGENT, Gateway, sign_in, wait_until, within_a_second


def worker_pids(gateway: Gateway) -> list[int]:
    assert gateway.process is not None
    found: list[int] = []
    pending = [gateway.process.pid]
    while pending:  # uvicorn's supervisor -> worker processes (there may be a spawn helper between)
        pid = pending.pop()
        try:
            children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            continue
        pending.extend(children)
        found.extend(c for c in children if "gateway" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")
                     or "multiprocessing" in Path(f"/proc/{c}/cmdline").read_text(errors="replace"))
    return found


def fresh_connection_status(gateway: Gateway, cookie: str, path: str = "/page") -> int:
    # A new connection per request: the kernel hands connections to the workers in turn.
    headers = {"Cookie": f"gateway_session={cookie}", "User-Agent": USER_AGENT.decode()}
    return httpx.get(gateway.url + path, headers=headers, timeout=10).status_code


def test_two_workers_share_sessions_and_end_them_together(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(settings={"server": {"workers": 2}}, users={"ivy": "staff", "jon": "admin"})
    wait_until(lambda: len(worker_pids(gateway)) >= 2, "two worker processes")
    with gateway.client() as ivy:
        assert sign_in(ivy, "ivy").status_code == 303
        cookie = ivy.cookies["gateway_session"]
        assert all(fresh_connection_status(gateway, cookie) == 200 for _ in range(20))

        form = ivy.get("/.gateway/logout").text
        token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        assert ivy.post("/.gateway/logout", data={"csrf_token": token}).status_code == 200
        assert "gateway_session" not in ivy.cookies
        # The copied cookie is dead in every worker (each caches session rows for a moment).
        within_a_second(lambda: all(fresh_connection_status(gateway, cookie) == 401 for _ in range(10)), "a sign-out")

    with gateway.client() as jon:
        assert sign_in(jon, "jon").status_code == 303
        cookie = jon.cookies["gateway_session"]
        assert all(fresh_connection_status(gateway, cookie, "/admin/x") == 200 for _ in range(10))
        assert gateway.cli("users", "set-roles", "jon", "staff").returncode == 0
        within_a_second(lambda: all(fresh_connection_status(gateway, cookie, "/admin/x") == 403 for _ in range(10)),
                        "a role change")
        assert gateway.cli("sessions", "revoke", "--user", "jon").returncode == 0
        within_a_second(lambda: all(fresh_connection_status(gateway, cookie) == 401 for _ in range(10)), "a revocation")


def test_workers_stop_with_the_gateway(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(settings={"server": {"workers": 2}})
    wait_until(lambda: len(worker_pids(gateway)) >= 2, "two worker processes")
    workers = worker_pids(gateway)
    gateway.stop()
    assert gateway.process is not None and gateway.process.returncode is not None

    def running(pid: int) -> bool:
        try:
            return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
        except FileNotFoundError:
            return False

    # Polled: on a busy machine a worker may take a moment longer than its parent to finish exiting.
    wait_until(lambda: not any(running(pid) for pid in workers), "the workers exiting", timeout=15)
