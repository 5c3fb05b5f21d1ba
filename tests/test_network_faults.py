"""The network faults: each small parameter struct and its one method, and the registry by name."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.network.faults import FAULTS, Bandwidth, Latency, Loss, Throttle, register


def rng(seed: int = 7) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_each_fault_is_registered_under_its_name() -> None:
    assert FAULTS["latency"] is Latency
    assert FAULTS["bandwidth"] is Bandwidth
    assert FAULTS["loss"] is Loss


def test_registering_a_second_fault_under_a_taken_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'latency' is already registered by Latency"):
        register("latency")(type("Other", (), {}))
    assert FAULTS["latency"] is Latency


def test_latency_is_never_negative_even_with_jitter_far_above_the_mean() -> None:
    latency = Latency(mean_ms=10, jitter_ms=1000)
    generator = rng()
    delays = [latency.delay_s(generator) for _ in range(5000)]
    assert min(delays) == 0.0
    assert max(delays) > 1.0


def test_latency_without_jitter_is_exactly_the_mean_and_draws_no_random_numbers() -> None:
    generator = rng()
    before = generator.bit_generator.state
    assert Latency(mean_ms=250).delay_s(generator) == 0.25
    assert generator.bit_generator.state == before


def test_latency_draws_are_spread_around_the_mean_in_seconds() -> None:
    generator = rng()
    delays = np.array([Latency(mean_ms=150, jitter_ms=50).delay_s(generator) for _ in range(20_000)])
    assert delays.mean() == pytest.approx(0.150, abs=0.002)
    assert delays.std() == pytest.approx(0.050, abs=0.002)


def test_latency_draws_are_the_same_for_the_same_seed() -> None:
    latency = Latency(mean_ms=50, jitter_ms=15)
    first, second = rng(3), rng(3)
    assert [latency.delay_s(first) for _ in range(100)] == [latency.delay_s(second) for _ in range(100)]


@pytest.mark.parametrize(("mean_ms", "jitter_ms"), [(-1, 0), (0, -1)])
def test_latency_rejects_negative_parameters(mean_ms: float, jitter_ms: float) -> None:
    with pytest.raises(ValueError, match="mean_ms >= 0 and jitter_ms >= 0"):
        Latency(mean_ms, jitter_ms)


def test_bandwidth_gives_the_seconds_a_transfer_takes_from_kilobits_per_second() -> None:
    assert Bandwidth(kbps=2000).seconds_for(250_000) == 1.0
    assert Bandwidth(kbps=8).seconds_for(1) == 0.001
    assert Bandwidth(kbps=100).seconds_for(0) == 0.0


@pytest.mark.parametrize("kbps", [0, -5])
def test_bandwidth_rejects_a_rate_that_is_not_positive(kbps: float) -> None:
    with pytest.raises(ValueError, match="kbps must be > 0"):
        Bandwidth(kbps)


def test_a_throttle_waits_until_the_bytes_counted_so_far_are_through() -> None:
    throttle = Throttle(Bandwidth(kbps=8), start_s=10.0)  # 1000 bytes per second
    throttle.add(500)
    assert throttle.wait_s(now_s=10.0) == 0.5
    assert throttle.wait_s(now_s=10.2) == pytest.approx(0.3)


def test_a_throttle_makes_up_for_oversleeping_on_the_next_chunk() -> None:
    throttle = Throttle(Bandwidth(kbps=8), start_s=0.0)
    throttle.add(500)
    now_s = 0.7  # slept 0.2 s too long for the first 500 bytes
    throttle.add(500)
    assert throttle.wait_s(now_s) == pytest.approx(0.3)  # total still lands on 1.0 s
    throttle.add(100)
    assert throttle.wait_s(now_s=5.0) == 0.0  # never negative


def test_an_unlimited_throttle_never_waits() -> None:
    throttle = Throttle(None, start_s=0.0)
    throttle.add(10**9)
    assert throttle.wait_s(now_s=0.0) == 0.0
    assert throttle.sent_bytes == 10**9


def test_loss_zero_never_fails_and_loss_one_always_fails() -> None:
    generator = rng()
    assert not any(Loss(0.0).fails(generator) for _ in range(1000))
    assert all(Loss(1.0).fails(generator) for _ in range(1000))


def test_loss_fails_about_as_often_as_its_probability() -> None:
    generator = rng()
    failures = sum(Loss(0.3).fails(generator) for _ in range(20_000))
    assert failures / 20_000 == pytest.approx(0.3, abs=0.01)


def test_loss_draws_are_the_same_for_the_same_seed() -> None:
    loss = Loss(0.5)
    first, second = rng(11), rng(11)
    assert [loss.fails(first) for _ in range(200)] == [loss.fails(second) for _ in range(200)]


@pytest.mark.parametrize("probability", [-0.1, 1.5])
def test_loss_rejects_a_probability_outside_zero_to_one(probability: float) -> None:
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        Loss(probability)
