"""Running the gateway under an ASGI server (Uvicorn)."""

from __future__ import annotations

import logging

import uvicorn

from gateway.app import create_app
from gateway.config import Settings


class _RefusedHandshakeNoise(logging.Filter):
    """Drops one spurious ERROR: Uvicorn's websockets protocol logs "returned without completing
    handshake" after every handshake refused through the websocket.http.response extension, which
    is how the WebSocket relay answers 401/403 (Kludex/uvicorn#3138, open). The relay always accepts,
    refuses or sees the client leave, so here the line never means anything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


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
        # The same limit as the relay's upstream client (gateway/proxy/websocket.py), so a message one
        # leg accepts is never refused by the other.
        ws_max_size=settings.upstream.websocket_max_message,
    )
    logging.getLogger("uvicorn.error").addFilter(_RefusedHandshakeNoise())  # after Config set up logging
    uvicorn.Server(config).run()
