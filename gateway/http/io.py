"""ASGI I/O every way in shares: the ``send`` that records what an answer was in its access line."""

from __future__ import annotations

from gateway.http.headers import REQUEST_ID
from gateway.http.types import Message, Send
from gateway.observe.access import Exchange

__all__ = ["recording_send"]


def recording_send(send: Send, exchange: Exchange) -> Send:
    """``send`` for the Quart pages and the WebSocket relay (not the proxy path, which records
    itself): notes the status and the bytes sent, and adds X-Request-ID to the response head."""
    tagged = (REQUEST_ID, exchange.request_id)

    async def recorded(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body" or kind == "websocket.http.response.body":
            exchange.bytes += len(message.get("body", b""))
        elif kind == "websocket.send":
            text = message.get("text")
            exchange.bytes += len(text.encode()) if text is not None else len(message.get("bytes") or b"")
        elif kind == "http.response.start" or kind == "websocket.http.response.start" or kind == "websocket.accept":
            exchange.status = message.get("status", 101)
            message = dict(message, headers=[*message.get("headers", ()), tagged])
        elif kind == "websocket.close" and exchange.status == 0:
            exchange.status = 403  # closed before accept: the server answers the handshake with 403
        await send(message)

    return recorded
