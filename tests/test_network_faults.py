"""The network faults: each small parameter struct and its one method, and the registry by name."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.network.faults import (
    FAULTS,
    Bandwidth,
    Connection,
    Connections,
    Latency,
    Loss,
    Tcp,
    Throttle,
    register,
)
from simulator.network.faults.connection import POOL_CONNECTIONS, stall_s


def rng(seed: int = 7) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_each_fault_is_registered_under_its_name() -> None:
    assert FAULTS["latency"] is Latency
    assert FAULTS["bandwidth"] is Bandwidth
    assert FAULTS["loss"] is Loss
    assert FAULTS["connection"] is Connection


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


def test_a_throttle_follows_a_given_schedule_instead_of_its_bandwidth() -> None:
    throttle = Throttle(None, start_s=1.0, due=lambda n: 0.5 + n / 1000)  # 0.5 s before the first byte
    assert throttle.wait_s(now_s=1.0) == 0.5
    throttle.add(1000)
    assert throttle.wait_s(now_s=1.0) == 1.5


# --- connection: wire bytes, set-up, slow start ------------------------------------------------------
def test_a_full_segment_takes_1514_bytes_on_the_wire_so_goodput_is_the_references_calibration() -> None:
    """NETWORK_FIDELITY.md: steady TCP goodput 47.8 / 19.1 / 1.915 Mbit/s on wifi / 4g / 3g, that is
    the nominal rate x 1448/1514."""
    plain, tls = Connection(tls=False), Connection(tls=True)
    assert plain.wire_bytes(1448) == pytest.approx(1514)
    assert tls.wire_bytes(16_384) == pytest.approx((16_384 + 22) * 1514 / 1448)  # + a TLS record's framing
    for kbps, goodput_mbps in [(50_000, 47.8), (20_000, 19.1), (2_000, 1.915)]:
        seconds = plain.leg_s(Bandwidth(kbps), window=1e9, rtt_s=0.05, nbytes=10_000_000)
        assert 10_000_000 * 8 / seconds / 1e6 == pytest.approx(goodput_mbps, abs=0.05)


def test_a_new_connection_costs_one_round_trip_for_tcp_and_one_more_for_tls_1_3() -> None:
    assert Connection(tls=False).setup_s(0.05) == 0.05
    assert Connection(tls=True).setup_s(0.05) == 0.1


def test_connection_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="keepalive_s must be >= 0"):
        Connection(keepalive_s=-1)


def test_slow_start_waits_one_round_trip_per_window_when_bandwidth_is_unlimited() -> None:
    # 10 segments fit the first window; 11 need a second one (10 + 20); 31 a third (10 + 20 + 40).
    assert stall_s(10, 10 * 1448, rtt_s=0.1, segment_s=0.0) == 0.0
    assert stall_s(10, 11 * 1448, rtt_s=0.1, segment_s=0.0) == pytest.approx(0.1)
    assert stall_s(10, 31 * 1448, rtt_s=0.1, segment_s=0.0) == pytest.approx(0.2)
    assert stall_s(10, 11 * 1448, rtt_s=0.0, segment_s=0.0) == 0.0  # no round trip, no wait


def test_slow_start_stops_waiting_once_a_window_fills_the_pipe() -> None:
    """Window k waits segment_s + rtt_s - w_k segment_s after it is sent, while that is positive:
    with 1 ms segments and a 30 ms round trip the pipe holds 31 segments, so the windows of 10 and 20
    wait 21 ms and 11 ms, and from the window of 40 on the link is busy."""
    assert stall_s(10, 1000 * 1448, rtt_s=0.030, segment_s=0.001) == pytest.approx(0.021 + 0.011)
    assert stall_s(10, 25 * 1448, rtt_s=0.030, segment_s=0.001) == pytest.approx(0.021)  # needs windows 10 and 20
    assert stall_s(40, 1000 * 1448, rtt_s=0.030, segment_s=0.001) == 0.0  # a grown window: no wait


def test_50_row_pages_on_new_connections_cost_2_to_3_round_trips_more_on_4g() -> None:
    """NETWORK_FIDELITY.md point 3: set-up plus slow start, about 2-3 extra round trips a page."""
    down, up, rtt = Bandwidth(20_000), Bandwidth(8_000), 0.051
    plain = Connection(tls=False)
    warm = Tcp()
    plain.exchange_s(warm, rtt, down, up, 0, 1_000_000)  # its windows have grown
    kept = plain.exchange_s(warm, rtt, down, up, 0, 50_075)
    new = plain.exchange_s(Tcp(), rtt, down, up, 0, 50_075)
    assert 2 <= (new - kept) / rtt <= 3


def test_a_connections_windows_grow_with_what_it_carried_and_rest_after_idle() -> None:
    tcp = Tcp()
    assert (tcp.fresh, tcp.down, tcp.up) == (True, 10, 10)
    tcp.carried(500, 100 * 1448)  # 1 segment up (in flight: 1, so the window stays), 100 down
    assert (tcp.fresh, tcp.up, tcp.down) == (False, 10, 110)
    tcp.rested(idle_real_s=0.1, rtt_s=0.05)  # shorter than an RTO (0.05 + 0.2 s): unchanged
    assert tcp.down == 110
    tcp.rested(idle_real_s=0.5, rtt_s=0.05)  # 0.55 s from the last send: two RTOs, halved twice
    assert tcp.down == 27.5
    tcp.rested(idle_real_s=3600, rtt_s=0.05)
    assert tcp.down == 10  # never below the initial window


def test_many_alike_requests_cost_what_each_one_does() -> None:
    """`requests_s` (the advisor's) sums `exchange_s` one request at a time until they cost the same,
    then multiplies; a fractional count is an expectation."""
    conn, down, up = Connection(), Bandwidth(2_000), Bandwidth(750)
    one_by_one, tcp = 0.0, Tcp()
    for _ in range(40):
        one_by_one += conn.exchange_s(tcp, 0.15, down, up, 0, 50_000)
    assert conn.requests_s(Tcp(), 0.15, down, up, 40, 50_000) == pytest.approx(one_by_one, rel=1e-12)
    steady = conn.exchange_s(tcp, 0.15, down, up, 0, 50_000)
    assert conn.requests_s(Tcp(), 0.15, down, up, 40.5, 50_000) == pytest.approx(one_by_one + 0.5 * steady)
    assert conn.requests_s(Tcp(), 0.15, down, up, 0, 50_000) == 0.0


def test_a_request_takes_the_most_recent_idle_connection_else_opens_one() -> None:
    pool, settings = Connections(), Connection(keepalive_s=60)
    a = pool.take(settings, lived_s=0, real_s=0, rtt_s=0.05)
    b = pool.take(settings, lived_s=0, real_s=0, rtt_s=0.05)  # concurrent: a second connection
    assert a is not b and a.fresh and b.fresh
    for tcp in (a, b):
        tcp.carried(500, 500)
    pool.give_back(a, lived_s=1, real_s=1)
    pool.give_back(b, lived_s=2, real_s=2)
    assert pool.take(settings, lived_s=3, real_s=3, rtt_s=0.05) is b
    assert pool.take(settings, lived_s=3, real_s=3, rtt_s=0.05) is a
    pool.give_back(a, lived_s=3, real_s=3)
    assert pool.kept(settings, lived_s=63) and not pool.kept(settings, lived_s=63.5)
    assert pool.take(settings, lived_s=63.5, real_s=4, rtt_s=0.05).fresh  # idle 60.5 lived s: gone
    assert pool.idle == [] and pool.opened == 3
    c = pool.take(settings, lived_s=64, real_s=5, rtt_s=0.05)
    c.carried(500, 500)
    pool.give_back(c, lived_s=64, real_s=5)
    pool.expire()  # a wait it will not outlive: it ends now
    assert pool.idle == [] and pool.take(settings, lived_s=65, real_s=6, rtt_s=0.05).fresh and pool.opened == 5


def test_dropped_connections_are_not_given_back_and_at_most_five_stay_idle() -> None:
    pool, settings = Connections(), Connection()
    in_flight = pool.take(settings, lived_s=0, real_s=0, rtt_s=0.05)
    pool.drop()  # airplane mode while the request is in flight
    pool.give_back(in_flight, lived_s=1, real_s=1)
    assert pool.idle == []
    many = [pool.take(settings, lived_s=0, real_s=0, rtt_s=0.05) for _ in range(7)]
    for tcp in many:
        pool.give_back(tcp, lived_s=1, real_s=1)
    assert pool.idle == many[-POOL_CONNECTIONS:]
