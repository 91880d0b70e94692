"""Where alert notifications go: the log always, plus webhook, Telegram, email and SMS when configured.

Each channel has its own bounded queue and sender task, so a slow or failing
channel never holds up the monitor or another channel. What reaches a channel
within ``alerts.group_wait`` of the first notification of a group goes out as
one message (five alerts, one message). A failed send is retried with
exponential backoff; an answer 429 is retried after its Retry-After; any
other 4xx is a refusal and is not retried. A message that still fails after
``MAX_ATTEMPTS`` is logged and dropped.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import secrets
import smtplib
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Protocol

import aiohttp

from cluster.monitoring.alerts import Notification
from cluster.config.masking import mask_text
from cluster.config.settings import AlertSettings

log = logging.getLogger("cluster.monitoring.alerts")
MAX_ATTEMPTS = 6
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
RETRY_AFTER_MAX = 3600.0
QUEUE_SIZE = 100
SEND_TIMEOUT = 10.0
SMS_MAX_CHARS = 1600  # Twilio's limit for one message body
Links = Callable[[str], "str | None"]


class ChannelError(Exception):
    """A send failed; ``retry_after`` is the delay the receiver asked for, if it did; ``permanent``: do not retry."""

    def __init__(self, message: str, retry_after: float | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


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


class Grouper:
    """Pure: the notifications that reach a channel within ``wait`` of a group's first one go together."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self.notes: list[Notification] = []
        self.opened = 0.0

    def add(self, note: Notification, now: float) -> None:
        if not self.notes:
            self.opened = now
        self.notes.append(note)

    def deadline(self) -> float | None:
        return self.opened + self.wait if self.notes else None

    def take(self, now: float) -> list[Notification]:
        """The group, once its window has passed (else nothing)."""
        if not self.notes or now < self.opened + self.wait:
            return []
        notes, self.notes = self.notes, []
        return notes


def headline(notes: list[Notification]) -> str:
    """One alert: its summary; several: how many of each kind."""
    if len(notes) == 1:
        return notes[0].summary
    counts: dict[str, int] = {}
    for note in notes:
        kind = "firing" if note.kind in ("firing", "repeat", "escalation") else note.kind
        counts[kind] = counts.get(kind, 0) + 1
    return f"{len(notes)} alerts: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def payload(notes: list[Notification], cluster: dict[str, Any], links: Links) -> dict[str, Any]:
    """The JSON document of one grouped message (the text channels send ``text``)."""
    alerts = []
    for note in notes:
        ack = None if note.kind == "resolved" or note.alert.get("acknowledged") else links(note.alert["id"])
        alerts.append({"kind": note.kind, "summary": note.summary, "alert": note.alert, "ack_url": ack})
    title = headline(notes)
    lines = [title] if len(notes) > 1 else []
    for item in alerts:
        lines.append(item["summary"] + f" [id {item['alert']['id']}]")
        if item["ack_url"]:
            lines.append(f"  acknowledge: {item['ack_url']}")
    lines.append(f"on {cluster['host']}")
    return {
        "id": secrets.token_hex(8),
        "status": "resolved" if all(n.kind == "resolved" for n in notes) else "firing",
        "summary": title,
        "text": "\n".join(lines),
        "alerts": alerts,
        "cluster": cluster,
    }


class Channel(Protocol):
    name: str

    async def send(self, message: dict[str, Any]) -> None: ...


class LogChannel:
    name = "log"

    async def send(self, message: dict[str, Any]) -> None:
        for item in message["alerts"]:
            level = logging.INFO if item["kind"] == "resolved" else logging.WARNING
            log.log(level, item["summary"], extra={"alert": item["alert"], "kind": item["kind"]})


def _refusal(status: int, text: str, retry_after: float | None, what: str) -> ChannelError:
    """A non-2xx answer as an error: 429 and 5xx are retried, any other 4xx is final."""
    permanent = 400 <= status < 500 and status not in (408, 429)
    return ChannelError(f"{status} from {what}: {text[:200]}", retry_after, permanent)


async def _post(session: aiohttp.ClientSession, url: str, what: str, **kwargs: Any) -> str:
    """POST to a receiver; its URL is a credential as a whole, so no error names more than its host."""
    try:
        async with session.post(url, **kwargs) as response:
            text = await response.text()
            if response.status < 300:
                return text
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if response.status == 429 and retry_after is None:
                retry_after = _telegram_retry_after(text)
            raise _refusal(response.status, mask_text(text, whole=(url,)), retry_after, what)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ChannelError(mask_text(f"{type(exc).__name__}: {exc}", whole=(url,))) from exc


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
        await _post(self.session, self.url, "the webhook", json=message, headers=self.headers)


