#!/usr/bin/env python3
"""Minimal receiver for comfy-sentinel webhooks.

Verifies the Standard Webhooks signature with the `standardwebhooks` library
(pip install standardwebhooks), drops retries it has already seen (the
`webhook-id` header is the same on every retry of one notification), and prints
each alert. The body is Alertmanager's webhook payload version 4.

    WEBHOOK_SECRET=whsec_... python3 webhook_receiver.py --port 9099

The secret is the `whsec_...` string; if the sidecar's config holds a raw secret,
`comfy-sentinel verify --show-whsec --secret RAW </dev/null` prints its whsec form.
Answer 2xx only once the notification is safely handled: any other answer makes the
sidecar retry (408/429/5xx) or give up (other 4xx).
"""

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SEEN = set()  # a real receiver keeps this in its database, with an expiry


class Handler(BaseHTTPRequestHandler):
    webhook = None

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = self.webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError) as e:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(f"invalid signature: {e}\n".encode())
            return
        msg_id = headers["webhook-id"]
        if msg_id not in SEEN:
            SEEN.add(msg_id)
            for alert in payload["alerts"]:
                print(
                    json.dumps(
                        {
                            "id": msg_id,
                            "status": alert["status"],
                            "labels": alert["labels"],
                            "summary": alert["annotations"].get("summary", ""),
                        }
                    ),
                    flush=True,
                )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9099)
    args = ap.parse_args()
    Handler.webhook = Webhook(os.environ["WEBHOOK_SECRET"])
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
