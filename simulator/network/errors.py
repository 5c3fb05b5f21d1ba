"""The two errors a device sees from its network, whatever the cause."""

from __future__ import annotations


class NetworkError(Exception):
    """The request did not complete at the network level: packet loss, connection refused or reset,
    timeout. HTTP error statuses are not network errors; they come back as a `Response`.

    `bytes_down` counts the response body bytes that arrived before the failure (lost unless the
    request had a sink)."""

    def __init__(self, message: str, bytes_down: int = 0) -> None:
        super().__init__(message)
        self.bytes_down = bytes_down


class AirplaneModeError(NetworkError):
    """The device is offline (airplane mode), or went offline while the request was in flight."""
