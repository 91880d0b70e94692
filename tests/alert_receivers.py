"""Real local receivers for alert channels: an HTTP server (webhook, Telegram API), an SMTP server and
Twilio's Messages API (aiohttp)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import ssl
import subprocess
import threading
import time
from email import message_from_bytes
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiohttp import web
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
                        receiver.accepted.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                                  "at": time.time()})
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
        parts = {part.get_content_type(): part.get_payload(decode=True) for part in mail.walk()
                 if not part.is_multipart()}
        self.messages.append({
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": mail["Subject"],
            "text": parts["text/plain"].decode(),
            "body": json.loads(parts["application/json"]),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "at": time.time(),
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


E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def twilio_error(status: int, code: int, message: str) -> web.Response:
    """Twilio's documented error body."""
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)


class TwilioReceiver:
    """Twilio's Messages API as documented: POST /2010-04-01/Accounts/{AccountSid}/Messages.json,
    form-encoded To/From/Body, HTTP basic auth (SID:token); 201 with the message resource; 400 (21211
    invalid To, 21602 no Body), 401 (20003) and 429 (20429, with Retry-After) with Twilio's error body.
    ``throttle_first`` answers 429 that many times first. Runs its own event loop in a thread."""

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "twilio-token",
                 throttle_first: int = 0) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.messages: list[dict[str, Any]] = []
        self.refused: list[tuple[int, int]] = []
        self._throttle_left = throttle_first
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def _refuse(self, status: int, code: int, message: str, **headers: str) -> web.Response:
        self.refused.append((status, code))
        response = twilio_error(status, code, message)
        response.headers.update(headers)
        return response

    async def _create(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.match_info["sid"] != self.account_sid or request.headers.get("Authorization") != expected:
            return self._refuse(401, 20003, "Authenticate")
        if self._throttle_left > 0:
            self._throttle_left -= 1
            return self._refuse(429, 20429, "Too Many Requests", **{"Retry-After": "1"})
        form = await request.post()
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not E164.match(str(to)):
            return self._refuse(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not body:
            return self._refuse(400, 21602, "Message body is required.")
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(time.time(), usegmt=True)
        resource = {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": body, "date_created": now,
            "date_sent": None, "date_updated": now, "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": sender, "messaging_service_sid": None, "num_media": "0",
            "num_segments": str(1 + len(str(body)) // 160), "price": None, "price_unit": "USD", "sid": sid,
            "status": "queued", "to": to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        self.messages.append({**resource, "received_at": time.time()})
        return web.json_response(resource, status=201)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> "TwilioReceiver":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
