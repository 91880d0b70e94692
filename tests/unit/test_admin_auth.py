from cluster.workers.admin_auth import admin_refusal, is_local, token_matches


def test_loopback_without_proxy_headers_is_local() -> None:
    assert is_local("127.0.0.1", {})
    assert is_local("::1", {})
    assert is_local(None, {})


def test_a_proxy_header_makes_loopback_remote() -> None:
    for header in ("Forwarded", "X-Forwarded-For", "X-Real-IP"):
        assert not is_local("127.0.0.1", {header: "203.0.113.9"})


def test_remote_peers_are_not_local() -> None:
    assert not is_local("10.0.0.5", {})
    assert not is_local("not-an-ip", {})


def test_token_needs_bearer_scheme_and_exact_value() -> None:
    assert token_matches("Bearer s3cret", "s3cret")
    assert token_matches("bearer s3cret", "s3cret")
    assert not token_matches("Bearer s3cre", "s3cret")
    assert not token_matches("Basic s3cret", "s3cret")
    assert not token_matches("Bearer s3cret", None)
    assert not token_matches(None, "s3cret")


def test_refusals() -> None:
    assert admin_refusal("10.0.0.5", {"Authorization": "Bearer t"}, "t") is None
    assert admin_refusal("127.0.0.1", {}, "t") is None
    assert admin_refusal("10.0.0.5", {}, "t")[0] == 401
    assert admin_refusal("10.0.0.5", {}, None)[0] == 403
    assert admin_refusal("127.0.0.1", {"X-Forwarded-For": "1.2.3.4"}, None)[0] == 403
    assert admin_refusal("127.0.0.1", {"Authorization": "Bearer wrong"}, "t")[0] == 403
