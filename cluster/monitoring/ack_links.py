"""Signed one-time acknowledge links: HMAC-SHA256 of the alert id with a per-install secret.

An alert id is random and lives for one episode, so a link acknowledges exactly
one alert once: a second use finds it acknowledged (or gone) and does nothing.
The secret is ``alerts.ack_secret`` when configured, else a random key kept in
``<state_dir>/alerts.secret`` (0600) so that links survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE = "alerts.secret"
ACK_PATH = "/alerts/ack"


def install_secret(state_dir: Path, configured: str | None) -> bytes:
    """The configured secret, or this install's own (created on first use)."""
    if configured:
        return configured.encode()
    path = state_dir / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(value)
    return value


def sign(secret: bytes, alert_id: str) -> str:
    return hmac.new(secret, f"ack:{alert_id}".encode(), hashlib.sha256).hexdigest()


def verify(secret: bytes, alert_id: str, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, alert_id), signature)


def link(base_url: str, secret: bytes, alert_id: str) -> str:
    """The URL a human opens to acknowledge: a confirmation page whose button POSTs the signature."""
    return f"{base_url.rstrip('/')}{ACK_PATH}/{alert_id}?sig={sign(secret, alert_id)}"
