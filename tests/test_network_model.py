"""NetworkModel: presets by name, explicit numbers, reproducible draws from the device's rng, and the
device's modelled connections (settings from the scenario, state from the clock)."""

from __future__ import annotations

from typing import Any

import aiohttp
import numpy as np
import pytest

from simulator.clock import ManualClock, RealClock
from simulator.events import Events
from simulator.fleet import build_fleet, connection_of
from simulator.network import PRESETS, NetworkModel
from simulator.network.faults import Bandwidth, Connection
from simulator.runner import FleetRun, make_device
from simulator.scenario import ScenarioError, parse_scenario


def rng(seed: int = 42) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_the_documented_presets_all_exist() -> None:
    assert set(PRESETS) == {"wifi", "4g", "3g", "2g", "edge", "satellite", "loopback"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_model_from_a_preset_carries_that_presets_numbers(name: str) -> None:
    preset = PRESETS[name]
    model = NetworkModel.from_preset(name, rng())
    assert model.name == name
    assert (model.latency.mean_ms, model.latency.jitter_ms) == (preset.latency_ms, preset.jitter_ms)
    assert model.loss.probability == preset.loss
    assert model.down == (None if preset.down_kbps is None else Bandwidth(preset.down_kbps))
    assert model.up == (None if preset.up_kbps is None else Bandwidth(preset.up_kbps))


def test_an_unknown_preset_is_refused_naming_it_and_the_allowed_names() -> None:
    with pytest.raises(ValueError) as error:
        NetworkModel.from_preset("5g", rng())
    message = str(error.value)
    assert "'5g'" in message
    assert "2g, 3g, 4g, edge, loopback, satellite, wifi" in message


def test_loopback_adds_no_latency_no_loss_and_no_bandwidth_limit() -> None:
    model = NetworkModel.from_preset("loopback", rng())
    assert [model.draw_latency_s() for _ in range(10)] == [0.0] * 10
    assert not any(model.draw_lost() for _ in range(1000))
    assert model.down is None and model.up is None


def test_explicit_parameters_build_a_model_without_a_preset() -> None:
    model = NetworkModel(rng(), latency_ms=200, down_kbps=2000, up_kbps=500, loss=0.25)
    assert model.draw_latency_s() == 0.2
    assert model.down == Bandwidth(2000) and model.up == Bandwidth(500)
    assert model.loss.probability == 0.25


def test_explicit_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="kbps must be > 0"):
        NetworkModel(rng(), down_kbps=0)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        NetworkModel(rng(), loss=2)


def test_two_models_with_the_same_seed_draw_the_same_latencies_and_losses() -> None:
    def draws(model: NetworkModel) -> list[tuple[float, bool]]:
        return [(model.draw_latency_s(), model.draw_lost()) for _ in range(500)]

    first = draws(NetworkModel(rng(5), latency_ms=100, jitter_ms=400, loss=0.3))
    second = draws(NetworkModel(rng(5), latency_ms=100, jitter_ms=400, loss=0.3))
    other_seed = draws(NetworkModel(rng(6), latency_ms=100, jitter_ms=400, loss=0.3))
    assert first == second
    assert first != other_seed
    assert min(latency for latency, _ in first) == 0.0  # large jitter: clipped, never negative


def test_preset_latency_draws_average_to_the_preset_mean_in_seconds() -> None:
    model = NetworkModel.from_preset("3g", rng())
    delays = np.array([model.draw_latency_s() for _ in range(20_000)])
    assert delays.mean() == pytest.approx(0.150, abs=0.002)
    assert delays.min() >= 0.0


# --- the modelled connections ------------------------------------------------------------------------
def test_a_model_has_tls_and_a_60_second_keep_alive_by_default_and_takes_other_settings() -> None:
    assert NetworkModel(rng()).connection == Connection(tls=True, keepalive_s=60)
    own = Connection(tls=False, keepalive_s=5)
    assert NetworkModel.from_preset("4g", rng(), connection=own).connection is own


