"""A scenario's own networks, usable wherever a preset is: validation, the device's link, the advisor,
and a first sync whose time is known by hand."""

from __future__ import annotations

from typing import Any

import aiohttp
import numpy as np
import pytest

from simulator import advisor
from simulator.clock import ManualClock
from simulator.events import Events
from simulator.fleet import build_fleet
from simulator.network import NetworkModel
from simulator.runner import make_device
from simulator.scenario import ScenarioError, parse_scenario
from tests.rig import Rig


def _scenario(networks: dict[str, Any], uses: str = "depot_wifi") -> Any:
    return parse_scenario({
        "name": "nets", "seed": 3, "networks": networks,
        "tables": [{"logical_name": "account", "rows": 60, "row_bytes": 1000}],
        "user_classes": [{"name": "manager", "count": 1, "networks": {uses: 1.0}, "profile": [{"table": "account"}]}],
    })


DEPOT = {"depot_wifi": {"latency_ms": 0, "down_kbps": 100, "up_kbps": 50}}


def test_a_class_may_use_the_scenarios_own_network_and_an_unknown_name_is_named() -> None:
    s = _scenario(DEPOT)
    assert s.network("depot_wifi").down_kbps == 100 and s.network("3g").down_kbps == 2000  # presets stay
    with pytest.raises(ScenarioError, match=r"user_classes.0.networks: network 'basement' is neither a preset nor "
                                            r"one of the scenario's networks: Input should be 'wifi', .*'depot_wifi'"):
        _scenario(DEPOT, uses="basement")
    with pytest.raises(ScenarioError, match="'wifi' is a preset's name"):
        _scenario({"wifi": {"latency_ms": 1}}, uses="wifi")


async def test_a_device_on_a_custom_network_gets_its_figures() -> None:
    s = _scenario(DEPOT)
    (entry,) = build_fleet(s)
    async with aiohttp.ClientSession() as session:
        device = make_device(entry, ManualClock(), session, None, "http://127.0.0.1:9", Events(), 0.0,  # type: ignore[arg-type]
                             s.network)
    model = device.link.model
    assert (model.name, model.down.kbps if model.down else None, model.latency.mean_ms) == ("depot_wifi", 100, 0)


def test_the_advisor_estimates_on_the_custom_network() -> None:
    (c,) = advisor.report(_scenario(DEPOT)).classes
    # No latency: one page, its 60,000 B + 500 B of headers down at 100 kbps and 500 B of request headers
    # up at 50 kbps, on the wire (x 1514/1448 for TCP/IP and link framing, x (1 + 22/16384) for TLS).
    wire = 1514 / 1448 * (1 + 22 / 16384)
    data_s = 60_500 * wire * 8 / 100_000 + 500 * wire * 8 / 50_000
    assert c.first_sync_s["depot_wifi"]["data"] == pytest.approx(data_s)  # 5.15 s, was 4.8 s (bodies alone)


async def test_a_first_sync_on_a_custom_network_takes_its_bytes_over_its_bandwidth(rig_factory: Any) -> None:
    s = _scenario(DEPOT)
    rig: Rig = await rig_factory(s)
    network = NetworkModel.from_preset("depot_wifi", np.random.default_rng(0), s.network("depot_wifi"))
    requests: list[str] = []
    rig.events.request.add_listener(lambda **kw: requests.append(kw["name"]))
    record = await rig.device("manager-0001", network=network).sync_once()
    assert record.result == "success"
    # Nothing but transfer (no latency: no set-up, no slow-start wait) of the bytes on the wire: the
    # bodies and 500 B of response headers per request down at 100 kbps, 500 B of request headers up at
    # 50 kbps, x 1514/1448 (TCP/IP, link framing) x (1 + 22/16384) (TLS records).
    wire = 1514 / 1448 * (1 + 22 / 16384)
    down_s = (record.bytes + 500 * len(requests)) * wire * 8 / 100_000
    up_s = 500 * len(requests) * wire * 8 / 50_000
    assert record.duration_s == pytest.approx(down_s + up_s, rel=1e-6)


async def test_a_network_change_on_schedule_shows_in_the_events_and_the_records(rig_factory: Any) -> None:
    s = parse_scenario({
        "name": "roam", "seed": 3, "networks": DEPOT,
        "tables": [{"logical_name": "account", "rows": 20, "row_bytes": 500}],
        "user_classes": [{"name": "manager", "count": 1, "networks": {"depot_wifi": 1.0},
                          "profile": [{"table": "account"}],
                          "behaviour": {"sync_interval_s": 300, "sync_jitter": 0, "edits_per_hour": 0,
                                        "network_changes": [{"at_s": 700, "network": "3g"}]}}],
    })
    rig: Rig = await rig_factory(s)
    start = NetworkModel.from_preset("depot_wifi", np.random.default_rng(0), s.network("depot_wifi"))
    device = rig.device("manager-0001", network=start)
    device.network_for = lambda name: NetworkModel.from_preset(name, np.random.default_rng(1), s.network(name))
    await device.run(stop_at=device.origin + 1500)
    changes = [e for e in rig.metrics.events if e.kind == "network_change"]
    assert [e.detail for e in changes] == ["depot_wifi -> 3g"] and changes[0].at == pytest.approx(device.origin + 700)
    by_network = {(r.start < device.origin + 700, r.network) for r in rig.metrics.records}
    assert by_network == {(True, "depot_wifi"), (False, "3g")}


def test_a_network_change_to_an_unknown_network_is_named() -> None:
    with pytest.raises(ScenarioError, match="network 'moon' is neither a preset"):
        parse_scenario({
            "name": "roam", "seed": 3,
            "tables": [{"logical_name": "account", "rows": 20}],
            "user_classes": [{"name": "manager", "count": 1, "profile": [{"table": "account"}],
                              "behaviour": {"roaming": {"mean_s": 60, "networks": {"wifi": 1, "moon": 1}}}}],
        })
