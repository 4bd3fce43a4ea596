#!/usr/bin/env python3
"""A small stand-in for an unmodified legacy web app (standard library only).

Every path answers with what the app received, so you can see what the gateway forwards: an HTML
page for browsers, JSON otherwise. A few query parameters make it misbehave on purpose, for the
tests and for trying the gateway out:

  ?sleep=S          wait S seconds before answering
  ?bytes=N          answer with N bytes (streamed in 64 KiB chunks)
  ?chunks=N&every=S send N chunks, S seconds apart (chunked encoding, flushed each time)
  ?redirect=PATH    302 to PATH on the app's OWN address (the gateway must rewrite it)
  ?set_cookie=K=V   set a cookie
  ?status=N         answer with status N
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

IDENTITY = ("X-Forwarded-User", "X-Forwarded-Roles")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LegacyApp/1.0"

    def log_message(self, format: str, *args: object) -> None:  # quiet: the tests read stdout
        pass

    def _read_body(self) -> tuple[int, str]:
        digest = hashlib.sha256()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            total = 0
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                total += self._consume(size, digest)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return total, digest.hexdigest()
        return self._consume(int(self.headers.get("Content-Length") or 0), digest), digest.hexdigest()

    def _consume(self, size: int, digest: Any) -> int:
        remaining = size
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                raise ConnectionError("body cut short")
            digest.update(chunk)
            remaining -= len(chunk)
        return size

    def _handle(self) -> None:
        length, sha = self._read_body()
        query = parse_qs(urlsplit(self.path).query)
        arg = lambda key: query.get(key, [None])[0]  # noqa: E731
        if arg("sleep"):
            time.sleep(float(arg("sleep")))
        if arg("redirect"):
            host, port = self.server.server_address[:2]
            return self._send(302, b"", "text/plain", [("Location", f"http://{host}:{port}{arg('redirect')}")])
        if arg("bytes"):
            return self._stream_bytes(int(arg("bytes")))
        if arg("chunks"):
            return self._stream_chunks(int(arg("chunks")), float(arg("every") or 0))
        extra = []
        if arg("set_cookie"):
            extra.append(("Set-Cookie", f"{arg('set_cookie')}; Path=/"))
        status = int(arg("status") or 200)
        report = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "user": self.headers.get(IDENTITY[0]),
            "roles": self.headers.get(IDENTITY[1]),
            "body_length": length,
            "body_sha256": sha,
        }
        if "text/html" in self.headers.get("Accept", ""):
            self._send(status, self._page(report).encode(), "text/html; charset=utf-8", extra)
        else:
            self._send(status, json.dumps(report).encode(), "application/json", extra)

    def _page(self, report: dict[str, object]) -> str:
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in self.headers.items()
        )
        who = html.escape(str(report["user"] or "nobody (public page)"))
        roles = html.escape(str(report["roles"] or "-"))
        return (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Legacy app</title>"
            "<body style='font-family:sans-serif;max-width:50rem;margin:2rem auto'>"
            f"<h1>Legacy app</h1><p>Signed in as <strong id=user>{who}</strong> with roles "
            f"<strong id=roles>{roles}</strong>.</p>"
            f"<p>{html.escape(self.command)} <code>{html.escape(self.path)}</code></p>"
            "<p><a href='/'>Home</a> · <a href='/admin/'>Admin area</a> · <a href='/reports/'>Reports</a> · "
            "<a href='/.gateway/logout'>Sign out</a></p>"
            f"<h2>Headers received</h2><table>{rows}</table></body></html>"
        )

    def _send(self, status: int, body: bytes, content_type: str, extra: list[tuple[str, str]]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if status not in (204, 304) and status >= 200:
            self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304) and status >= 200:
            self.wfile.write(body)

    def _stream_bytes(self, count: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(count))
        self.end_headers()
        block = bytes(range(256)) * 256
        while count > 0 and self.command != "HEAD":
            piece = block[: min(count, len(block))]
            self.wfile.write(piece)
            count -= len(piece)

    def _stream_chunks(self, count: int, every: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(count):
            data = f"data: {index} {time.time():.3f}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(every)
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"legacy app listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
