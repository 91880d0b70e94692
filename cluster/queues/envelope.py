"""The job envelope: what a stream entry carries, as JSON. Decoding never trusts its input."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from cluster.config import PRIORITIES

FIELD = "job"
_JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class DecodeError(ValueError):
    """A stream entry that is not a job envelope."""


@dataclass
class Envelope:
    id: str
    name: str
    priority: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    max_retries: int = 0
    enqueued_at: float = 0.0
    not_before: float = 0.0
    request_id: str | None = None
    read_your_writes: dict[str, Any] | None = None
    crashes: int = 0
    """How many times a consumer died while running this job (not attempts: the handler did not fail)."""

    def encode(self) -> str:
        """JSON text; TypeError/ValueError when an argument is not JSON."""
        # vars(), not asdict(): asdict deep-copies every argument first, on the enqueue hot path
        return json.dumps(vars(self), separators=(",", ":"), allow_nan=False)

    def next_attempt(self, not_before: float) -> "Envelope":
        return replace(self, attempt=self.attempt + 1, not_before=not_before)

    def after_crash(self, crashes: int) -> "Envelope":
        """The same attempt again, its crash count now ``crashes``."""
        return replace(self, crashes=crashes)


def new_job_id() -> str:
    """128 random bits as 32 hex digits (what uuid4().hex gave, without its object)."""
    return os.urandom(16).hex()


def new_job_ids(count: int) -> list[str]:
    """``count`` fresh ids from one read of the system's randomness."""
    digits = os.urandom(16 * count).hex()
    return [digits[i:i + 32] for i in range(0, 32 * count, 32)]


class EnvelopeTemplate:
    """The envelope of a new job of one name and queue, its fixed text encoded once.

    ``encode`` adds a job's id, its arguments (already JSON, from
    ``job_limits.encode_arguments``), its times and its request context (from
    ``request_context``), and gives the text ``Envelope(...).encode()`` gives
    for a first attempt: the envelope without a per-job dict or encoder pass.
    """

    __slots__ = ("_head", "_middle")

    def __init__(self, name: str, priority: str, max_retries: int) -> None:
        self._head = f',"name":{json.dumps(name)},"priority":{json.dumps(priority)},"args":'
        self._middle = f',"attempt":1,"max_retries":{int(max_retries)},"enqueued_at":'

    def encode(self, job_id: str, args_json: str, kwargs_json: str, enqueued_at: float, not_before: float,
               context: str) -> str:
        """``job_id`` has passed ``check_job_id`` (or is new), so its characters need no JSON escaping."""
        return (f'{{"id":"{job_id}"{self._head}{args_json},"kwargs":{kwargs_json}{self._middle}'
                f'{float(enqueued_at)!r},"not_before":{float(not_before)!r}{context}')


_NO_CONTEXT = ',"request_id":null,"read_your_writes":null,"crashes":0}'


def request_context(request_id: str | None, read_your_writes: dict[str, Any] | None) -> str:
    """The end of a new envelope: the request that enqueued it and its read-your-writes marks."""
    if request_id is None and read_your_writes is None:
        return _NO_CONTEXT
    marks = json.dumps(read_your_writes, separators=(",", ":"), allow_nan=False)
    return f',"request_id":{json.dumps(request_id)},"read_your_writes":{marks},"crashes":0}}'


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError("job_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return job_id


_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str,), "priority": (str,), "args": (list,), "kwargs": (dict,),
    "attempt": (int,), "max_retries": (int,), "enqueued_at": (int, float), "not_before": (int, float),
}


def decode(fields: dict[str, Any]) -> Envelope:
    """The envelope of a stream entry's fields, or DecodeError saying what is wrong."""
    raw = fields.get(FIELD)
    if raw is None:
        raise DecodeError(f"entry has no {FIELD!r} field (fields: {sorted(fields)[:10]})")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise DecodeError(f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError(f"payload is a JSON {type(data).__name__}, not an object")
    get = data.get
    for key, types in _TYPES.items():
        # json.loads gives exact types, so this is isinstance without bool (a subclass of int)
        if type(get(key)) not in types:
            if key not in data:
                raise DecodeError(f"payload has no {key!r}")
            raise DecodeError(f"payload field {key!r} has the wrong type ({type(data[key]).__name__})")
    crashes = get("crashes", 0)
    if type(crashes) is not int or crashes < 0:
        raise DecodeError(f"payload field 'crashes' is not a count ({crashes!r})")
    if data["priority"] not in PRIORITIES:
        raise DecodeError(f"unknown priority {data['priority']!r}")
    if _KNOWN.issuperset(data):
        return Envelope(**data)
    return Envelope(**{k: v for k, v in data.items() if k in _KNOWN})


_KNOWN = frozenset(Envelope.__dataclass_fields__)
