"""A webhook endpoint for trying the platform out: `python3 scripts/webhook_receiver.py PORT SECRET`.

It checks each delivery's Standard Webhooks signature (`webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`, keyed with the secret's bytes after `whsec_`), prints one line per delivery
(`verified <webhook-id> <type> <subject>`, or `REFUSED ...`) and answers 204 (401 to a bad signature).
Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def signed(secret: str, webhook_id: str, timestamp: str, body: bytes) -> set[str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {"v1," + base64.b64encode(digest).decode()}


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2]

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            webhook_id = self.headers.get("webhook-id", "")
            sent = set(self.headers.get("webhook-signature", "").split())
            good = bool(sent & signed(secret, webhook_id, self.headers.get("webhook-timestamp", ""), body))
            event = json.loads(body) if good else {}
            verdict = "verified" if good else "REFUSED"
            print(verdict, webhook_id, event.get("type", "-"), event.get("subject", "-"), flush=True)
            self.send_response(204 if good else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    HTTPServer(("127.0.0.1", port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
