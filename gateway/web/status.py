"""Liveness, readiness and metrics: /.gateway/healthz, /.gateway/readyz and /.gateway/metrics.

Who may see the gateway's insides (metrics, readiness details: policy file paths, error texts) is
decided in one place, ``on_allow_list``: the ``[metrics] allow`` list, judged on the real client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, jsonify, request

from gateway.errors import MethodNotAllowed, NotFound
from gateway.http import is_trusted
from gateway.observe.metrics import CONTENT_TYPE
from gateway.services import Services, current_services
from gateway.web.user import request_client

bp = Blueprint("status", __name__)

NO_STORE = {"Cache-Control": "no-store"}


def on_allow_list(services: Services) -> bool:
    """The client as the gateway judges it everywhere (behind trusted proxies, the real client) is
    in ``[metrics] allow``: it may read the metrics and readiness details."""
    return is_trusted(request_client(), services.settings.metrics.allow)


@bp.get("/.gateway/healthz")
async def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/.gateway/readyz")
async def readyz() -> Response:
    services = current_services()
    state = services.policy  # read once: problems and policy of one reload
    store_ok = await services.stores.ping()
    problems = list(state.problems)
    if not store_ok:
        problems.append("store: not reachable")
    ready = not problems
    body: dict[str, Any] = {"ready": ready}
    # Anyone (a load balancer) may learn ready or not; what is wrong names files, paths and error
    # texts, for the operator's addresses only.
    if on_allow_list(services):
        body.update({
            "status": "ready" if ready else "not ready",
            "store": "ok" if store_ok else "not reachable",
            "policy": {"version": state.policy.version, "rules": len(state.policy.rules),
                       "files": len(state.policy.files), "last_reload_failed": bool(state.problems)},
            "problems": problems,
        })
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    response.headers.update(NO_STORE)
    return response


@bp.route("/.gateway/metrics", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def metrics() -> Response:
    services = current_services()
    # Anyone else is told there is no such page, whatever the method (a 405 would say it exists).
    if not on_allow_list(services):
        raise NotFound()
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed()
    live = await services.sessions.count_live()
    # In multiprocess mode the scrape reads every worker's files: off the event loop.
    body = await asyncio.to_thread(services.metrics.render, live, services.policy.policy.version)
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE, **NO_STORE})
