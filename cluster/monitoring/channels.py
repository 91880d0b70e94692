"""Where alert notifications go: the log always, plus webhook, Telegram and email when configured.

Each channel has its own bounded queue and sender task, so a slow or failing
channel never holds up the monitor or another channel. A failed send is
retried with exponential backoff; an answer 429 is retried after its
Retry-After. A notification that still fails after ``MAX_ATTEMPTS`` is logged
and dropped.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import smtplib
import socket
import time
from email.message import EmailMessage
from typing import Any, Protocol

import aiohttp

from cluster.monitoring.alerts import Notification
from config.masking import mask_text
from config.settings import AlertSettings

log = logging.getLogger("cluster.monitoring.alerts")
MAX_ATTEMPTS = 6
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
RETRY_AFTER_MAX = 3600.0
QUEUE_SIZE = 100
SEND_TIMEOUT = 10.0


class ChannelError(Exception):
    """A send failed; ``retry_after`` is the delay the receiver asked for, if it did."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_delay(attempt: int, retry_after: float | None, initial: float = BACKOFF_INITIAL,
                ceiling: float = BACKOFF_MAX) -> float:
    """Seconds before attempt ``attempt + 1``: the receiver's Retry-After, else doubling backoff."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), RETRY_AFTER_MAX)
    return min(ceiling, initial * 2 ** (attempt - 1))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def payload(note: Notification, cluster: dict[str, Any]) -> dict[str, Any]:
    """The JSON document every channel sends (the text channels send its summary)."""
    return {"kind": note.kind, "summary": note.summary, "alert": note.alert, "cluster": cluster}


class Channel(Protocol):
    name: str

    async def send(self, message: dict[str, Any]) -> None: ...


class LogChannel:
    name = "log"

    async def send(self, message: dict[str, Any]) -> None:
        level = logging.INFO if message["kind"] == "resolved" else logging.WARNING
        log.log(level, message["summary"], extra={"alert": message["alert"], "kind": message["kind"]})


async def _post_json(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> None:
    try:
        async with session.post(url, json=body, headers=headers) as response:
            if response.status < 300:
                return
            text = await response.text()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if response.status == 429 and retry_after is None:
                retry_after = _telegram_retry_after(text)
            raise ChannelError(mask_text(f"{response.status} from {url}: {text[:200]}"), retry_after)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ChannelError(mask_text(f"{type(exc).__name__}: {exc}")) from exc


def _telegram_retry_after(text: str) -> float | None:
    """Telegram says how long to wait in its body: {"parameters": {"retry_after": N}}."""
    try:
        value = json.loads(text)["parameters"]["retry_after"]
    except (ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


class WebhookChannel:
    name = "webhook"

    def __init__(self, session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        self.session, self.url, self.headers = session, url, headers

    async def send(self, message: dict[str, Any]) -> None:
        await _post_json(self.session, self.url, message, self.headers)


class TelegramChannel:
    name = "telegram"

    def __init__(self, session: aiohttp.ClientSession, api_base: str, token: str, chat_id: str) -> None:
        self.session = session
        self.url = f"{api_base.rstrip('/')}/bot{token}/sendMessage"
        self.chat_id = chat_id

    async def send(self, message: dict[str, Any]) -> None:
        text = f"{message['summary']}\nalert {message['alert']['id']} on {message['cluster']['host']}"
        await _post_json(self.session, self.url, {"chat_id": self.chat_id, "text": text})


class EmailChannel:
    """SMTP with STARTTLS and login when configured; smtplib runs in an executor thread."""

    name = "email"

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings

    def _send_blocking(self, message: EmailMessage) -> None:
        s = self.settings
        assert s.smtp_host is not None
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=SEND_TIMEOUT) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            smtp.send_message(message)

    async def send(self, message: dict[str, Any]) -> None:
        s = self.settings
        mail = EmailMessage()
        mail["Subject"] = f"[cluster] {message['summary']}"
        mail["From"] = s.email_from or f"cluster@{socket.gethostname()}"
        mail["To"] = ", ".join(s.email_to)
        mail.set_content(json.dumps(message, indent=2, default=str))
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._send_blocking, mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"SMTP {s.smtp_host}:{s.smtp_port}: {type(exc).__name__}: {exc}") from exc


def configured_channels(settings: AlertSettings, session: aiohttp.ClientSession) -> list[Channel]:
    """The log, and every channel whose settings are complete."""
    channels: list[Channel] = [LogChannel()]
    if settings.webhook_url:
        channels.append(WebhookChannel(session, settings.webhook_url, settings.webhook_headers))
    if settings.telegram_bot_token and settings.telegram_chat_id:
        channels.append(TelegramChannel(
            session, settings.telegram_api_base, settings.telegram_bot_token, settings.telegram_chat_id,
        ))
    if settings.smtp_host and settings.email_to:
        channels.append(EmailChannel(settings))
    return channels


class Dispatcher:
    """One queue and one sender task per channel; ``publish`` never waits."""

    def __init__(self, channels: list[Channel], cluster: dict[str, Any]) -> None:
        self.channels = channels
        self.cluster = cluster
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {c.name: asyncio.Queue(QUEUE_SIZE) for c in channels}
        self._tasks: list[asyncio.Task[None]] = []
        self.sent: dict[str, int] = {c.name: 0 for c in channels}
        self.failed: dict[str, int] = {c.name: 0 for c in channels}

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._drain(c), name=f"alerts-{c.name}") for c in self.channels]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def publish(self, note: Notification) -> None:
        message = payload(note, self.cluster)
        for name, queue in self._queues.items():
            if queue.full():
                dropped = queue.get_nowait()
                log.error("alert channel %s is backed up: dropping its oldest notification", name,
                          extra={"channel": name, "dropped": dropped["summary"]})
            queue.put_nowait(message)

    async def _drain(self, channel: Channel) -> None:
        queue = self._queues[channel.name]
        while True:
            message = await queue.get()
            await self._deliver(channel, message)

    async def _deliver(self, channel: Channel, message: dict[str, Any]) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await asyncio.wait_for(channel.send(message), SEND_TIMEOUT * 2)
            except (ChannelError, TimeoutError) as exc:
                retry_after = exc.retry_after if isinstance(exc, ChannelError) else None
                delay = retry_delay(attempt, retry_after)
                log.warning(
                    "alert channel %s failed (attempt %d/%d): %s; retrying in %.1fs",
                    channel.name, attempt, MAX_ATTEMPTS, exc, delay,
                    extra={"channel": channel.name, "attempt": attempt, "retry_in": delay},
                )
                if attempt < MAX_ATTEMPTS:
                    await asyncio.sleep(delay)
            else:
                self.sent[channel.name] += 1
                return
        self.failed[channel.name] += 1
        log.error("alert channel %s gave up on a notification after %d attempts", channel.name, MAX_ATTEMPTS,
                  extra={"channel": channel.name, "summary": message["summary"]})

    def status(self) -> dict[str, Any]:
        return {
            c.name: {"queued": self._queues[c.name].qsize(), "sent": self.sent[c.name], "failed": self.failed[c.name]}
            for c in self.channels
        }