class TelegramChannel:
    name = "telegram"

    def __init__(self, session: aiohttp.ClientSession, api_base: str, token: str, chat_id: str) -> None:
        self.session = session
        self.url = f"{api_base.rstrip('/')}/bot{token}/sendMessage"
        self.chat_id = chat_id

    async def send(self, message: dict[str, Any]) -> None:
        body: dict[str, Any] = {"chat_id": self.chat_id, "text": message["text"]}
        # Telegram refuses URL buttons that are not public https addresses; the text has the links anyway.
        buttons = [[{"text": f"Acknowledge {a['alert']['metric']} {a['alert']['severity']}", "url": a["ack_url"]}]
                   for a in message["alerts"] if a["ack_url"] and a["ack_url"].startswith("https://")]
        if buttons:
            body["reply_markup"] = {"inline_keyboard": buttons}
        await _post(self.session, self.url, "Telegram", json=body)


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
        mail.set_content(message["text"])
        mail.add_attachment(json.dumps(message, indent=2, default=str).encode(), maintype="application",
                            subtype="json", filename="alerts.json")
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._send_blocking, mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"SMTP {s.smtp_host}:{s.smtp_port}: {type(exc).__name__}: {exc}") from exc


class SmsChannel:
    """Twilio's Messages API: one POST per recipient, form-encoded, basic auth with the account SID and token.

    A message remembers which recipients already have it, so a retry after a
    failure part-way does not text anyone twice.
    """

    name = "sms"
    REMEMBERED = 100

    def __init__(self, session: aiohttp.ClientSession, settings: AlertSettings) -> None:
        assert settings.sms_account_sid and settings.sms_auth_token and settings.sms_from
        self.session = session
        self.url = f"{settings.sms_api_base.rstrip('/')}/2010-04-01/Accounts/{settings.sms_account_sid}/Messages.json"
        self.headers = {"Authorization": aiohttp.encode_basic_auth(settings.sms_account_sid, settings.sms_auth_token)}
        self.sender, self.recipients = settings.sms_from, settings.sms_to
        self._delivered: OrderedDict[str, set[str]] = OrderedDict()

    async def send(self, message: dict[str, Any]) -> None:
        delivered = self._delivered.setdefault(message["id"], set())
        while len(self._delivered) > self.REMEMBERED:
            self._delivered.popitem(last=False)
        body = message["text"][:SMS_MAX_CHARS]
        for number in self.recipients:
            if number in delivered:
                continue
            try:
                await _post(self.session, self.url, "Twilio", headers=self.headers,
                            data={"To": number, "From": self.sender, "Body": body})
            except ChannelError as exc:
                raise ChannelError(_twilio_reason(str(exc)), exc.retry_after, exc.permanent) from exc
            delivered.add(number)
        self._delivered.pop(message["id"], None)


def _twilio_reason(text: str) -> str:
    """Twilio's error body {code, message, more_info, status} in a line (the raw text when it is not that)."""
    status, _, body = text.partition(" from Twilio: ")
    try:
        error = json.loads(body)
        return f"Twilio {status}: error {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return text


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
    if settings.sms_account_sid and settings.sms_auth_token and settings.sms_from and settings.sms_to:
        channels.append(SmsChannel(session, settings))
    return channels


class Dispatcher:
    """One queue and one sender task per channel; ``publish`` never waits."""

    def __init__(self, channels: list[Channel], cluster: dict[str, Any], group_wait: float = 0.0,
                 links: Links = lambda alert_id: None) -> None:
        self.channels = channels
        self.cluster = cluster
        self.group_wait = group_wait
        self.links = links
        self._queues: dict[str, asyncio.Queue[Notification]] = {c.name: asyncio.Queue(QUEUE_SIZE) for c in channels}
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
        """Queue a notification for its channels (``note.channels``, or all); the log always has it."""
        for name, queue in self._queues.items():
            if note.channels is not None and name != "log" and name not in note.channels:
                continue
            if queue.full():
                dropped = queue.get_nowait()
                log.error("alert channel %s is backed up: dropping its oldest notification", name,
                          extra={"channel": name, "dropped": dropped.summary})
            queue.put_nowait(note)

    async def _drain(self, channel: Channel) -> None:
        queue = self._queues[channel.name]
        grouper = Grouper(self.group_wait)
        loop = asyncio.get_running_loop()
        while True:
            deadline = grouper.deadline()
            try:
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                note = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                pass
            else:
                grouper.add(note, loop.time())
            group = grouper.take(loop.time())
            if group:
                await self._deliver(channel, payload(group, self.cluster, self.links))

    async def _deliver(self, channel: Channel, message: dict[str, Any]) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await asyncio.wait_for(channel.send(message), SEND_TIMEOUT * 2)
            except (ChannelError, TimeoutError) as exc:
                retry_after = exc.retry_after if isinstance(exc, ChannelError) else None
                if isinstance(exc, ChannelError) and exc.permanent:
                    log.error("alert channel %s refused a notification: %s", channel.name, exc,
                              extra={"channel": channel.name, "summary": message["summary"]})
                    break
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
        else:
            log.error("alert channel %s gave up on a notification after %d attempts", channel.name, MAX_ATTEMPTS,
                      extra={"channel": channel.name, "summary": message["summary"]})
        self.failed[channel.name] += 1

    def status(self) -> dict[str, Any]:
        return {
            c.name: {"queued": self._queues[c.name].qsize(), "sent": self.sent[c.name], "failed": self.failed[c.name]}
            for c in self.channels
        }
