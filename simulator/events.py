"""Event hooks: the engine fires, metrics / progress / the Locust bridge listen.

Modelled on Locust's EventHook: `add_listener(fn)`, `fire(**kwargs)`. Each hook on `Events` says
what it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class EventHook:
    """A list of listeners called in order with the keyword arguments of `fire`."""

    def __init__(self) -> None:
        self._listeners: list[Callable[..., None]] = []

    def add_listener(self, listener: Callable[..., None]) -> Callable[..., None]:
        self._listeners.append(listener)
        return listener

    def remove_listener(self, listener: Callable[..., None]) -> None:
        self._listeners.remove(listener)

    def fire(self, **kwargs: Any) -> None:
        for listener in self._listeners:
            listener(**kwargs)


class Events:
    """The hooks a device fires.

    - sync_finished(record: SyncRecord): one per sync attempt (success or failure).
    - first_sync_done(record: FirstSync): once per device, when its first sync completes (also in
      the quiet period: record.after_end), or after the quiet period for a first sync that never
      completed (record.finished False).
    - device_event(event: DeviceEvent): airplane toggles, throttles, storage full, restarts, retries.
    - request(method: str, name: str, status: int, elapsed_s: float, bytes: int, error: str | None,
      device: str, started_at: float, ended_at: float): one per HTTP request a device sends, also
      one cut by airplane mode or failed in the network (status 0, error the failure's kind);
      started_at / ended_at are the device's lived time (`clock.Timeline`), elapsed_s their difference.
    - state_changed(device: str, online: bool, syncing: bool): the device went offline or online
      (airplane mode, the end of the run) or started or ended a sync; its state after the change.
    - edit_made(device: str, op: Op): the user made an offline edit (it is now in the outbox).
    - edit_merged(device: str, op: Op, into: Op): the edit was merged into `into`, a waiting
      create or update of the same row (whose payload now holds both); `into` carries it.
    - edit_settled(device: str, op: Op, base: int | None, outcome: Outcome | None): the server
      answered the op (outcome = (status, new version, conflict flag, error code), `base` the
      version it was sent with), or the device cancelled it (outcome None: a delete of a row created
      offline and never sent).
    """

    def __init__(self) -> None:
        self.sync_finished = EventHook()
        self.first_sync_done = EventHook()
        self.device_event = EventHook()
        self.request = EventHook()
        self.state_changed = EventHook()
        self.edit_made = EventHook()
        self.edit_merged = EventHook()
        self.edit_settled = EventHook()
