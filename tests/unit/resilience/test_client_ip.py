"""The trusted-proxy rule: proxy headers count only from a trusted peer."""

from __future__ import annotations

from cluster.workers.client_ip import client_ip

TRUSTED = ["10.0.0.0/8", "127.0.0.1"]


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_ip("203.0.113.9", {"X-Forwarded-For": "1.2.3.4"}, TRUSTED) == "203.0.113.9"


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_ip("127.0.0.1", {"X-Forwarded-For": "1.2.3.4"}, []) == "127.0.0.1"


def test_a_trusted_peer_gives_the_rightmost_untrusted_hop() -> None:
    headers = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.2.3"}
    assert client_ip("127.0.0.1", headers, TRUSTED) == "198.51.100.7"


def test_the_forwarded_header_with_ipv6_and_ports_when_it_is_the_configured_one() -> None:
    headers = {"Forwarded": 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'}
    assert client_ip("10.0.0.5", headers, TRUSTED, "Forwarded") == "2001:db8::1"
    assert client_ip("10.0.0.5", {"Forwarded": "for=192.0.2.60:8080"}, TRUSTED, "Forwarded") == "192.0.2.60"


def test_only_the_configured_header_is_read() -> None:
    # A client's own Forwarded, passed through by a proxy that sets X-Forwarded-For only, is its word.
    spoofed = {"Forwarded": "for=10.9.9.1", "X-Real-IP": "10.9.9.2", "X-Forwarded-For": "198.51.100.7"}
    assert client_ip("127.0.0.1", spoofed, TRUSTED) == "198.51.100.7"
    assert client_ip("127.0.0.1", {"Forwarded": "for=198.51.100.7"}, TRUSTED) == "127.0.0.1"
    assert client_ip("127.0.0.1", {"X-Real-IP": "198.51.100.7"}, TRUSTED, "X-Real-IP") == "198.51.100.7"


def test_garbage_in_the_chain_stops_there() -> None:
    assert client_ip("10.0.0.5", {"X-Forwarded-For": "1.2.3.4, unknown"}, TRUSTED) == "10.0.0.5"


def test_a_unix_socket_peer_is_its_own_client() -> None:
    assert client_ip(None, {"X-Forwarded-For": "1.2.3.4"}, TRUSTED) == "unix"
