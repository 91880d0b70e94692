"""Real local receivers for alert channels: an HTTP server (webhook, Telegram API) and an SMTP server."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support import free_port


class HttpReceiver:
    """Records every JSON POST; the first ``reject_first`` answers are 429 with Retry-After: 1."""

    def __init__(self, reject_first: int = 0) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.rejected = 0
        self._reject_left = reject_first
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with receiver._lock:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    reject = receiver._reject_left > 0
                    if reject:
                        receiver._reject_left -= 1
                        receiver.rejected += 1
                    else:
                        receiver.accepted.append({"path": self.path, "headers": dict(self.headers), "body": body})
                answer = b'{"ok": false, "error_code": 429}' if reject else b'{"ok": true}'
                self.send_response(429 if reject else 200)
                if reject:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "HttpReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        mail = message_from_bytes(envelope.original_content)
        self.messages.append({
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": mail["Subject"],
            "body": json.loads(mail.get_payload(decode=True)),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
        })
        return "250 OK"


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A TLS context with a throwaway self-signed certificate (openssl)."""
    key, cert = directory / "smtp.key", directory / "smtp.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


class SmtpReceiver:
    """aiosmtpd requiring STARTTLS and AUTH (user/password) before mail is accepted."""

    def __init__(self, directory: Path, username: str, password: str) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.logins: list[str] = []

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                username.encode(), password.encode())
            if ok:
                self.logins.append(mechanism)
            return AuthResult(success=ok)

        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port,
            tls_context=self_signed_context(directory), require_starttls=True,
            authenticator=authenticator, auth_require_tls=True,
        )

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.inbox.messages

    def start(self) -> "SmtpReceiver":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
