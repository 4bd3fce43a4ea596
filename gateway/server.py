"""Running the gateway under an ASGI server (Uvicorn)."""

from __future__ import annotations

import logging

import uvicorn

from gateway.app import create_app
from gateway.config import Settings


def serve(settings: Settings) -> None:
    app = create_app(settings)
    logging.getLogger("gateway").info(
        "gateway listening on http://%s:%d, forwarding to %s", settings.server.host, settings.server.port,
        settings.upstream.url,
    )
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        lifespan="on",
        # Uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1; the gateway decides that
        # itself from [server] trusted_proxies.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_level=settings.log.level,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
