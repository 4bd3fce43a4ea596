"""Prometheus metrics, correct whichever worker process answers the scrape.

With one worker the metrics live in a private registry. With several (``[server] workers``), the
parent ``serve`` process makes a private folder and names it in PROMETHEUS_MULTIPROC_DIR before
the workers start; prometheus_client then keeps every worker's values in memory-mapped files there,
and a scrape, answered by any one worker, adds them all up (``MultiProcessCollector``).

The hot path pays one dict lookup and one ``inc()`` per request: the counter child for each
(decision, status) pair is resolved once and kept. The live-session gauge is computed when
scraped, from the store every worker shares, so it is right whichever worker answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request decisions (the "decision" label). The policy's own outcomes, then what happens before or
# beside the policy: a target refused as malformed, a gateway page, a failure before any decision.
ALLOW, LOGIN, REAUTH, DENY = "allow", "login", "reauth", "deny"
BAD_REQUEST, GATEWAY_PAGE, ERROR = "bad_request", "gateway", "error"

SIGNIN_OUTCOMES = ("success", "failure", "throttled")
THROTTLED_FORMS = ("signin", "password_change")
# Loopback upstreams answer in about a millisecond: the low buckets are where the detail matters.
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """For the parent of several workers: a private folder (0700) for their metric files, named in
    the environment the workers inherit, removed when they have all stopped."""
    path = tempfile.mkdtemp(prefix="gateway-metrics-")  # mkdtemp makes it 0700
    previous = os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


class _LiveSessions:
    """The live-session gauge of one scrape (its value was counted just before)."""

    def __init__(self, count: int) -> None:
        self._count = count

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("gateway_sessions_live", "Sessions that would be accepted now (all workers).",
                                value=self._count)


class _PolicyInfo:
    """The version of the policy in force (every worker enforces the same one, so whichever answers
    the scrape tells the truth): compare it across machines and with `gateway policy check`."""

    def __init__(self, version: str) -> None:
        self._version = version

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("gateway_policy_info", "The policy in force: its version (a content hash).",
                                 labels=["version"])
        info.add_metric([self._version], 1)
        yield info


class _Registered:
    """Hands a scrape the metrics of this process's private registry (single-worker mode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


# How a proxied response ended, when not "complete" (see access.Exchange.ended).
ABORTED_ENDINGS = ("client_closed", "client_timeout", "upstream_timeout", "upstream_error")


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        # In multiprocess mode values go to the shared files; a registry would only hold this
        # process's share, so the metrics are registered nowhere and a scrape reads the files.
        registry = None if self.multiprocess else CollectorRegistry()
        self._registry = registry
        self.requests = Counter("gateway_requests", "Requests by decision and status (proxied, WebSocket handshakes "
                                "and the gateway's own pages).", ["decision", "status"], registry=registry)
        self.upstream_seconds = Histogram("gateway_upstream_response_seconds",
                                          "Time from sending a request upstream to its response head.",
                                          buckets=UPSTREAM_BUCKETS, registry=registry)
        signins = Counter("gateway_signins", "Sign-in attempts by outcome.", ["outcome"], registry=registry)
        throttled = Counter("gateway_throttled_attempts", "Password attempts refused by the throttle (429), by form.",
                            ["form"], registry=registry)
        reloads = Counter("gateway_policy_reloads", "Policy reloads by result (counted once per "
                          "gateway serve, by the process that watches the policy folder).",
                          ["result"], registry=registry)
        # livemin: 0 as soon as any live worker runs on a last good policy because the newest failed to load.
        self.policy_ok = Gauge("gateway_policy_loaded", "1 when the policy files on disk are the policy in force, "
                               "0 when the last reload failed.", registry=registry, multiprocess_mode="livemin")
        self.websockets_open = Gauge("gateway_websockets_open", "WebSocket connections open now.",
                                     registry=registry, multiprocess_mode="livesum")
        self.websockets = Counter("gateway_websockets", "WebSocket connections accepted.", registry=registry)
        aborted = Counter("gateway_aborted_responses", "Proxied responses cut off after their head was sent, by cause "
                          "(the client got a truncated body).", ["ended"], registry=registry)
        self.aborted = {ended: aborted.labels(ended) for ended in ABORTED_ENDINGS}
        self.websocket_memory = Gauge("gateway_websocket_memory_bytes", "Bytes of WebSocket messages being "
                                      "relayed now, counted against upstream.websocket_memory (per worker).",
                                      registry=registry, multiprocess_mode="livesum")
        self.websocket_memory_closes = Counter("gateway_websocket_memory_closes", "WebSockets closed with 1013 "
                                               "because a message did not fit in upstream.websocket_memory.",
                                               registry=registry)
        # Resolved once: every series exists (at 0) from the start, and counting is one lookup.
        self.signins = {outcome: signins.labels(outcome) for outcome in SIGNIN_OUTCOMES}
        self.throttled = {form: throttled.labels(form) for form in THROTTLED_FORMS}
        self.policy_reloads = {result: reloads.labels(result) for result in ("success", "failure")}
        self.policy_ok.set(1)
        self._requests: dict[tuple[str, int], Counter] = {}

    def count_request(self, decision: str, status: int) -> None:
        child = self._requests.get((decision, status))
        if child is None:
            # Few pairs ever occur (a handful of decisions, the statuses the app uses).
            child = self._requests[(decision, status)] = self.requests.labels(decision, str(status))
        child.inc()

    def policy_reloaded(self, ok: bool) -> None:
        """In the process that decided a reload (one per `gateway serve`)."""
        self.policy_reloads["success" if ok else "failure"].inc()
        self.policy_ok.set(1 if ok else 0)

    def policy_state(self, ok: bool) -> None:
        """In a worker that follows the deciding process: whether the newest edit was accepted."""
        self.policy_ok.set(1 if ok else 0)

    def render(self, live_sessions: int, policy_version: str = "") -> bytes:
        """The text exposition of one scrape (blocking file reads in multiprocess mode: run it in a thread)."""
        registry = CollectorRegistry(auto_describe=False)
        if self._registry is None:
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # the library leaves it untyped
        else:
            registry.register(_Registered(self._registry))
        registry.register(_LiveSessions(live_sessions))
        if policy_version:
            registry.register(_PolicyInfo(policy_version))
        return generate_latest(registry)

    def close(self) -> None:
        """At a worker's shutdown: its open-connection gauge and policy state stop counting."""
        if self.multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
