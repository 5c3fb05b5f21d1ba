"""The scenario's rollout waves as user counts over time, for Locust's load shape (plugin.py).

Pure functions of the fleet (no Locust import), so the shape's arithmetic is tested on its own."""

from __future__ import annotations

from collections.abc import Sequence

from simulator.fleet import FleetEntry


def wave_target(fleet: Sequence[FleetEntry], t: float, running: int) -> tuple[int, list[str] | None]:
    """At scenario second t: how many devices should run (those whose wave has come), and, when the
    devices still to start are all of one class, that class (so Locust spawns users of it; None lets
    Locust spread new users by class weight). `running` is how many users run now."""
    due = sorted((e for e in fleet if e.start_s <= t), key=lambda e: e.start_s)
    new = {e.spec.user_class for e in due[running:]}
    return len(due), sorted(new) if len(new) == 1 else None
