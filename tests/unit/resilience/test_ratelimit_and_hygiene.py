"""Pure parts of rate limiting (which rule, which limit to report, the headers) and of the
slow-query log (what of a statement is logged)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from cluster.config.settings import RateLimitRule
from cluster.db.hygiene import note_duration, statement_text
from cluster.observability.context import request_id_var
from cluster.resilience.ratelimit import Decision, parse_limits, tightest
from cluster.workers.ratelimit import headers, matching, policy_of


def test_the_first_matching_rule_wins_and_methods_filter() -> None:
    rules = tuple(policy_of(RateLimitRule(**r)) for r in (
        {"path": "/api/orders*", "limit": "5/second", "methods": ["post"]},
        {"path": "/api/*", "limit": "100/minute"},
    ))
    assert matching(rules, "POST", "/api/orders/1") is rules[0]
    assert matching(rules, "GET", "/api/orders/1") is rules[1]
    assert matching(rules, "GET", "/health") is None


def test_a_refusal_is_reported_before_the_limit_with_least_left() -> None:
    second, hour = parse_limits("10/second;1000/hour")
    assert tightest("ip", [(second, True, 101.0, 3), (hour, True, 3700.0, 900)], 100.0) == \
        Decision(True, "ip", 10, 3, 1, 1)
    refused = tightest("ip", [(second, True, 101.0, 3), (hour, False, 3700.0, 0)], 100.0)
    assert (refused.allowed, refused.limit, refused.window, refused.reset_after) == (False, 1000, 3600, 3600)


def test_ietf_headers() -> None:
    assert headers(Decision(True, "api_key", 100, 42, 60, 17)) == {
        "RateLimit-Policy": '"api_key";q=100;w=60', "RateLimit": '"api_key";r=42;t=17'}


def test_a_statement_is_logged_without_parameters_and_cut_at_200_chars() -> None:
    assert statement_text("SELECT *\n  FROM t WHERE a = %s") == "SELECT * FROM t WHERE a = %s"
    assert len(statement_text("SELECT " + "x" * 500)) == 200
    assert statement_text(b"SELECT 1") == "SELECT 1"


def test_only_statements_over_the_threshold_are_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    def count() -> float:
        return REGISTRY.get_sample_value("cluster_db_slow_queries_total", {"host": "h1:5432"}) or 0.0

    before = count()
    request_id_var.set("req-1")
    with caplog.at_level(logging.WARNING, logger="db.slow"):
        note_duration("h1:5432", "replica", "SELECT pg_sleep(%s)", 0.5, 1000)
        note_duration("h1:5432", "replica", "SELECT pg_sleep(%s)", 1.5, 1000)
    assert count() == before + 1
    [record] = caplog.records
    assert (record.host, record.role, record.request_id, record.statement, record.duration_ms) == (
        "h1:5432", "replica", "req-1", "SELECT pg_sleep(%s)", 1500.0)


def test_the_embedded_redis_socket_url_is_spelled_for_limits() -> None:
    from cluster.resilience.ratelimit import storage_uri

    assert storage_uri("unix:///run/cluster/redis.sock?db=0") == "async+redis+unix:///run/cluster/redis.sock?db=0"
    assert storage_uri("redis://127.0.0.1:6379/0") == "async+redis://127.0.0.1:6379/0"
