"""NetworkModel: presets by name, explicit numbers, and reproducible draws from the device's rng."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.network import PRESETS, NetworkModel
from simulator.network.faults import Bandwidth


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
