"""A unique job's key and TTL checks, and the registry's wrapping of its handler: pure, no Redis."""

from __future__ import annotations

import pytest

from cluster.queues import registry
from cluster.queues.unique_lock import MAX_UNIQUE_FOR, check_unique_for, default_key


def test_the_default_key_is_the_name_and_the_arguments() -> None:
    key = default_key("rebuild", (42,), {"full": True})
    assert key.startswith("rebuild:")
    assert key == default_key("rebuild", [42], {"full": True})  # args as list or tuple: same job
    assert key != default_key("rebuild", (43,), {"full": True})
    assert key != default_key("other", (42,), {"full": True})
    assert default_key("r", (), {"a": 1, "b": 2}) == default_key("r", (), {"b": 2, "a": 1})


@pytest.mark.parametrize("seconds", [0, -1, MAX_UNIQUE_FOR + 1, True, "60", float("nan")])
def test_unique_for_is_bounded_seconds(seconds: object) -> None:
    with pytest.raises(ValueError, match="unique_for must be"):
        check_unique_for(seconds)  # type: ignore[arg-type]


def test_a_unique_job_keeps_its_kind_and_can_be_registered_again() -> None:
    async def handler() -> None: ...

    def sync_handler() -> None: ...

    assert registry.job("unit-unique.async", unique_for=5)(handler) is handler
    assert registry.job("unit-unique.sync", unique_for=5)(sync_handler) is sync_handler
    try:
        spec = registry.get("unit-unique.async")
        assert spec.is_async and spec.unique_for == 5.0 and spec.func is not handler
        assert spec.func.__wrapped__ is handler  # type: ignore[attr-defined]
        assert not registry.get("unit-unique.sync").is_async
        registry.job("unit-unique.async", unique_for=5)(handler)  # a module imported twice: no error
        with pytest.raises(ValueError, match="already registered"):
            registry.job("unit-unique.async", unique_for=5)(sync_handler)
    finally:
        registry.REGISTRY.pop("unit-unique.async", None)
        registry.REGISTRY.pop("unit-unique.sync", None)
