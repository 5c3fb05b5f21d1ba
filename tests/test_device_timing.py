"""Sync durations whose true answer is known by hand, at time_scale 60 (as `syncsim run` uses it).

A duration is what the device's user lives through: transfers at their real length plus every wait
inside the sync (Retry-After, backoff, offline) at its full scenario length. A first sync spans all
its attempts, from the first request of the first to the end of the one that completes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from simulator.clock import ManualClock
from simulator.network import NetworkModel
from simulator.scenario import Scenario, parse_scenario
from tests.rig import Rig

SCALE = 60.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time_scale=SCALE)


def _accounts(rows: int = 600, row_bytes: int = 1000, **server: Any) -> Scenario:
    """One user reading `rows` accounts of about `row_bytes` each: rows x row_bytes to download."""
    return parse_scenario({
        "name": "timing", "seed": 3, "server": server,
        "tables": [{"logical_name": "account", "rows": rows, "row_bytes": row_bytes}],
        "user_classes": [{"name": "manager", "count": 1, "profile": [{"table": "account"}]}],
    })


def _link(kbps: float) -> NetworkModel:
    return NetworkModel(np.random.default_rng(0), down_kbps=kbps, up_kbps=kbps, name=f"{kbps:g}kbps")


async def test_a_600_kb_first_sync_on_a_100_kbps_link_takes_about_52_seconds(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_accounts())
    device = rig.device("manager-0001", network=_link(100), page_size=100)
    requests: list[str] = []
    rig.events.request.add_listener(lambda **kw: requests.append(kw["name"]))
    record = await device.sync_once()
    assert record.result == "success"
    assert record.bytes == pytest.approx(600_000, rel=0.03)
    # Nothing but transfer (no latency: no connection set-up, no slow-start wait), now of the bytes on
    # the wire: the bodies and 500 B of headers each way per request, x 1514/1448 for TCP/IP headers
    # and link framing, x (1 + 22/16384) for TLS records. 2 metadata requests + 6 pages of 100 rows.
    assert len(requests) == 8
    wire_bytes = (record.bytes + 8 * (500 + 500)) * 1514 / 1448 * (1 + 22 / 16384)
    assert record.duration_s == pytest.approx(wire_bytes * 8 / 100_000, rel=1e-6)
    assert 51 <= record.duration_s <= 53  # was 47 ... 50 (bodies alone)
    (first,) = rig.metrics.first_syncs
    assert first.finished and first.attempts == 1 and first.duration_s == record.duration_s
    assert first.rows == 600


async def test_retry_after_inside_a_sync_counts_at_its_full_scenario_length(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_accounts(rows=60, limits={"requests": 3, "window_s": 100}))
    device = rig.device("manager-0001", page_size=10)
    record = await device.sync_once()
    assert record.result == "success"
    told = [float(e.detail.rsplit("Retry-After ", 1)[1].rstrip("s")) for e in rig.metrics.events if e.kind == "throttled"]
    assert len(told) >= 2 and sum(told) >= 100
    assert record.waits_s["retry_after"] == pytest.approx(sum(told))
    assert record.duration_s == pytest.approx(sum(told))  # loopback transfers take no time on this clock


async def test_backoff_after_server_errors_counts_at_its_full_scenario_length(rig_factory: Any) -> None:
    failures = {"left": 3}

    @web.middleware
    async def three_503s(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET" and "EntityDefinitions" not in request.path and failures["left"]:
            failures["left"] -= 1
            return web.Response(status=503)
        return await handler(request)

    rig: Rig = await rig_factory(_accounts(rows=10), middlewares=[three_503s])
    device = rig.device("manager-0001")
    record = await device.sync_once()
    assert record.result == "success"
    assert record.waits_s == {"backoff": 2 + 4 + 8}  # backoff_s=2, doubling
    assert record.duration_s == pytest.approx(14)


async def test_a_first_sync_that_fails_and_resumes_is_timed_from_its_first_request(rig_factory: Any) -> None:
    pages = {"seen": 0, "armed": True}

    @web.middleware
    async def fail_fourth_page(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/accounts") and pages["armed"]:
            pages["seen"] += 1
            if pages["seen"] == 4:
                return web.Response(status=503)
        return await handler(request)

    rig: Rig = await rig_factory(_accounts(), middlewares=[fail_fourth_page])
    device = rig.device("manager-0001", network=_link(100), page_size=100)
    device.api.max_retries = 0
    failed = await device.sync_once()
    assert failed.mode == "FIRST_SYNC" and failed.result == "failed"
    assert failed.rows_by_table["account"] == 300
    await device.timeline.sleep(900, "idle")  # the device's idle interval before it tries again
    pages["armed"] = False
    done = await device.sync_once()
    assert done.result == "success"
    (first,) = rig.metrics.first_syncs
    assert first.finished and first.attempts == 2
    assert first.rows == 600
    assert first.duration_s == pytest.approx(failed.duration_s + 900 + done.duration_s)
    assert first.waits_s["between_attempts"] == pytest.approx(900)
    assert first.duration_s == pytest.approx(52 + 900, abs=3)  # 600 KB at 100 kbps: 52 s on the wire (above)
    assert first.error_code == "HTTP_503"


async def test_a_first_sync_never_completed_is_reported_unfinished_once_the_run_is_over(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(_accounts())
    device = rig.device("manager-0001", network=_link(100), page_size=100)
    seen: list[str] = []
    rig.events.request.add_listener(lambda **kw: seen.append(kw["name"]))
    task = asyncio.ensure_future(device.run(stop_at=rig.clock.now() + 10**6))
    while len(seen) < 4:  # metadata (2 requests) and two pages
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    device.end_of_run()  # the scenario's end: a final sync could still complete it
    assert rig.metrics.first_syncs == []
    device.first_sync_unfinished()  # the run is over (after the quiet period)
    (first,) = rig.metrics.first_syncs
    assert not first.finished and not first.after_end and first.attempts == 1
    assert 0 < first.rows < 600 and first.duration_s > 10
    assert rig.metrics.records == []  # the cut attempt has no sync record of its own


def test_the_edit_schedule_loses_no_edit_to_a_late_look_and_keeps_the_class_rate() -> None:
    import numpy as np

    from simulator.device.device import EditSchedule

    often, once = (EditSchedule(3600, np.random.default_rng(7)) for _ in range(2))  # one edit a second on average
    often.next_at(0.0)
    once.next_at(0.0)
    looked_often = sum(often.take_due(float(t)) for t in range(1, 1001))
    assert looked_often == once.take_due(1000.0)  # the same edits, whether the device looks every second or once
    assert 850 <= looked_often <= 1150  # Poisson: mean 1,000, sd ~32
    never = EditSchedule(0, np.random.default_rng(7))
    assert never.next_at(0.0) == float("inf") and never.take_due(1e9) == 0
