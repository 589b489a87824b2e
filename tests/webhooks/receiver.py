"""A webhook receiver in a process of its own, verifying every request with the
`standardwebhooks` library (the specification's reference implementation, not AgentKeep's code).

    python -m tests.webhooks.receiver --port N

POST /control {"secrets": [...], "fail": n, "status": code, "hold": seconds} configures it:
the secrets it verifies with (each one tried alone), how many requests to answer with
`status` (default 500) before answering 204, and how long to hold the next request before
answering. GET /received lists every request: its headers, body, which secrets verified it,
and the status answered.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

state: dict[str, Any] = {"secrets": [], "fail": 0, "status": 500, "hold": 0.0, "received": []}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, document: Any = None) -> None:
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with lock:
            received = list(state["received"])
        self._answer(200, received)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path == "/control":
            with lock:
                state.update(json.loads(body))
            self._answer(204)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        with lock:
            secrets = list(state["secrets"])
            hold, state["hold"] = state["hold"], 0.0
            failing = state["fail"] > 0
            if failing:
                state["fail"] -= 1
            status = state["status"] if failing else 204
        verified = []
        for secret in secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
        entry = {
            "path": self.path,
            "headers": headers,
            "body": body.decode(),
            "verified": verified,
            "status": status,
            "at": time.time(),
        }
        with lock:
            state["received"].append(entry)
        if hold:
            time.sleep(hold)
        self._answer(status, {"ok": status < 300} if status != 204 else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
