"""The far ends alerts go to, real and in this process: an HTTP server that takes webhooks (and Apprise's
json:// posts) and an SMTP server (aiosmtpd) that takes mail, each keeping what it received."""
from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookServer:
    """POST /ok/... answers 200, /fail/... 500, /hang/... answers nothing for `hang_seconds`,
    /trickle/... answers 200 and a byte of body every 0.1 s for a minute."""

    def __init__(self, hang_seconds: float = 6) -> None:
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.received.append(Received(self.path, dict(self.headers.items()), body))
                if self.path.startswith("/hang"):
                    time.sleep(hang_seconds)
                if self.path.startswith("/trickle"):
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for _ in range(600):
                            self.wfile.write(b".")
                            self.wfile.flush()
                            time.sleep(0.1)
                    except OSError:  # the sender stopped reading, as it should
                        pass
                    return
                status = 500 if self.path.startswith("/fail") else 200
                answer = b"it broke" if status == 500 else b"thanks"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path.startswith(path)]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class MailServer:
    """An SMTP server on `port` that keeps every message it accepts; it refuses mailboxes named refused...@."""

    def __init__(self, port: int) -> None:
        self.messages: list[EmailMessage] = []
        outer = self

        class Handler:
            async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                                  options: list[str]) -> str:
                if address.startswith("refused"):
                    return f"550 5.1.1 <{address}>: no such mailbox"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                outer.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK queued as test"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
