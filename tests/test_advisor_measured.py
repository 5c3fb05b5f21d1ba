"""The advisor's first-sync estimate against a measured first sync: one device, no competing load, on
each network preset (a manual clock, so the measurement is exact)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from simulator import advisor
from simulator.clock import ManualClock
from simulator.fleet import processing_of
from simulator.network import NetworkModel
from simulator.scenario import parse_scenario
from tests.rig import Rig

PRESETS = ["wifi", "4g", "3g", "2g", "edge", "satellite"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time_scale=60.0)


def _scenario(network: str, kind: str | None = None) -> Any:
    devices = {"devices": [{"storage_mb": 4096, "kind": kind}]} if kind else {}
    return parse_scenario({
        "name": "measured", "seed": 5,
        "tables": [{"logical_name": "account", "rows": 400, "row_bytes": 600},
                   {"logical_name": "msdyn_workorder", "rows": 3000, "row_bytes": 1000, "owned_by": ["technician"],
                    "columns": [{"name": "msdyn_account", "type": "lookup", "target": "account"}]}],
        "user_classes": [{"name": "technician", "count": 10, "networks": {network: 1.0}, **devices, "profile": [
            {"table": "account"}, {"table": "msdyn_workorder", "filter": "owner"}]}],
    })


@pytest.mark.parametrize("network", PRESETS)
async def test_the_estimate_is_within_10_percent_of_a_measured_first_sync(rig_factory: Any, network: str) -> None:
    scenario = _scenario(network)
    (estimate,) = advisor.report(scenario).classes
    expected = estimate.first_sync_s[network]["total"]
    rig: Rig = await rig_factory(scenario)
    p = scenario.network(network)  # without loss: a lost request adds a retry the estimate does not make
    model = NetworkModel(np.random.default_rng(11), latency_ms=p.latency_ms, jitter_ms=p.jitter_ms,
                         down_kbps=p.down_kbps, up_kbps=p.up_kbps, loss=0.0, name=network)
    record = await rig.device("technician-0001", network=model).sync_once()
    assert record.result == "success"
    assert record.duration_s == pytest.approx(expected, rel=0.10), (record.duration_s, expected, record.phases)


@pytest.mark.parametrize("network", PRESETS)
async def test_the_estimate_with_device_processing_is_within_10_percent_of_a_measured_first_sync(
        rig_factory: Any, network: str) -> None:
    # A mid-range phone: 0.5 s per table, 1,000 rows/s; about 1.7 s of its own work in this first sync
    # (2 tables, ~700 rows), after each table and page, idling the connection meanwhile (the keep-alive
    # counts the device's lived time, so these pauses keep it).
    scenario = _scenario(network, "mid_range_phone")
    (estimate,) = advisor.report(scenario).classes
    expected = estimate.first_sync_s[network]
    assert expected["processing"] == pytest.approx(2 * 0.5 + 700 / 1000)
    rig: Rig = await rig_factory(scenario)
    p = scenario.network(network)
    model = NetworkModel(np.random.default_rng(11), latency_ms=p.latency_ms, jitter_ms=p.jitter_ms,
                         down_kbps=p.down_kbps, up_kbps=p.up_kbps, loss=0.0, name=network)
    device = rig.device("technician-0001", network=model, processing=processing_of(scenario.user_classes[0].devices[0]))
    record = await device.sync_once()
    assert record.result == "success"
    assert sum(record.processing_s.values()) == pytest.approx(2 * 0.5 + record.rows / 1000)
    assert record.duration_s == pytest.approx(expected["total"], rel=0.10), (record.duration_s, expected, record.phases)
