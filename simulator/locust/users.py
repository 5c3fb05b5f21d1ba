"""Locust's side of the devices: one Locust user class per scenario class (each user one device,
leased from the coordinator and run by this process's device host) and the rollout waves as the load
shape."""

from __future__ import annotations

import gevent
from locust import LoadTestShape, User, constant, task

from simulator.fleet import FleetEntry
from simulator.locust.bridge import Bridge, FleetFull, NotRunning
from simulator.locust.waves import wave_target


class DeviceUser(User):
    """One simulated device; the device engine runs on the engine loop while this user lives."""

    abstract = True
    wait_time = constant(1)  # the greenlet only stands by; the device keeps its own schedule
    bridge: Bridge
    scenario_class: str
    entry: FleetEntry | None = None  # the device this user drives

    def on_start(self) -> None:
        host = self.bridge.host
        if host is None or self.bridge.failed is not None:
            return
        try:
            self.entry = host.lease(self.scenario_class)
        except FleetFull as exc:
            self.bridge.fail(str(exc))
            return
        except (NotRunning, gevent.Timeout):
            return  # the run did not start (said once): stand by
        host.start_device(self.entry)

    def on_stop(self) -> None:
        entry, host = self.entry, self.bridge.host
        if entry is not None and host is not None:
            host.stop_device(entry)
            self.entry = None

    @task
    def stand_by(self) -> None:
        """Nothing to do here: the device syncs and edits on its own schedule."""


def user_classes(bridge: Bridge) -> dict[str, type[DeviceUser]]:
    """One Locust user class per scenario class, named after it, weighted by its device count."""
    counts = bridge.scenario.class_counts()
    return {c.name: type(c.name, (DeviceUser,), {
        "abstract": False, "bridge": bridge, "scenario_class": c.name, "weight": max(1, counts[c.name]),
        "__module__": __name__, "__doc__": f"A {c.name} device of scenario {bridge.scenario.name}."})
        for c in bridge.scenario.user_classes}


def rollout_shape(bridge: Bridge, classes: dict[str, type[DeviceUser]]) -> type[LoadTestShape]:
    """The scenario's rollout waves as a LoadTestShape; with -u (and -r) a constant count instead.

    At scenario time t the user count is the number of devices whose wave has come; new users of a
    wave of one class are of that class. The test ends at the scenario's duration, or at -t."""
    class RolloutShape(LoadTestShape):
        use_common_options = True

        def tick(self) -> tuple[int, float] | tuple[int, float, list[type[User]] | None] | None:
            options, coordinator = bridge.options, bridge.coordinator
            if bridge.failed is not None or coordinator is None:
                return None
            t = coordinator.elapsed_s()
            run_time = getattr(options, "run_time", None)
            if (run_time and self.get_run_time() >= run_time) or t >= bridge.scenario.duration_s:
                return None
            if bridge.users_given and getattr(options, "num_users", None):
                return int(options.num_users), float(options.spawn_rate or 1)
            count, only = wave_target(bridge.fleet, t, self.runner.user_count if self.runner else 0)
            return count, float(max(1, count)), [classes[n] for n in only] if only else None

    return RolloutShape
