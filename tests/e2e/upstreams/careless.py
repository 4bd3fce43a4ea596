#!/usr/bin/env python3
"""A careless upstream for the request-smuggling tests: it answers WITHOUT reading the request body,
as most routes that ignore bodies do, and writes one line per request it parsed to a log file.

Run under real Uvicorn with either parser (``--http httptools`` or ``--http h11``): whatever reaches
it as a request is in the log, so a request the gateway never forwarded (a smuggled one) shows.
The answer names the path and the length of the request head as the app received it
(``method target HTTP/1.1``, each header line, the blank line), which is what an attacker needs to
line a smuggled request up with a pooled connection.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import uvicorn

LOG = os.environ.get("CARELESS_LOG", "careless.log")


def head_length(scope: dict[str, Any]) -> int:
    target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
    line = len(scope["method"]) + 1 + len(target) + len(b" HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    record = {"method": scope["method"], "path": scope["path"], "user": headers.get("x-forwarded-user"),
              "content_length": headers.get("content-length")}
    with open(LOG, "a") as log:
        log.write(json.dumps(record) + "\n")
    body = json.dumps({"path": scope["path"], "head_length": head_length(scope)}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http", choices=("httptools", "h11"), default="httptools")
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, http=args.http, log_level="warning", lifespan="off")
