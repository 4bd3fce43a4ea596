"""Running the gateway under an ASGI server (Uvicorn), in one process or several.

Uvicorn (with httptools and uvloop) was chosen by measurement: see bench/proxy_bench.py and the
README's "Performance". Several workers share one listening socket;
each builds its own app (its own store connection, session cache). They agree through the store's
change feed (store/feed.py), and on the policy through the supervisor: it alone watches the policy
folder and publishes the accepted version, which every worker follows (policy/channel.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from gateway.asgi import Gateway
from gateway.config import CONFIG_ENV, Settings, load_settings
from gateway.http.guard import protocol_options
from gateway.observe.logs import configure_logging as configure_log_lines
from gateway.observe.metrics import shared_metrics_dir
from gateway.policy import Policy
from gateway.policy.channel import CHANNEL_ENV
from gateway.proxy.headers import transport_security_headers

WORKER_FACTORY = "gateway.server:worker_app"


class _UvicornNoise(logging.Filter):
    """Drops three kinds of Uvicorn line.

    A spurious ERROR: Uvicorn's websockets protocol logs "returned without completing handshake"
    after every handshake refused through the websocket.http.response extension, which is how the
    WebSocket relay answers 401/403 (Kludex/uvicorn#3138, open). The relay always accepts, refuses
    or sees the client leave, so here the line never means anything else.

    Its own access line for each WebSocket handshake ('client - "WebSocket /path?query" [accepted]'),
    which ignores access_log=False: the gateway writes its own (observe/access.py), and Uvicorn's
    carries the query string, which may hold a secret the access log promises never to write.

    "Unsupported upgrade request.": the guarded protocol (http/guard.py) has already
    refused such a request or served it as plain HTTP/1.1; ``curl --http2`` over http asks for one
    on every request, and an operator can do nothing about it."""

    QUIET = frozenset({"ASGI callable returned without completing handshake.", "Unsupported upgrade request."})

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"'):
            return False
        return record.getMessage() not in self.QUIET


def configure_logging(settings: Settings) -> None:
    configure_log_lines(settings)
    logging.getLogger("uvicorn.error").addFilter(_UvicornNoise())


def guarded_protocol(settings: Settings) -> dict[str, Any]:
    """The HTTP protocol with the request-head limits, configured in this process (class attributes
    do not travel to worker processes: each calls this again, in worker_app)."""
    return protocol_options(settings.server.max_header_size, settings.server.header_timeout,
                            transport_security_headers(settings.server))


def worker_app() -> Gateway:
    """The app of one worker process: settings are read again from the file and environment the
    parent read (``serve`` puts the config path into GATEWAY_CONFIG; the environment is inherited)."""
    from gateway.app import create_app

    settings = load_settings(require_secret=True)
    configure_logging(settings)
    guarded_protocol(settings)
    channel = os.environ.get(CHANNEL_ENV)
    return create_app(settings, policy_channel=Path(channel) if channel else None)


RESTART_FIRST, RESTART_LONGEST = 1.0, 30.0  # seconds before the policy watcher starts again


class PolicyPublisher:
    """The supervisor's policy watcher (several workers): one thread with its own event loop that
    watches the folder, decides each edit once (logged, audited and counted once), and publishes
    the accepted version to the workers through a private channel folder."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        from gateway.policy.channel import Keeper, PolicyChannel

        self._settings = settings
        self.directory = Path(tempfile.mkdtemp(prefix="gateway-policy-"))  # 0700
        self._keeper = Keeper(policy, origin=str(settings.policy.dir))
        self._channel = PolicyChannel(self.directory)
        self._channel.create(self._keeper.snapshot())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="policy-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    def stop(self) -> None:
        self._stopping.set()
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        self._channel.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _main(self) -> None:
        # A watcher that fails (its store unreachable at that moment, a bug) starts again by itself,
        # backing off: the workers keep the accepted policy meanwhile, and edits apply once it runs.
        delay = RESTART_FIRST
        while not self._stopping.is_set():
            try:
                asyncio.run(self._run())
                return
            except Exception:
                logging.getLogger("gateway").exception(
                    "the policy watcher stopped; edits are not applied until it starts again (in %g s)", delay)
            finally:
                self._ready.set()
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, RESTART_LONGEST)

    async def _run(self) -> None:
        from gateway.app import PolicyReport
        from gateway.observe import Audit, Metrics
        from gateway.policy import PolicyError
        from gateway.policy.watcher import PolicyWatcher
        from gateway.store import open_stores

        settings = self._settings
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        stores = open_stores(settings.store, cache_ttl=settings.session.cache_ttl)
        await stores.open()
        audit = Audit(stores.audit)
        audit.start()
        metrics = Metrics()
        report = PolicyReport(audit, metrics)
        keeper, channel = self._keeper, self._channel

        def loaded(policy: Policy) -> None:
            snapshot = keeper.accepted(policy)
            if snapshot is not None:
                channel.publish(snapshot)
                report.accepted(policy)

        def failed(error: PolicyError) -> None:
            snapshot = keeper.rejected(error)
            if snapshot is not None:
                channel.publish(snapshot)
                report.rejected(error, keeper.state.policy)

        watcher = PolicyWatcher(settings.policy.dir, case_insensitive=settings.policy.case_insensitive,
                                on_loaded=loaded, on_failed=failed, compare_first=True)
        report.started(keeper.state.policy)
        watcher.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await watcher.stop()
            await audit.stop()
            await stores.close()
            metrics.close()


