#!/usr/bin/env python3
"""A small WebSocket upstream for the relay's end-to-end tests (the `websockets` server).

Every message is echoed back, except:
  "headers?"        -> JSON {"path": ..., "headers": [[name, value], ...]} of this socket's handshake
  "close CODE WHY"  -> the upstream closes the socket with CODE and reason WHY
  "chatter"         -> "chatter", then bursts of 50 messages of 4 KiB every 10 ms until the socket
                       closes (a kernel's output, a live feed): a client that stops reading backs them up

A socket whose path contains "/stall" is an app that stops reading: nothing is read from it until
a plain `GET /_resume`, so meanwhile whatever the gateway sends it waits in the gateway; after that
it echoes like the others.

Plain HTTP (a request that is not a handshake, such as `GET /_stats`) answers JSON counters: how
many handshakes arrived, how many sockets are open, and how each closed socket ended, by path (the
close code the gateway sent). A handshake for a path under /reject is refused with 403.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

SUBPROTOCOLS = ("chat.v1", "chat.v2")
stats: dict[str, Any] = {"handshakes": 0, "open": 0, "closed": {}}
stalled: set[ServerConnection] = set()


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/_resume":
        for stopped in stalled:
            stopped.transport.resume_reading()
        stalled.clear()
        return connection.respond(HTTPStatus.OK, "resumed\n")
    if request.path == "/_stats" or "Upgrade" not in request.headers:
        return connection.respond(HTTPStatus.OK, json.dumps(stats))
    stats["handshakes"] += 1
    if request.path.startswith("/reject"):
        return connection.respond(HTTPStatus.FORBIDDEN, "no\n")
    return None


def select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return next((Subprotocol(p) for p in offered if p in SUBPROTOCOLS), None)


async def handler(connection: ServerConnection) -> None:
    request = connection.request
    assert request is not None
    stats["open"] += 1
    try:
        if "/stall" in request.path:
            connection.transport.pause_reading()
            stalled.add(connection)
        async for message in connection:
            if message == "headers?":
                await connection.send(json.dumps({"path": request.path, "headers": list(request.headers.raw_items())}))
            elif isinstance(message, str) and message.startswith("send bytes "):
                await connection.send(b"y" * int(message.split()[2]))  # an app sending a message this big
            elif message == "chatter":
                chatter.add(asyncio.create_task(_chatter(connection)))
            elif isinstance(message, str) and message.startswith("close "):
                _, code, reason = message.split(" ", 2)
                await connection.close(int(code), reason)
            else:
                await connection.send(message)
    except ConnectionClosed:
        pass
    finally:
        stats["open"] -= 1
        received = connection.protocol.close_rcvd
        stats["closed"][request.path] = [received.code, received.reason] if received else None


chatter: set[asyncio.Task[None]] = set()
TICK = "t" * 4096


async def _chatter(connection: ServerConnection) -> None:
    try:
        await connection.send("chatter")
        while True:
            for _ in range(50):
                await connection.send(TICK)
            await asyncio.sleep(0.01)
    except ConnectionClosed:
        pass


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, process_request=process_request,
                     select_subprotocol=select_subprotocol, max_size=64 * 1024 * 1024):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
