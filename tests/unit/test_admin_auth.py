from cluster.config import Settings
from cluster.workers.admin_auth import PROXY_HEADERS, AdminPolicy, admin_refusal, is_local, token_matches
from cluster.workers.allowed_hosts import own_hosts

TOKEN = "t" * 16
LOCAL = {"Host": "127.0.0.1:8000"}


def test_loopback_without_proxy_headers_is_local() -> None:
    assert is_local("127.0.0.1", {})
    assert is_local("::1", {})
    assert is_local(None, {})


def test_a_proxy_header_makes_loopback_remote() -> None:
    for header in ("Forwarded", "X-Forwarded-For", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP"):
        assert header in PROXY_HEADERS
        assert not is_local("127.0.0.1", {header: "203.0.113.9"})


def test_a_trusted_proxy_is_never_local_header_or_not() -> None:
    # A bare proxy_pass, HAProxy in TCP mode or stunnel sends no header: it must not make its clients local.
    assert not is_local("127.0.0.1", {}, ["127.0.0.1"])
    assert not is_local("::1", {}, ["::1/128"])
    assert is_local("127.0.0.2", {}, ["127.0.0.1"])
    policy = AdminPolicy(None, trusted_proxies=("127.0.0.1",))
    assert admin_refusal("127.0.0.1", LOCAL, policy)[0] == 403


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
    with_token, without = AdminPolicy(TOKEN), AdminPolicy(None)
    bearer = {"Authorization": f"Bearer {TOKEN}", **LOCAL}
    assert admin_refusal("10.0.0.5", bearer, with_token) is None
    assert admin_refusal("127.0.0.1", LOCAL, with_token) is None
    assert admin_refusal("10.0.0.5", LOCAL, with_token)[0] == 401
    assert admin_refusal("10.0.0.5", LOCAL, without)[0] == 403
    assert admin_refusal("127.0.0.1", {"X-Forwarded-For": "1.2.3.4", **LOCAL}, without)[0] == 403
    assert admin_refusal("127.0.0.1", {"Authorization": "Bearer wrong", **LOCAL}, with_token)[0] == 403


def test_trust_local_off_makes_loopback_and_unix_peers_need_the_token() -> None:
    policy = AdminPolicy(TOKEN, trust_local=False)
    assert admin_refusal("127.0.0.1", LOCAL, policy)[0] == 401
    assert admin_refusal(None, LOCAL, policy)[0] == 401
    assert admin_refusal(None, {"Authorization": f"Bearer {TOKEN}", **LOCAL}, policy) is None


def test_a_foreign_host_is_misdirected_even_from_loopback_and_with_the_token() -> None:
    # DNS rebinding: the browser's loopback request carries the attacker's name.
    policy = AdminPolicy(TOKEN)
    for host in ("rebind.attacker.test:8000", "rebind.attacker.test", "10.9.9.9", ""):
        assert admin_refusal("127.0.0.1", {"Host": host}, policy)[0] == 421, host
    assert admin_refusal("127.0.0.1", {}, policy)[0] == 421
    assert admin_refusal("10.0.0.5", {"Host": "evil.test", "Authorization": f"Bearer {TOKEN}"}, policy)[0] == 421
    for host in ("localhost:8000", "127.0.0.1", "[::1]:9", "127.0.0.2:1"):
        assert admin_refusal("127.0.0.1", {"Host": host}, policy) is None, host


def test_our_own_names_are_loopback_the_binds_and_allowed_hosts() -> None:
    settings = Settings.model_validate({"server": {"bind": ["10.0.0.5:8000", "unix:/run/c.sock"],
                                                   "allowed_hosts": ["API.example.com"]},
                                        "metrics": {"bind": "192.168.1.2:8199"}})
    hosts = AdminPolicy.of(settings).hosts
    assert all(hosts.allows(h) for h in ("10.0.0.5:8000", "api.example.com", "192.168.1.2:8199", "localhost"))
    assert not any(hosts.allows(h) for h in ("10.0.0.6:8000", "example.com", "api.example.com.evil.test"))
    # A wildcard bind answers on every address: any IP literal is ours, a name still is not.
    anywhere = own_hosts(["0.0.0.0:8000"])
    assert anywhere.allows("203.0.113.7:8000") and not anywhere.allows("rebind.attacker.test:8000")
