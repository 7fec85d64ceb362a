"""A webhook receiver for `make test-docker`: keeps every POST (body and signature header)
and lists them on GET, so the test can check each delivery."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received: list[dict[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append({"body": body.decode(), "signature": self.headers["X-SCO-Signature"]})
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        listing = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(listing)))
        self.end_headers()
        self.wfile.write(listing)


ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()  # noqa: S104  # in its container
