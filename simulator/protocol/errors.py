"""Dataverse error codes with the HTTP status the mock server answers them with.

Codes and messages come from ../shared/DATAVERSE_WEBAPI.md section 7; where Dataverse's status is
unconfirmed, docs/protocol.md records the choice made here.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(Enum):
    """A Dataverse error: (hex code, HTTP status, short name)."""

    NOT_FOUND = ("0x80040217", 404, "ObjectDoesNotExist")
    PRIVILEGE_DENIED = ("0x80040220", 403, "PrivilegeDenied")
    CONCURRENCY_MISMATCH = ("0x80060882", 412, "ConcurrencyVersionMismatch")
    DUPLICATE_RECORD = ("0x80040237", 412, "DuplicateRecord")
    DUPLICATE_KEY = ("0x80060892", 412, "DuplicateRecordEntityKey")
    VALIDATION = ("0x80044331", 400, "ValidationError")
    DATETIME_OUT_OF_RANGE = ("0x80040239", 400, "DateTimeOutOfRange")  # code and message Dataverse's, name ours
    ENTITY_REFERENCE_UPDATE = ("0x80060888", 400, "EntityReferenceUpdateNotSupported")  # `_x_value` in a body
    BAD_PAYLOAD = ("0x80048d19", 400, "ODataClientPayloadError")
    EXPIRED_VERSION_STAMP = ("0x80044352", 400, "ExpiredVersionStamp")
    TRACKING_QUERY_OPTION = ("0x80060888", 400, "ChangeTrackingQueryOptionNotSupported")
    RESOURCE_NOT_FOUND = ("0x80060888", 404, "ResourceNotFound")
    FILE_TOO_LARGE = ("0x80044a02", 400, "FileTooLarge")
    THROTTLE_REQUESTS = ("0x80072322", 429, "ServiceProtectionRequests")
    THROTTLE_EXECUTION_TIME = ("0x80072321", 429, "ServiceProtectionExecutionTime")
    THROTTLE_CONCURRENCY = ("0x80072326", 429, "ServiceProtectionConcurrency")
    UNAUTHORIZED = ("0x80040223", 401, "Unauthorized")
    METHOD_NOT_ALLOWED = ("0x80060887", 405, "MethodNotAllowed")
    PAYLOAD_TOO_LARGE = ("0x8006088a", 413, "RequestEntityTooLarge")
    UNSUPPORTED_MEDIA_TYPE = ("0x80060889", 415, "UnsupportedMediaType")
    IDEMPOTENCY_KEY_REUSED = ("0x80060890", 422, "IdempotencyKeyReused")
    RANGE_NOT_SATISFIABLE = ("0x80060891", 416, "RangeNotSatisfiable")
    SERVICE_UNAVAILABLE = ("0x80040216", 503, "ServiceUnavailable")
    INTERNAL = ("0x80040216", 500, "UnexpectedError")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @classmethod
    def from_code(cls, code: str) -> ErrorCode | None:
        """The first ErrorCode with this hex code, or None."""
        for member in cls:
            if member.code == code.lower():
                return member
        return None


def error_body(code: ErrorCode, message: str) -> dict[str, Any]:
    """Dataverse's error JSON shape: {"error": {"code": "0x...", "message": "..."}}."""
    return {"error": {"code": code.code, "message": message}}


EXPIRED_TOKEN_MESSAGE = "Version stamp associated with the client has expired. Please perform a full sync."
CONCURRENCY_MESSAGE = "The version of the existing record doesn't match the RowVersion property provided."
