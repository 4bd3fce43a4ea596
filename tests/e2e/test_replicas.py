"""Many machines: three gateway replicas sharing PostgreSQL users and Redis sessions, behind a real
nginx load balancer, as the README's "Scaling out" section deploys them (its nginx config is the one
used here). Everything is real: nginx, redis-server, PostgreSQL, the gateway processes, wrk.

The servers are this module's own (tests/servers.py): the outage tests stop and start them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.harness import (
    PASSWORD,
    USER_AGENT,
    Gateway,
    Upstream,
    csrf_token,
    free_port,
    port_open,
    sign_in,
    wait_until,
    within_a_second,
    write_gateway,
)
from tests.servers import PostgresServer, RedisServer

REPLICAS = 3
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# The README's "Scaling out" config, with the ports filled in ({servers}, {port}).
NGINX_CONF = """
events {{ worker_connections 1024; }}
http {{
    access_log off;
    upstream gateway {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header Forwarded "";
            proxy_set_header X-Forwarded-Prefix "";
            proxy_buffering off;
            # A replica that is down (connection refused or reset before an answer): the next one
            # answers, for methods that may be repeated.
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


@dataclass
class Farm:
    replicas: list[Gateway]
    nginx_port: int
    nginx: subprocess.Popen[bytes]
    postgres: PostgresServer
    redis: RedisServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def start_replica(self, replica: Gateway) -> None:
        replica.start(new_session=True)  # killed as a group: supervisor and workers, as a machine going down


def _nginx(folder: Path, ports: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in ports)
    conf = NGINX_CONF.format(servers=servers, port=port)
    if os.geteuid() == 0:
        conf = "user root;\n" + conf  # as root, nginx's workers would otherwise run as nobody
    conf = f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n" + conf
    (folder / "nginx.conf").write_text(conf)
    process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_until(lambda: port_open(port), "nginx")
    return process, port


@pytest.fixture(scope="module")
def farm(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    folder = tmp_path_factory.mktemp("farm")
    with PostgresServer.running() as postgres, RedisServer.running() as redis:
        store = {"users": postgres.create_database(), "sessions": redis.url()}
        settings: dict[str, dict[str, object]] = {"store": store, "server": {"trusted_proxies": ["127.0.0.1"]}}
        replicas = [write_gateway(folder / f"replica{i}", upstream.url, settings=settings)
                    for i in range(REPLICAS)]
        secret = (replicas[0].directory / "var" / "secret.key").read_text()
        for replica in replicas[1:]:  # every replica signs cookies with the same key
            (replica.directory / "var" / "secret.key").write_text(secret)
        replicas[0].add_users({"alice": "admin", "bob": "staff", "erin": "staff", "frank": "staff"})
        nginx, port = _nginx(folder / "nginx", [r.port for r in replicas])
        result = Farm(replicas, port, nginx, postgres, redis)
        try:
            for replica in replicas:
                result.start_replica(replica)
            yield result
        finally:
            nginx.terminate()
            nginx.wait(10)
            for replica in replicas:
                _kill(replica, signal.SIGTERM)


def _kill(replica: Gateway, how: signal.Signals) -> None:
    if replica.process is not None and replica.process.poll() is None:
        os.killpg(replica.process.pid, how)
        replica.process.wait(15)


@contextlib.contextmanager
def _signed_in(url: str, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        response = sign_in(client, user)
        assert response.status_code == 303, response.text
        yield client


def _status(url: str, cookies: httpx.Cookies, path: str = "/page") -> int:
    with httpx.Client(base_url=url, cookies=cookies, follow_redirects=False, timeout=10) as client:
        return client.get(path).status_code


def test_a_sign_in_through_the_balancer_is_known_to_every_replica(farm: Farm) -> None:
    with _signed_in(farm.url, "alice") as alice:
        for replica in farm.replicas:
            assert _status(replica.url, alice.cookies) == 200, replica.url
            assert _status(replica.url, alice.cookies, "/admin/x") == 200


def test_a_sign_out_on_one_replica_is_in_force_on_every_replica_within_a_second(farm: Farm) -> None:
    with _signed_in(farm.url, "bob") as bob:
        cookies = httpx.Cookies(bob.cookies)
        for replica in farm.replicas:
            assert _status(replica.url, cookies) == 200  # each replica has it cached now
        with httpx.Client(base_url=farm.replicas[0].url, cookies=cookies, timeout=10) as there:
            form = there.get("/.gateway/logout")
            assert there.post("/.gateway/logout", data={"csrf_token": csrf_token(form.text)}).status_code == 200
        for replica in farm.replicas:
            within_a_second(lambda r=replica: _status(r.url, cookies) in (302, 401), f"sign-out on {replica.url}")


def test_disabling_a_user_ends_every_session_everywhere(farm: Farm) -> None:
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(_signed_in(replica.url, "erin")) for replica in farm.replicas]
        for client in sessions:
            for replica in farm.replicas:
                assert _status(replica.url, client.cookies) == 200
        result = farm.replicas[1].cli("users", "disable", "erin")
        assert result.returncode == 0, result.stderr
        for client in sessions:
            for replica in farm.replicas:
                within_a_second(lambda r=replica, c=client: _status(r.url, c.cookies) in (302, 401), "disable")
    farm.replicas[1].cli("users", "enable", "erin")


def _guess(url: str, user: str, password: str) -> int:
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        form = client.get("/.gateway/login")
        return client.post("/.gateway/login", data={"username": user, "password": password,
                                                    "csrf_token": csrf_token(form.text), "next": "/"}).status_code


def test_the_account_throttle_counts_guesses_spread_over_replicas(farm: Farm) -> None:
    # Three wrong passwords are free per account (auth/throttle.py ACCOUNT); one on each replica.
    statuses = [_guess(replica.url, "frank", "wrong guess") for replica in farm.replicas]
    assert statuses == [401, 401, 401]
    # The fourth, on any replica, waits: even with the right password, it is not looked at.
    for replica in farm.replicas:
        assert _guess(replica.url, "frank", PASSWORD) == 429, replica.url


WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_REQUESTS = re.compile(r"(\d+) requests in")


def test_killing_a_replica_under_load_fails_only_what_it_had_in_flight(farm: Farm) -> None:
    wrk = shutil.which("wrk")
    assert wrk is not None, "wrk is not installed (Debian package 'wrk'; .ci/run installs it)"
    victim = farm.replicas[2]
    connections = 8
    with _signed_in(farm.url, "alice") as alice:
        cookie = "; ".join(f"{name}={value}" for name, value in alice.cookies.items())
        load = subprocess.Popen(
            [wrk, "-t1", f"-c{connections}", "-d4s", "-H", f"Cookie: {cookie}", "-H",
             f"User-Agent: {USER_AGENT.decode()}", f"{farm.url}/page"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # Kill it once it is serving its share of the load (its access lines show signed-in GETs).
            wait_until(lambda: victim.log().count('"/page"') >= 20, "the victim serving the load")
            _kill(victim, signal.SIGKILL)
            output, _ = load.communicate(timeout=30)
        finally:
            if load.poll() is None:
                load.kill()
        requests = int(WRK_REQUESTS.search(output).group(1))  # type: ignore[union-attr]
        failed = int(m.group(1)) if (m := WRK_NON_2XX.search(output)) else 0
        errors = sum(int(n) for n in m.groups()) if (m := WRK_ERRORS.search(output)) else 0
        assert requests > 100, output
        # At most what was in flight on the killed replica (nginx retries a GET refused or cut before
        # an answer on another replica, so usually none).
        assert failed + errors <= connections, output
        for replica in farm.replicas[:2]:
            assert _status(replica.url, alice.cookies) == 200
    farm.start_replica(victim)  # back for the tests after this one
    with _signed_in(farm.url, "alice") as alice:
        assert _status(victim.url, alice.cookies) == 200


def test_damaged_redis_data_is_a_503_never_a_500_or_a_session(farm: Farm) -> None:
    # A key the gateway writes on every change, replaced by the wrong type (an operator's mistake,
    # another program sharing the database): sign-ins fail closed with 503 and no session.
    key = "gateway:changes"
    damage = redis.Redis(port=farm.redis.port)
    saved = damage.dump(key)
    damage.delete(key)
    damage.set(key, "not a stream")
    try:
        for replica in farm.replicas:
            with httpx.Client(base_url=replica.url, follow_redirects=False, timeout=30) as client:
                response = sign_in(client, "alice")
                assert response.status_code == 503 and "gateway_session" not in response.cookies, replica.url
    finally:
        damage.delete(key)
        if saved is not None:
            damage.restore(key, 0, saved)
        damage.close()
    with _signed_in(farm.url, "alice") as alice:  # and it all works again once the key is put right
        assert _status(farm.url, alice.cookies) == 200


def _ready(url: str) -> int:
    return httpx.get(url + "/.gateway/readyz", timeout=10).status_code


def test_stores_down_fail_closed_and_recover_without_a_restart(farm: Farm, upstream: Upstream) -> None:
    replica = farm.replicas[0]
    with _signed_in(farm.url, "alice") as alice:
        assert _status(replica.url, alice.cookies) == 200
        # Redis (sessions) stops: nothing is forwarded on a guess, every replica says it is not ready.
        with _stopped(farm, farm.redis, alice.cookies, "Redis"):
            assert _status(farm.url, alice.cookies) == 503
        # Redis is back (empty: it keeps nothing on disk): a new sign-in works on every replica.
        wait_until(lambda: _ready(replica.url) == 200, "readyz after Redis returned", timeout=10)
        assert _status(replica.url, alice.cookies) in (302, 401)  # that session died with Redis's memory
    with _signed_in(farm.url, "alice") as alice:
        for each in farm.replicas:
            assert _status(each.url, alice.cookies) == 200
        with _stopped(farm, farm.postgres, alice.cookies, "PostgreSQL"):
            pass
        # PostgreSQL keeps its data: the same session works again, with no restart.
        for each in farm.replicas:
            wait_until(lambda e=each: _status(e.url, alice.cookies) == 200, "recovery after PostgreSQL", timeout=10)


@contextlib.contextmanager
def _stopped(farm: Farm, server: PostgresServer | RedisServer, cookies: httpx.Cookies, name: str) -> Iterator[None]:
    """``server`` stopped: every replica answers the signed-in request 503 within a second and is not
    ready; started again on the way out."""
    server.stop()
    try:
        for each in farm.replicas:
            within_a_second(lambda e=each: _status(e.url, cookies) == 503, f"503 without {name}")
            assert _ready(each.url) == 503
        yield
    finally:
        server.start()
