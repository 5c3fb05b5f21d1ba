"""The advisor's first-sync estimate against a measured first sync: one device, no competing load, on
each network preset (a manual clock, so the measurement is exact)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from simulator import advisor
from simulator.clock import ManualClock
from simulator.network import NetworkModel
from simulator.scenario import parse_scenario
from tests.rig import Rig

PRESETS = ["wifi", "4g", "3g", "2g", "edge", "satellite"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time_scale=60.0)


def _scenario(network: str) -> Any:
    return parse_scenario({
        "name": "measured", "seed": 5,
        "tables": [{"logical_name": "account", "rows": 400, "row_bytes": 600},
                   {"logical_name": "msdyn_workorder", "rows": 3000, "row_bytes": 1000, "owned_by": ["technician"],
                    "columns": [{"name": "msdyn_account", "type": "lookup", "target": "account"}]}],
        "user_classes": [{"name": "technician", "count": 10, "networks": {network: 1.0}, "profile": [
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
