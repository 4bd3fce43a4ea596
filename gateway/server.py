"""Running the gateway under an ASGI server (Uvicorn)."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.config import Settings


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
        "access_log": False,
        "log_level": settings.log.level,
        "timeout_graceful_shutdown": 10,
    }
    if settings.server.tls:
        # The files were checked (both given, readable, a matching pair) when the settings loaded.
        options["ssl_certfile"] = str(settings.server.certfile)
        options["ssl_keyfile"] = str(settings.server.keyfile)
    return options


def serve(settings: Settings) -> None:
    app = create_app(settings)
    scheme = "https" if settings.server.tls else "http"
    logging.getLogger("gateway").info(
        "gateway listening on %s://%s:%d, forwarding to %s", scheme, settings.server.host, settings.server.port,
        settings.upstream.url,
    )
    uvicorn.Server(uvicorn.Config(app, **server_options(settings))).run()
