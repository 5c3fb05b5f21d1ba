"""The server's one exception type, turned into Dataverse's error JSON by the error middleware."""

from __future__ import annotations

from simulator.protocol import ErrorCode


class DataverseError(Exception):
    """An error answer: Dataverse code (with its HTTP status), message and extra headers."""

    def __init__(self, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return self.code.status


def not_found(table: str, row_id: str) -> DataverseError:
    return DataverseError(ErrorCode.NOT_FOUND, f"{table} With Id = {row_id} Does Not Exist")


def bad_request(message: str, code: ErrorCode = ErrorCode.BAD_PAYLOAD) -> DataverseError:
    return DataverseError(code, message)
