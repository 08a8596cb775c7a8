#!/usr/bin/env python3
"""Webhook receiver for the test suite.

Verifies every delivery with the Standard Webhooks reference library (`standardwebhooks`
from PyPI), once per configured secret, and appends what it saw to a JSONL log:
{path, id, timestamp, signature, verified: {secret: bool}, body, answered, at}.

Paths: /hook answers 2xx (after --fail-first 503s per webhook-id), /redirect answers
302 to /target, /target records the (unexpected) hit, /gone answers 410.
Prints "listening on http://127.0.0.1:PORT" once ready.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

STATE = {"secrets": [], "fail_first": 0, "seen": {}}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        msg_id = headers.get("webhook-id", "")
        with LOCK:
            secrets = list(STATE["secrets"])
            n = STATE["seen"].get((self.path, msg_id), 0) + 1
            STATE["seen"][(self.path, msg_id)] = n
            fail_first = STATE["fail_first"]
        verified = {}
        for s in secrets:
            try:
                Webhook(s).verify(raw, headers)
                verified[s] = True
            except WebhookVerificationError:
                verified[s] = False
        if self.path == "/redirect":
            answered, extra = 302, [("Location", "/target")]
        elif self.path == "/gone":
            answered, extra = 410, []
        elif self.path == "/hook" and n <= fail_first:
            answered, extra = 503, []
        else:
            answered, extra = 200, []
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        record = {
            "path": self.path,
            "id": msg_id,
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "verified": verified,
            "body": body,
            "answered": answered,
            "at": time.time(),
        }
        with LOCK, open(ARGS.log, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.reply(answered, b"unavailable" if answered == 503 else b"", extra)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--secrets", default="", help="space-separated whsec_ secrets to verify with")
    p.add_argument("--fail-first", type=int, default=0)
    ARGS = p.parse_args()
    STATE["secrets"] = ARGS.secrets.split()
    STATE["fail_first"] = ARGS.fail_first
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
