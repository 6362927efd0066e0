"""The Faust app of `scalp streams` builds its worker consumer with our fetch wait, not Faust's fixed 1500 ms."""

from __future__ import annotations

import asyncio

from streams.transport import App


def _worker_consumer(app: App) -> object:
    async def build() -> object:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        return thread._create_worker_consumer(app.transport)

    return asyncio.run(build())


def test_the_worker_consumer_waits_at_most_the_configured_time() -> None:
    app = App("transport-test", broker="kafka://127.0.0.1:9", store="memory://", fetch_max_wait_ms=37)
    consumer = _worker_consumer(app)
    assert consumer._fetch_max_wait_ms == 37  # type: ignore[attr-defined]


def test_without_a_setting_faust_keeps_its_own_wait() -> None:
    app = App("transport-test-default", broker="kafka://127.0.0.1:9", store="memory://")
    assert _worker_consumer(app)._fetch_max_wait_ms == 1500  # type: ignore[attr-defined]
