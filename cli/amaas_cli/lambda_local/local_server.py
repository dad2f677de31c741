"""The HTTP servers the local runtime runs (the Runtime API, the Invoke API): threaded, on 127.0.0.1 only."""

from __future__ import annotations

import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    """A request handler of the local APIs: whole-body replies, and no access log (the function's log is the
    log)."""

    def send(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except ConnectionError:  # the other side went away (a process stopped while it waited for an event)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LocalServer(ThreadingHTTPServer):
    """Serves ``handler`` on a free port of 127.0.0.1 from a daemon thread until ``close``.

    A function process that is killed drops its keep-alive connection mid-request; that is expected here and
    not reported as a server error.
    """

    daemon_threads = True

    def __init__(self, handler: type[Handler], name: str) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        # A short poll interval: ``shutdown`` waits for the serving loop to notice, at every sandbox reset.
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name=name, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close(self) -> None:
        self.shutdown()
        self.server_close()
