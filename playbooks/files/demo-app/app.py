"""Troupe's demo app: an HTTP service that reports its version (stdlib only).

GET /health -> 200 "ok <version>"; GET /version -> "<version>". The version is the
VERSION file beside this script, so each release directory serves its own.
Usage: python3 app.py PORT [ADDRESS]
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = (Path(__file__).resolve().parent / "VERSION").read_text().strip()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {"/health": f"ok {VERSION}\n", "/version": f"{VERSION}\n"}
        body = routes.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write((body or "not found\n").encode())

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    address = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    ThreadingHTTPServer((address, int(sys.argv[1])), Handler).serve_forever()
