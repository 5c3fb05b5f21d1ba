"""Who runs which device: one device per scenario user, with device kind (storage and processing),
network, connection and start time; and the binding of a scenario's settings to the plain specs the
engine takes (`processing_of`, `connection_of`).

Deterministic from the scenario seed. Shared by the standalone runner, Locust and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator import seeds
from simulator.device.device import DeviceSpec
from simulator.device.processing import Processing, processing_for
from simulator.network.faults.connection import Connection
from simulator.scenario import DeviceKind, Scenario, UserClass


@dataclass(frozen=True, slots=True)
class FleetEntry:
    spec: DeviceSpec
    user_class: UserClass
    start_s: float  # scenario seconds after the run's start (its rollout wave)
    connection: Connection = Connection()  # the class's connection settings, as the network model takes them


def processing_of(kind: DeviceKind) -> Processing:
    """What a device kind's own work costs: its built-in `kind`'s figures with its own in their place."""
    return processing_for(kind.kind, kind.store_rows_per_s, kind.write_file_mb_per_s, kind.metadata_s_per_table)


def connection_of(cls: UserClass) -> Connection:
    """A class's connection settings as the network model's."""
    return Connection(tls=cls.connection.tls, keepalive_s=cls.connection.keepalive_s)


def _pick(rng: np.random.Generator, names: Sequence[str], weights: Sequence[float]) -> int:
    w = np.asarray(weights, dtype=float)
    return int(rng.choice(len(names), p=w / w.sum()))


def build_fleet(scenario: Scenario) -> list[FleetEntry]:
    """One device per user, in class order; user names match the server's (<class>-0001...)."""
    rng = seeds.scenario_rng(scenario.seed, seeds.FLEET)
    counts = scenario.class_counts()
    entries: list[FleetEntry] = []
    index = 0
    for cls in scenario.user_classes:
        kinds = [d.name for d in cls.devices]
        nets = list(cls.networks)
        for n in range(1, counts[cls.name] + 1):
            kind = cls.devices[_pick(rng, kinds, [d.share for d in cls.devices])]
            net = nets[_pick(rng, nets, list(cls.networks.values()))]
            user = f"{cls.name}-{n:04d}"
            spec = DeviceSpec(name=f"dev-{user}", user=user, user_class=cls.name,
                              storage_bytes=int(kind.storage_mb * 1024 * 1024), network=net,
                              seed=seeds.device_seed(scenario.seed, index), processing=processing_of(kind))
            entries.append(FleetEntry(spec, cls, 0.0, connection_of(cls)))
            index += 1
    return _assign_waves(scenario, entries)


def _assign_waves(scenario: Scenario, entries: list[FleetEntry]) -> list[FleetEntry]:
    """Give each device the time of the first rollout wave that includes it."""
    waiting = {e.spec.name: e for e in entries}
    start: dict[str, float] = {}
    for wave in sorted(scenario.rollout, key=lambda w: w.at_s):
        pool = [e for e in waiting.values() if wave.user_class in (None, e.spec.user_class)]
        take = pool if wave.count is None else pool[: wave.count]
        for e in take:
            start[e.spec.name] = wave.at_s
            del waiting[e.spec.name]
    return [FleetEntry(e.spec, e.user_class, start[e.spec.name], e.connection) for e in entries if e.spec.name in start]
