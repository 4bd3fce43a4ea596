"""Liveness and readiness: /.gateway/healthz and /.gateway/readyz."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

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
