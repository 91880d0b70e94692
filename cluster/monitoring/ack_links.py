"""Signed one-time acknowledge links: HMAC-SHA256 of the alert id with a per-install secret.

An alert id is random and lives for one episode, so a link acknowledges exactly
one alert once: a second use finds it acknowledged (or gone) and does nothing.
The secret is ``alerts.ack_secret`` when configured, else a random key kept in
``<state_dir>/alerts.secret`` (0600) so that links survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from cluster.config import state_files
from cluster.safe_files import read_file, write_file

SECRET_FILE = state_files.ALERTS_SECRET.name
MIN_SECRET_BYTES = 32
ACK_PATH = "/alerts/ack"


def install_secret(state_dir: Path, configured: str | None) -> bytes:
    """The configured secret, or this install's own: created, or replaced when short, empty or a link.

    A short key makes links forgeable (an empty one signs with the key b""), so
    anything under ``MIN_SECRET_BYTES`` is replaced; the new key is written to a
    fresh file renamed over the old name (atomic: a crash never leaves it half written).
    """
    if configured:
        return configured.encode()
    path = state_dir / SECRET_FILE
    value = (read_file(path, 4096) or b"").strip()  # a link reads as nothing: never through it
    if len(value) >= 2 * MIN_SECRET_BYTES:  # hex: two characters a byte
        return value
    value = secrets.token_hex(MIN_SECRET_BYTES).encode()
    write_file(path, value, mode=0o600)
    return value


def sign(secret: bytes, alert_id: str) -> str:
    return hmac.new(secret, f"ack:{alert_id}".encode(), hashlib.sha256).hexdigest()


def verify(secret: bytes, alert_id: str, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, alert_id), signature)


def link(base_url: str, secret: bytes, alert_id: str) -> str:
    """The URL a human opens to acknowledge: a confirmation page whose button POSTs the signature."""
    return f"{base_url.rstrip('/')}{ACK_PATH}/{alert_id}?sig={sign(secret, alert_id)}"
