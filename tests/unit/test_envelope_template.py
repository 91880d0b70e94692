"""The envelope of a new job built from its template is the text Envelope.encode gives, and decodes back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.queues import job_limits
from cluster.queues.envelope import FIELD, Envelope, EnvelopeTemplate, decode, new_job_id, new_job_ids, request_context

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(), lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                     max_leaves=10)


@given(name=st.text(min_size=1), args=st.lists(_json, max_size=4),
       kwargs=st.dictionaries(st.text().filter(lambda k: k not in job_limits.RESERVED_KWARGS), _json, max_size=3),
       request_id=st.none() | st.text(), marks=st.none() | st.dictionaries(st.text(), st.integers(), max_size=2),
       enqueued_at=st.floats(0, 4e9), later=st.floats(0, 1e6), retries=st.integers(0, 100))
def test_the_template_gives_what_encode_gives(name: str, args: list[Any], kwargs: dict[str, Any],
                                              request_id: str | None, marks: dict[str, int] | None,
                                              enqueued_at: float, later: float, retries: int) -> None:
    args_json, kwargs_json = job_limits.encode_arguments(args, kwargs, 10**9)
    job_id = new_job_id()
    text = EnvelopeTemplate(name, "low", retries).encode(job_id, args_json, kwargs_json, enqueued_at,
                                                          enqueued_at + later, request_context(request_id, marks))
    envelope = Envelope(id=job_id, name=name, priority="low", args=args, kwargs=kwargs, max_retries=retries,
                        enqueued_at=enqueued_at, not_before=enqueued_at + later, request_id=request_id,
                        read_your_writes=marks)
    assert text == envelope.encode()
    assert decode({FIELD: text}) == envelope


def test_arguments_are_encoded_once_as_compact_json() -> None:
    assert job_limits.encode_arguments((), {}, 1) == ("[]", "{}")
    assert job_limits.encode_arguments((1, "a"), {"b": [None]}, 100) == ('[1,"a"]', '{"b":[null]}')
    with pytest.raises(ValueError, match="max_payload_bytes"):
        job_limits.encode_arguments((), {"k": "v"}, len('[[],{"k":"v"}]') - 1)
    job_limits.encode_arguments((), {"k": "v"}, len('[[],{"k":"v"}]'))


def test_new_ids_are_distinct_hex() -> None:
    ids = new_job_ids(1000) + [new_job_id()]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert json.dumps(ids[0]) == f'"{ids[0]}"'
