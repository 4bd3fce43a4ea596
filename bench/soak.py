"""Soak mode of the proxy benchmark (``proxy_bench.py --soak SECONDS``): a signed-in load on a
gateway with two workers while users, sessions and the policy change every few seconds, none of
which concerns the loaded session. Every answer other than 2xx is reported with its cause; a
healthy gateway shows none, however long it runs (the idle-clock refresh, last-use writes, audit
and throttle writes, policy reloads and cache invalidations all happen meanwhile).
"""

from __future__ import annotations

import asyncio
import collections
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

PYTHON = sys.executable
LOAD_CONNECTIONS = 16
CHURN_EVERY = 2.0  # seconds between two changes
PASSWORD = "measured load passphrase 42"


def _cli(config: Path, *args: str, stdin: str | None = None) -> None:
    subprocess.run([PYTHON, "-m", "gateway", "--config", str(config), *args], input=stdin and stdin.encode(),
                   capture_output=True, check=False, timeout=60)


def _sign_in(base: str, user: str, user_agent: str) -> httpx.Client:
    client = httpx.Client(base_url=base, headers={"User-Agent": user_agent}, timeout=30)
    form = client.get("/.gateway/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    client.post("/.gateway/login", data={"username": user, "password": PASSWORD, "csrf_token": token, "next": "/"})
    return client


def churn(config: Path, base: str, policies: Path, stop: threading.Event, done: list[str]) -> None:
    """Every CHURN_EVERY seconds, one change that must not affect the loaded session."""
    step = 0
    while not stop.wait(CHURN_EVERY):
        name = f"churn{step % 5}"
        kind = step % 7
        if kind == 0:
            _cli(config, "users", "add", name, "--roles", "staff", "--password-stdin", stdin=PASSWORD + "\n")
        elif kind == 1:
            _sign_in(base, name, "soak-churn/1").close()
        elif kind == 2:
            _cli(config, "sessions", "revoke", "--user", name)
        elif kind == 3:
            _cli(config, "users", "set-roles", "bench", "staff,reader" if step % 2 else "staff")
        elif kind == 4:
            _cli(config, "users", "disable", name)
        elif kind == 5:
            # A policy edit: a new rule elsewhere, then the file rewritten (a reload on every worker).
            (policies / "extra.yaml").write_text(f'rules:\n  - paths: ["/elsewhere-{step}/**"]\n    deny: true\n')
        else:
            _cli(config, "users", "delete", name)
        done.append(f"{kind}")
        step += 1


async def load(base: str, cookie: str, user_agent: str, seconds: float,
               failures: collections.Counter[str], examples: dict[str, str]) -> int:
    limits = httpx.Limits(max_connections=LOAD_CONNECTIONS, max_keepalive_connections=LOAD_CONNECTIONS)
    deadline = time.monotonic() + seconds
    count = 0
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30,
                                 headers={"Cookie": cookie, "User-Agent": user_agent}) as client:
        async def one() -> None:
            nonlocal count
            while time.monotonic() < deadline:
                try:
                    response = await client.get("/page")
                except httpx.HTTPError as exc:
                    cause = f"client error {type(exc).__name__}"
                    failures[cause] += 1
                    examples.setdefault(cause, str(exc)[:200])
                    continue
                count += 1
                if not 200 <= response.status_code < 300:
                    cause = f"status {response.status_code}"
                    failures[cause] += 1
                    examples.setdefault(cause, response.text[:200])

        await asyncio.gather(*(one() for _ in range(LOAD_CONNECTIONS)))
    return count


def soak(config: Path, base: str, cookie: str, user_agent: str, seconds: float, log: Path) -> bool:
    """Run the soak; print what it saw; True when every answer was 2xx."""
    policies = config.parent / "policies"
    stop = threading.Event()
    changes: list[str] = []
    churner = threading.Thread(target=churn, args=(config, base, policies, stop, changes))
    churner.start()
    failures: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    started = time.monotonic()
    try:
        count = asyncio.run(load(base, cookie, user_agent, seconds, failures, examples))
    finally:
        stop.set()
        churner.join()
    took = time.monotonic() - started
    print(f"\nsoak: {took:.0f} s of signed-in GETs on 2 workers, {LOAD_CONNECTIONS} connections: {count:,} answers "
          f"({count / took:,.0f}/s), {len(changes)} changes to users, sessions and policy meanwhile")
    if not failures:
        print("soak: every answer was 2xx")
    for cause, number in failures.most_common():
        print(f"soak: {number} x {cause}: {examples[cause]!r}")
    problems = [line for line in log.read_text(errors="replace").splitlines()
                if '"level": "warning"' in line or '"level": "error"' in line]
    print(f"soak: {len(problems)} warning/error lines in the gateway's log")
    for line in problems[:20]:
        print("  " + line[:300])
    return not failures
