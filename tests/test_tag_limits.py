"""Chained shots start without waiting for Prefect's tag-limit check (issue 14): the answer is fetched ahead."""

from __future__ import annotations

import time

import pytest


def _cached(key: frozenset[str]) -> bool:
    from prefect.concurrency import services

    with services._cache_lock:
        return bool(services._no_limits_cache.get(key, False))


@pytest.mark.slow  # a Prefect server
@pytest.mark.usefixtures("prefect_server")
def test_tags_without_limits_are_known_ahead_and_a_tag_with_a_limit_is_left_to_the_engine() -> None:
    from prefect import tags
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from storyfilm import _prefect

    free = frozenset({"tag:film:ahead", "tag:provider:ahead"})
    with tags("film:ahead", "provider:ahead"), _prefect.tag_limits_checked_ahead(every=0.1) as thread:
        assert thread is not None
        deadline = time.monotonic() + 60
        while not _cached(free) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _cached(free)  # what the engine reads before a task run starts: no API call on the hand-over
    thread.join(timeout=10)
    assert not thread.is_alive()  # stops with the block

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="tag:provider:limited", limit=1))
    limited = frozenset({"tag:film:ahead", "tag:provider:limited"})
    with tags("film:ahead", "provider:limited"), _prefect.tag_limits_checked_ahead(every=0.1) as thread:
        assert thread is not None
        thread.join(timeout=60)
        assert not thread.is_alive()  # it found the limit and left
        assert not _cached(limited)  # the engine acquires that limit's slots itself, as always
