"""Every random generator of a run, derived from the scenario's seed in this one place.

A stream is a named constant mixed into the seed, so adding a stream never shifts another's draws.
The seed data (server/seed.py) spawns one generator per table from the seed, and Faker's pools are
seeded with "<seed>/<provider>" strings (hashed by SHA-512, not by Python's randomized hash).
Device streams start from the device's own seed, `(scenario seed, device index)`, so a device draws
the same whatever the fleet around it does. numpy's generators (PCG64) give the same numbers on every
machine for the same seed; nothing here depends on hash randomization or the order of a set.
"""

from __future__ import annotations

import numpy as np

FLEET = 0xF1EE7  # device kinds, networks (fleet.py)
SERVER = 0x5E17E5  # the server's own draws: injected faults, job ids, $batch boundaries
BACK_OFFICE = 0xBAC0  # back-office writes and hot rows
ADVISOR = 0xAD715E  # the advisor's sampling
TOKENS = 0x70CE5  # bearer tokens and upload-session tokens
NETWORK = 0x4E7  # a device's network model (latency, loss), one stream per network it joins

DeviceSeed = tuple[int, ...]


def scenario_rng(seed: int, stream: int) -> np.random.Generator:
    """The run-wide generator of one stream."""
    return np.random.default_rng([seed, stream])


def data_rngs(seed: int, tables: int) -> tuple[np.random.Generator, list[np.random.Generator]]:
    """The seed data's generators: one for the users, one per table (by its index in the scenario)."""
    children = _sequence(seed).spawn(tables + 1)
    return np.random.default_rng(children[0]), [np.random.default_rng(c) for c in children[1:]]


def file_rng(seed: int) -> np.random.Generator:
    """The generator of a seeded file's bytes (server/seed.py: file blocks)."""
    return np.random.default_rng(_sequence(seed))


def _sequence(seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed % (1 << 64))  # SeedSequence needs a non-negative entropy


def device_seed(seed: int, index: int) -> DeviceSeed:
    """The seed of the scenario's `index`-th device (in fleet order)."""
    return (seed, index)


def device_rngs(seed: DeviceSeed) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator,
                                            np.random.Generator]:
    """A device's own generators: (sync schedule, edits, airplane mode, roaming)."""
    children = np.random.SeedSequence(list(seed)).spawn(4)
    sched, edit, air, roam = (np.random.default_rng(c) for c in children)
    return sched, edit, air, roam


def network_rng(seed: DeviceSeed, joined: int | None = None) -> np.random.Generator:
    """A device's network model's generator: its first network (`joined` None), then the n-th it
    changes to."""
    return np.random.default_rng([*seed, NETWORK] if joined is None else [*seed, NETWORK, joined])
