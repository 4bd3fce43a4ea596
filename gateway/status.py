"""Liveness, readiness and metrics: /.gateway/healthz, /.gateway/readyz and /.gateway/metrics."""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response, jsonify, request

from gateway.auth.user import request_client
from gateway.errors import MethodNotAllowed, NotFound
from gateway.metrics import CONTENT_TYPE
from gateway.proxy.headers import is_trusted
from gateway.services import current_services

bp = Blueprint("status", __name__)


@bp.get("/.gateway/healthz")
async def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/.gateway/readyz")
async def readyz() -> Response:
    services = current_services()
    problems = list(services.policy.problems)
    if not await services.store.ping():
        problems.append("store: not reachable")
    response = jsonify({"status": "not ready" if problems else "ready", "problems": problems})
    response.status_code = 503 if problems else 200
    return response


@bp.route("/.gateway/metrics", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def metrics() -> Response:
    services = current_services()
    # The client as the gateway judges it everywhere (behind trusted proxies, the real client).
    # Anyone else is told there is no such page, whatever the method (a 405 would say it exists).
    if not is_trusted(request_client(), services.settings.metrics.allow):
        raise NotFound()
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed()
    live = await services.sessions.count_live()
    # In multiprocess mode the scrape reads every worker's files: off the event loop.
    body = await asyncio.to_thread(services.metrics.render, live)
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
