import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.db.freshness import format_lsn, is_fresh, lag_bytes, lag_seconds, parse_lsn, time_behind, wal_end

MB = 1024 * 1024


def test_parse_lsn_reads_postgres_notation() -> None:
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("16/B374D848") == (0x16 << 32) + 0xB374D848
    with pytest.raises(ValueError):
        parse_lsn("3000148")


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_format_lsn_round_trips(position: int) -> None:
    assert parse_lsn(format_lsn(position)) == position


def test_byte_lag_is_measured_against_the_primary_and_never_negative() -> None:
    assert lag_bytes(parse_lsn("0/5000000"), parse_lsn("0/4000000")) == 0x1000000
    assert lag_bytes(100, 150) == 0  # the replica was read just after the primary
    assert lag_bytes(None, 100) is None and lag_bytes(100, None) is None


def test_a_caught_up_replica_has_no_time_lag_even_when_the_primary_is_idle() -> None:
    assert lag_seconds(0, 50.0, 3600.0) == 0.0
    assert lag_seconds(4096, 2.0, 3600.0) == 2.0  # measured against the primary, not the last commit
    assert lag_seconds(4096, None, 12.5) == 12.5
    assert lag_seconds(4096, None, None) is None


def test_time_behind_is_how_long_the_primary_has_been_past_the_replay_position() -> None:
    samples = [(100.0, 1000), (115.0, 1000), (130.0, 5000), (145.0, 9000)]
    assert time_behind(samples, 9000, now=150.0) == 0.0
    assert time_behind(samples, 6000, now=150.0) == 5.0  # the primary passed 6000 at 145
    assert time_behind(samples, 1000, now=150.0) == 20.0  # paused since before 130
    assert time_behind(samples, 10, now=150.0) == 50.0  # behind every sample: a lower bound
    assert time_behind([], 10, now=150.0) is None


def test_fresh_within_either_limit_as_gitlab_decides() -> None:
    assert is_fresh(120.0, 1 * MB, max_seconds=10, max_bytes=8 * MB)  # old replay time, few bytes behind
    assert is_fresh(2.0, 64 * MB, max_seconds=10, max_bytes=8 * MB)  # far behind in bytes, recent in time
    assert not is_fresh(30.0, 64 * MB, max_seconds=10, max_bytes=8 * MB)
    assert not is_fresh(None, None, max_seconds=10, max_bytes=8 * MB)
    assert is_fresh(None, 0, max_seconds=10, max_bytes=0)


def test_wal_end_steps_back_over_a_page_header_the_insert_position_points_past() -> None:
    assert wal_end(parse_lsn("0/5000028")) == parse_lsn("0/5000000")  # long header, segment start
    assert wal_end(parse_lsn("0/5002018")) == parse_lsn("0/5002000")  # short header
    assert wal_end(parse_lsn("0/5002060")) == parse_lsn("0/5002060")  # mid-page: a real record end
    assert wal_end(0x4000 + 24, block_size=16384) == 0x4000
