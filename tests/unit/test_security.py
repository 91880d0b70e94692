"""Pure pieces of the security work: masking, the write guard, the state dir rules, bounds."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cluster.supervisor.exposure import exposed_binds
from cluster.supervisor.queue_tier import redis_config, redis_maxmemory
from cluster.safe_files import write_file
from cluster.supervisor.state_dir import StateDirError, prepare, problems
from cluster.config import ConfigError, Settings, load, mask, mask_text, mask_url
from cluster.workers.admin_guard import origin_matches, write_refusal


@pytest.mark.parametrize("url, shown", [
    ("redis://:s3cret@h:6379/0", "redis://:****@h:6379/0"),
    ("postgresql://app:p%40ss@db:5432/x", "postgresql://app:****@db:5432/x"),
    ("unix://:pw@/run/redis.sock", "unix://:****@/run/redis.sock"),
    ("https://api.telegram.org/bot123:ABC-def/sendMessage", "https://api.telegram.org/bot****/sendMessage"),
    ("https://h/hook?password=s3&team=ops", "https://h/hook?password=****&team=ops"),
    ("https://h/hook?api_key=s3&token=t", "https://h/hook?api_key=****&token=****"),
    ("https://h/plain?team=ops", "https://h/plain?team=ops"),
    ("redis://h:6379/0", "redis://h:6379/0"),
])
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_text_masks_urls_inside_prose_and_keeps_punctuation() -> None:
    text = "429 from https://t.example/bot9:XYZ/sendMessage: retry; see redis://u:pw@h:1."
    assert mask_text(text) == "429 from https://t.example/bot****/sendMessage: retry; see redis://u:****@h:1."


def test_webhook_headers_are_masked_but_the_allow_list() -> None:
    headers = {"X-Api-Key": "k", "Cookie": "c", "X-Signature": "s", "X-Team": "t",
               "Content-Type": "application/json", "User-Agent": "cluster", "Accept": "*/*"}
    assert mask("alerts.webhook_headers", headers) == {
        "X-Api-Key": "****", "Cookie": "****", "X-Signature": "****", "X-Team": "****",
        "Content-Type": "application/json", "User-Agent": "cluster", "Accept": "*/*"}
    assert mask("alerts.webhook_headers.X-Team", "t") == "****"
    assert mask("alerts.smtp_password", "12345678") == "****"
    assert mask("admin.token", "x") == "****"


def test_config_errors_never_echo_a_rejected_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        load(env={"REDIS_URL": "http://u:s3cretRedis@h:6379", "CLUSTER_ALERTS_SMTP_PASSWORD": "x",
                  "CLUSTER_ALERTS_WEBHOOK_HEADERS": '{"X-Api-Key": 12345678}'}, use_default_files=False)
    text = "\n".join(caught.value.problems)
    assert "s3cretRedis" not in text and "12345678" not in text
    assert "redis.url" in text and "u:****@h" in text


@pytest.mark.parametrize("method, headers, refusal", [
    ("GET", {}, None),
    ("POST", {"Content-Type": "application/json"}, None),
    ("POST", {"Content-Type": "application/json; charset=utf-8", "Origin": "http://h:8000", "Host": "h:8000"}, None),
    ("POST", {"Content-Type": "text/plain"}, 415),
    ("POST", {}, 415),
    ("DELETE", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ("POST", {"Content-Type": "application/json", "Origin": "https://evil.example", "Host": "h:8000"}, 403),
    ("POST", {"Content-Type": "application/json", "Origin": "null", "Host": "h:8000"}, 403),
])
def test_write_refusal(method: str, headers: dict[str, str], refusal: int | None) -> None:
    got = write_refusal(method, headers)
    assert (got[0] if got else None) == refusal


def test_origin_matches() -> None:
    assert origin_matches(None, "h")
    assert origin_matches("http://H:80", "h:80")
    assert not origin_matches("http://h:81", "h:80")


def test_exposed_binds() -> None:
    assert exposed_binds(["127.0.0.1:8000", "[::1]:8000", "localhost:1", "unix:/run/x.sock"]) == []
    assert exposed_binds(["0.0.0.0:8000", "[::]:80", "10.0.0.5:1", "example.com:80"]) == [
        "0.0.0.0:8000", "[::]:80", "10.0.0.5:1", "example.com:80"]


def _stat(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))


def test_state_dir_problems() -> None:
    short = Path("/srv/cluster")
    assert problems(short, _stat(stat.S_IFDIR | 0o700, 1000), 1000) == []
    assert problems(short, _stat(stat.S_IFDIR | 0o755, 1000), 1000) == []
    assert "owned by uid 0" in problems(short, _stat(stat.S_IFDIR | 0o700, 0), 1000)[0]
    assert "writable by group or others" in problems(short, _stat(stat.S_IFDIR | 0o770, 1000), 1000)[0]
    assert "writable by group or others" in problems(short, _stat(stat.S_IFDIR | 0o702, 1000), 1000)[0]
    assert "too long" in problems(Path("/" + "x" * 100), _stat(stat.S_IFDIR | 0o700, 1000), 1000)[0]


def test_prepare_creates_0700_and_tightens_a_readable_dir(tmp_path: Path) -> None:
    fresh = prepare(tmp_path / "a" / "state")
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    readable = tmp_path / "readable"
    readable.mkdir(mode=0o755)
    os.chmod(readable, 0o755)
    prepare(readable)
    assert stat.S_IMODE(os.stat(readable).st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(fresh)
    with pytest.raises(StateDirError, match="symlink"):
        prepare(link)


def test_write_file_replaces_a_planted_symlink_and_leaves_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "settings.json").symlink_to(victim)
    write_file(tmp_path / "settings.json", "{}")
    assert victim.read_text() == "precious"
    st = os.lstat(tmp_path / "settings.json")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert (tmp_path / "settings.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json", "victim"]


def test_embedded_redis_config_has_a_password_a_bound_and_no_tcp(tmp_path: Path) -> None:
    conf = redis_config(tmp_path, "pw", 123)
    assert "requirepass pw" in conf and "maxmemory 123" in conf and "maxmemory-policy noeviction" in conf
    assert "port 0" in conf and f"unixsocket {tmp_path / 'redis.sock'}" in conf


def test_redis_maxmemory_follows_the_queue_bounds() -> None:
    small = Settings.model_validate({"queues": {p: {"max_size": 10} for p in ("high", "medium", "low", "background")}})
    assert redis_maxmemory(small) < redis_maxmemory(Settings())
    assert redis_maxmemory(Settings.model_validate({"redis": {"maxmemory_mb": 3}})) == 3 * 1024 * 1024


@pytest.mark.parametrize("env", [
    {"CLUSTER_WORKERS_MAX": "1000000"},
    {"QUEUE_HIGH_WORKERS": "500"},
    {"CLUSTER_QUEUES_LOW_CONCURRENCY": "100000"},
    {"CLUSTER_QUEUES_HIGH_MAX_SIZE": "100000000"},
    {"DB_POOL_SIZE": "100000"},
    {"CLUSTER_SERVER_MAX_BODY_SIZE": str(1 << 40)},
])
def test_counts_and_sizes_have_upper_bounds(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="less than or equal"):
        load(env=env, use_default_files=False)


def test_log_lines_are_redacted_once_a_redactor_is_set() -> None:
    import io
    import logging

    from cluster.observability import logs

    stream = io.StringIO()
    logger = logging.getLogger("test.redact")
    handler = logs.make_handler("json", stream=stream)
    logger.addHandler(handler)
    try:
        logs.redact_with(mask_text)
        logger.warning("cannot reach %s", "redis://:hunter2@h:6379/0")
    finally:
        logs.redact_with(None)
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "hunter2" not in line and "redis://:****@h:6379/0" in line


@pytest.mark.parametrize("env, key", [
    ({"CLUSTER_ADMIN_TOKEN": "a"}, "admin.token"),
    ({"CLUSTER_ADMIN_TOKEN": "fifteen-chars-x"}, "admin.token"),
    ({"CLUSTER_ALERTS_ACK_SECRET": "a"}, "alerts.ack_secret"),
    ({"CLUSTER_SERVER_TRUSTED_PROXIES": '["nginx"]'}, "server.trusted_proxies"),
    ({"CLUSTER_SERVER_TRUSTED_PROXIES": '["10.0.0.0/33"]'}, "server.trusted_proxies"),
    ({"CLUSTER_SERVER_UNIX_MODE": "0999"}, "server.unix_mode"),
    ({"CLUSTER_SERVER_FORWARDED_HEADER": "X-Forwarded-For: x"}, "server.forwarded_header"),
])
def test_short_secrets_and_proxy_names_are_config_errors_naming_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(env=env, use_default_files=False)
    text = "\n".join(caught.value.problems)
    assert key in text, text
    assert "fifteen-chars-x" not in text  # a rejected secret is never echoed


def test_long_enough_secrets_and_address_proxies_pass() -> None:
    settings = load(env={"CLUSTER_ADMIN_TOKEN": "x" * 16, "CLUSTER_ALERTS_ACK_SECRET": "y" * 16,
                         "CLUSTER_SERVER_TRUSTED_PROXIES": '["127.0.0.1", "10.0.0.0/8", "::1"]'},
                    use_default_files=False).settings
    assert settings.admin.token == "x" * 16 and settings.server.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "::1"]


def test_unix_sockets_are_created_0600_unless_set_otherwise() -> None:
    from cluster.arbiter.http_tier import unix_umask

    assert unix_umask(Settings().server.unix_mode) == 0o177
    assert unix_umask("0660") == 0o117


def test_exposure_warnings(caplog: pytest.LogCaptureFixture) -> None:
    from cluster.supervisor.exposure import warn_if_exposed

    def warnings(data: dict) -> str:
        caplog.clear()
        warn_if_exposed(Settings.model_validate(data))
        return "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")

    caplog.set_level("WARNING", logger="cluster.security")
    default = warnings({})
    assert "trust_local" in default and "tunnel" in default and "reachable" not in default
    assert "metrics.bind 10.0.0.5:8199" in warnings({"metrics": {"bind": "10.0.0.5:8199"}})
    assert "metrics.bind" not in warnings({"metrics": {"bind": "10.0.0.5:8199"}, "admin": {"token": "t" * 16}})
    shared = warnings({"server": {"bind": ["unix:/run/c.sock"], "unix_mode": "0666"}})
    assert "unix:/run/c.sock" in shared and "0666" in shared
    assert "unix:" not in warnings({"server": {"bind": ["unix:/run/c.sock"]}})
    assert warnings({"admin": {"trust_local": False}}) == ""
