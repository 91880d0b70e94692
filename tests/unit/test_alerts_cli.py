"""`cluster alerts silence --for`: durations as operators write them."""

from __future__ import annotations

import click
import pytest

from cluster.cli.alerts import parse_duration


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("1h", 3600), ("2h30m", 9000),
                                          ("1d", 86400), ("45", 45), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h foo", "-5m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(click.BadParameter):
        parse_duration(text)