@contextlib.contextmanager
def published_policy(settings: Settings, policy: Policy) -> Iterator[None]:
    """For the supervisor of several workers: the policy channel, named in the workers' environment."""
    publisher = PolicyPublisher(settings, policy)
    os.environ[CHANNEL_ENV] = str(publisher.directory)
    try:
        publisher.start()
        yield
    finally:
        os.environ.pop(CHANNEL_ENV, None)
        publisher.stop()


def server_options(settings: Settings) -> dict[str, Any]:
    """What the ASGI server needs from the settings, in one place so the server can change."""
    options: dict[str, Any] = {
        "host": settings.server.host,
        "port": settings.server.port,
        "lifespan": "on",
        # Uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1; the gateway decides that
        # itself from [server] trusted_proxies.
        "proxy_headers": False,
        "server_header": False,
        "date_header": True,
        "access_log": False,  # the gateway writes its own (observe/access.py)
        # Uvicorn's lines go through the gateway's handler (configure_logging), in [log] format.
        "log_config": None,
        "log_level": settings.log.level,
        "timeout_graceful_shutdown": 10,
        # The same limit as the relay's upstream client (gateway/proxy/websocket.py), so a message one
        # leg accepts is never refused by the other.
        "ws_max_size": settings.upstream.websocket_max_message,
        # No permessage-deflate: a message of ~15 KB on the wire inflates to 15 MiB (1,000 to 1), and
        # the server inflates every message in one read before pausing, so 24 anonymous sockets took
        # the gateway to 3.3 GiB and stopped its event loop for seconds (issue 10). Compressed frames
        # from a client that sends them anyway are a protocol error (1002), never inflated.
        "ws_per_message_deflate": False,
        # Named, not "auto", because the memory bounds rest on its flow control: it pauses reading
        # as soon as one message waits for the relay. ws_max_queue bounds the same (in messages) for
        # Uvicorn's other websockets implementation; Uvicorn's default is 32 messages of ws_max_size.
        "ws": "websockets-sansio",
        "ws_max_queue": 1,
        # Refuse new requests (503) beyond this many connections and requests at once, rather than
        # run out of file descriptors (see raise_open_files_limit).
        "limit_concurrency": settings.server.max_clients,
        **guarded_protocol(settings),
    }
    if settings.server.tls:
        # The files were checked (both given, readable, a matching pair) when the settings loaded.
        options["ssl_certfile"] = str(settings.server.certfile)
        options["ssl_keyfile"] = str(settings.server.keyfile)
    return options


def raise_open_files_limit(wanted: int) -> int:
    """Lift the soft limit on open files towards the hard one (often 1,024 against 1,048,576): every
    client connection and every upstream connection is a file descriptor. Returns the limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, wanted))
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def serve(settings: Settings, policy: Policy | None = None) -> None:
    """Run until stopped. ``policy``: already loaded by the caller (else loaded here); with several
    workers the supervisor keeps it and publishes each accepted edit to them (PolicyPublisher)."""
    logging.getLogger("gateway").info(
        "gateway listening on %s://%s:%d with %d worker(s), forwarding to %s", "https" if settings.server.tls else "http",
        settings.server.host, settings.server.port, settings.server.workers, settings.upstream.url,
    )
    # Client connections, the upstream pool, and some for files, the store and logs.
    wanted = settings.server.max_clients + settings.upstream.max_connections + 256
    limit = raise_open_files_limit(wanted)
    if limit != -1 and limit < wanted:
        logging.getLogger("gateway").warning(
            "only %d open files allowed (ulimit -n); server.max_clients = %d wants %d: lower it or raise the limit",
            limit, settings.server.max_clients, wanted,
        )
    options = server_options(settings)
    if policy is None:
        from gateway.policy import load_policy

        policy = load_policy(settings.policy.dir, case_insensitive=settings.policy.case_insensitive)
    if settings.server.workers == 1:
        from gateway.app import create_app

        uvicorn.Server(uvicorn.Config(create_app(settings, policy=policy), **options)).run()
        return
    os.environ[CONFIG_ENV] = str(settings.config_file)
    # The workers' metric files go to one private folder, so any worker can answer a scrape for all.
    # The policy: decided once, here, and followed by every worker (policy/channel.py).
    with shared_metrics_dir(), published_policy(settings, policy):
        uvicorn.run(WORKER_FACTORY, factory=True, workers=settings.server.workers, **options)
