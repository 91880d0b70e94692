"""The fork server's line protocol (pure): bounded lines, JSON objects, well-typed requests."""

from __future__ import annotations

import pytest

from cluster.queues.fork_protocol import MAX_LINE, ForkRequest, ProtocolError, decode, encode


def test_a_request_round_trips_as_one_line() -> None:
    line = encode({"argv": ["/state/settings.json", "high"], "name": "queue-high-0", "env": {"A": "1"},
                   "unset": ["B"]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    request = ForkRequest.parse(decode(line))
    assert request == ForkRequest(["/state/settings.json", "high"], "queue-high-0", {"A": "1"}, ["B"])


@pytest.mark.parametrize("line", [b'{"argv": []}', b"[1]\n", b"{nope\n", b"{" + b" " * MAX_LINE + b"}\n"])
def test_a_line_cut_short_not_an_object_or_over_the_bound_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(line)


def test_a_message_over_the_bound_is_not_sent() -> None:
    with pytest.raises(ProtocolError):
        encode({"env": {"X": "y" * MAX_LINE}})


@pytest.mark.parametrize("message", [{}, {"argv": "high"}, {"argv": [1]}, {"argv": [], "env": {"A": 1}},
                                     {"argv": [], "unset": "B"}, {"argv": [], "name": 3}])
def test_an_ill_typed_request_is_refused(message: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        ForkRequest.parse(message)