def test_the_model_decides_new_connections_from_the_times_it_is_given() -> None:
    """Keep-alive in the device's lived seconds, slow start after idle in real seconds; a new model
    (another network) starts with no connection."""
    model = NetworkModel(rng(), latency_ms=50)
    tcp, setup_s = model.open(lived_s=0, real_s=0, rtt_s=0.05)
    assert tcp.fresh and setup_s == 0.1  # TCP + TLS
    model.close(tcp, lived_s=1, real_s=1, bytes_up=0, bytes_down=200 * 1448)
    grown = tcp.down
    again, setup_s = model.open(lived_s=59, real_s=1.1, rtt_s=0.05)  # 58 lived s idle, 0.1 real s
    assert again is tcp and setup_s == 0.0 and tcp.down == grown
    model.close(tcp, lived_s=59, real_s=1.1, bytes_up=0, bytes_down=0)
    again, _ = model.open(lived_s=60, real_s=2.1, rtt_s=0.05)  # 1 real s idle: 4 RTOs, windows rested
    assert again is tcp and tcp.down == max(10, grown / 16)
    model.close(tcp, lived_s=60, real_s=2.1, bytes_up=0, bytes_down=0)
    model.drop_connections()
    assert model.open(lived_s=61, real_s=2.2, rtt_s=0.05)[0].fresh
    assert NetworkModel(rng(), latency_ms=50).open(lived_s=61, real_s=2.2, rtt_s=0.05)[1] == 0.1


def test_a_scenario_class_sets_its_connection_and_bad_settings_name_the_field() -> None:
    base = {"name": "c", "tables": [{"logical_name": "account", "rows": 10}]}

    def scenario(connection: dict[str, Any]) -> Any:
        return parse_scenario({**base, "user_classes": [{"name": "tech", "count": 1, "connection": connection,
                                                          "profile": [{"table": "account"}]}]})

    cls = scenario({"tls": False, "keepalive_s": 30}).user_classes[0]
    assert connection_of(cls) == Connection(tls=False, keepalive_s=30)
    assert connection_of(scenario({}).user_classes[0]) == Connection()
    with pytest.raises(ScenarioError, match=r"user_classes\.0\.connection\.keepalive_s: Input should be greater "
                                            r"than or equal to 0 \(got -1\)"):
        scenario({"keepalive_s": -1})
    with pytest.raises(ScenarioError, match=r"user_classes\.0\.connection\.keep_alive_s: unknown field"):
        scenario({"keep_alive_s": 30})


async def test_a_device_of_the_fleet_gets_its_classs_connection_and_its_pool_a_keep_alive_that_never_cuts_the_models(
) -> None:
    s = parse_scenario({"name": "c", "tables": [{"logical_name": "account", "rows": 10}],
                        "user_classes": [{"name": "tech", "count": 1, "networks": {"3g": 1.0},
                                          "connection": {"tls": False, "keepalive_s": 0},
                                          "profile": [{"table": "account"}]}]})
    (entry,) = build_fleet(s)
    async with aiohttp.ClientSession() as session:
        device = make_device(entry, ManualClock(), session, None, "http://127.0.0.1:9", Events(), 0.0)  # type: ignore[arg-type]
    assert device.link.model.connection == Connection(tls=False, keepalive_s=0)
    assert device.link.timeline is device.api.timeline is device.timeline  # keep-alive on the device's lived time
    # The pool's own keep-alive, a safety net (the link drops the pool when the model says): the longest real
    # time a connection the model keeps 60 lived seconds can be idle, 60 real s from time_scale 1 up (a real
    # pause counts 1:1), 60 / time_scale real s below (a wait counts its scenario length).
    for time_scale, keepalive_s, force_close, real_s in [(60, 0, True, None), (60, 60, False, 60.0),
                                                          (1, 60, False, 60.0), (0.5, 60, False, 120.0)]:
        pool = FleetRun(s, report=False, clock=RealClock(time_scale)).device_pool(keepalive_s)
        assert pool.connector is not None and pool.connector.force_close is force_close
        if real_s is not None:
            assert pool.connector._keepalive_timeout == real_s  # aiohttp keeps no public reading of it
        await pool.close()
