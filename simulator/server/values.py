"""Column values in a row body, checked as Dataverse checks them: type, length, choice options and the
range each type can hold.

Two layers refuse a value, as in Dataverse's Web API: the OData reader, for a number its EDM type
cannot hold (past Int32 for whole numbers, past .NET's decimal for decimals: 400 0x80048d19 "Cannot
convert the literal ..."), then Dataverse's validation (400 0x80044331) for text that is too long, a
value of the wrong kind, a choice that is not an option, a decimal outside the ±100 billion every
decimal column is limited to, and (400 0x80040239) a date-time outside CrmDateTime's 1753-01-01 to
9999-12-31; a whole number or decimal outside its column's own MinValue/MaxValue (400 0x80044331).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from simulator.protocol import ErrorCode
from simulator.protocol.odata import GUID_RE
from simulator.scenario import ColumnDef
from simulator.server.errors import DataverseError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # Edm.Int32: whole-number and choice columns
DECIMAL_LIMIT = 100_000_000_000  # DecimalAttributeMetadata.Min/MaxSupportedValue: ±100 billion
EDM_DECIMAL_MAX = 79_228_162_514_264_337_593_543_950_335  # .NET decimal, the Web API's Edm.Decimal
DATETIME_MIN = datetime(1753, 1, 1, tzinfo=UTC)  # CrmDateTime's supported range (DateTimeAttributeMetadata)
DATETIME_MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
ENTITY_REFERENCE_MESSAGE = "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead."


def invalid_property(logical: str, key: str) -> DataverseError:
    return DataverseError(ErrorCode.BAD_PAYLOAD,
                          f"The property '{key}' does not exist on type 'Microsoft.Dynamics.CRM.{logical}'.")


def entity_reference(key: str) -> DataverseError:
    """Dataverse's answer to a body that sets a lookup's `_<column>_value` (set it with @odata.bind)."""
    return DataverseError(ErrorCode.ENTITY_REFERENCE_UPDATE, f"{ENTITY_REFERENCE_MESSAGE} ('{key}')")


def guid(value: Any, key: str) -> str:
    """A GUID value (braces allowed) as lowercase text; 400 for anything else."""
    if not isinstance(value, str) or not GUID_RE.match(value.strip("{}")):
        raise DataverseError(ErrorCode.BAD_PAYLOAD, f"'{key}' must be a GUID, got {value!r}.")
    return value.strip("{}").lower()


def text(value: Any, key: str, max_length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataverseError(ErrorCode.VALIDATION, f"A validation error occurred. '{key}' must be a string.")
    if len(value) > max_length:
        raise DataverseError(ErrorCode.VALIDATION,
                             f"A validation error occurred. The length of the '{key}' attribute exceeded the maximum allowed length of '{max_length}'.")
    return value


def typed(col: ColumnDef, table: str, value: Any) -> Any:
    """A non-text column's value as stored, after the checks of its type (None clears the column)."""
    if value is None:
        return None
    if col.type == "text":
        return text(value, col.name, col.max_length)
    if col.type == "datetime":
        return _datetime(col, value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_kind(col, value)
    if col.type == "decimal":
        return _decimal(col, table, value)
    if not isinstance(value, int):
        raise _wrong_kind(col, value)
    if not INT32_MIN <= value <= INT32_MAX:
        raise cannot_convert(value, "Edm.Int32")
    if col.type == "choice":
        allowed = set((col.options or {}).values())
        if value not in allowed:
            raise DataverseError(ErrorCode.VALIDATION,
                                 f"A validation error occurred. '{col.name}' must be one of {sorted(allowed)}, got {value!r}.")
    elif col.type != "integer":
        raise _wrong_kind(col, value)
    else:
        _in_range(col, table, value)
    return value


def _in_range(col: ColumnDef, table: str, value: int | float) -> None:
    """The column's own MinValue/MaxValue, as EntityDefinitions advertises them."""
    if not col.min <= value <= col.max:
        lo, hi = (int(col.min), int(col.max)) if col.type == "integer" else (col.min, col.max)
        raise DataverseError(ErrorCode.VALIDATION, (
            f"A validation error occurred. The value {value} of '{col.name}' on record of type '{table}' is outside "
            f"the valid range. Accepted Values: {lo} to {hi}."))


def cannot_convert(value: Any, edm: str) -> DataverseError:
    """The OData reader's refusal of a number its EDM type cannot hold."""
    return DataverseError(ErrorCode.BAD_PAYLOAD, f"Cannot convert the literal '{value}' to the expected type '{edm}'.")


def _wrong_kind(col: ColumnDef, value: Any) -> DataverseError:
    return DataverseError(ErrorCode.VALIDATION, f"A validation error occurred. '{col.name}' ({col.type}) cannot be {value!r}.")


def _decimal(col: ColumnDef, table: str, value: int | float) -> int | float:
    if abs(value) > EDM_DECIMAL_MAX:
        raise cannot_convert(value, "Edm.Decimal")
    if abs(value) > DECIMAL_LIMIT:
        raise DataverseError(ErrorCode.VALIDATION, (
            f"A validation error occurred. The value {value} of '{col.name}' on record of type '{table}' is outside "
            f"the valid range. Accepted Values: {-DECIMAL_LIMIT} to {DECIMAL_LIMIT}."))
    _in_range(col, table, value)
    return value


def _datetime(col: ColumnDef, value: Any) -> str:
    """An ISO 8601 text whose instant lies in CrmDateTime's range, kept as sent."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise _wrong_kind(col, value)
    try:
        instant = parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except OverflowError:  # the offset moves it before year 1 or past 9999: as far out as the calendar goes
        instant = (datetime.min if parsed.year == 1 else datetime.max).replace(tzinfo=UTC)
    if instant < DATETIME_MIN:
        raise DataverseError(ErrorCode.DATETIME_OUT_OF_RANGE, (
            f"DateTime is less than minumum value supported by CrmDateTime. Actual value: {_us(instant)}, "
            f"Minimum value supported: {_us(DATETIME_MIN)}"))
    if instant > DATETIME_MAX:
        raise DataverseError(ErrorCode.DATETIME_OUT_OF_RANGE, (
            f"DateTime is greater than maximum value supported by CrmDateTime. Actual value: {_us(instant)}, "
            f"Maximum value supported: {_us(DATETIME_MAX)}"))
    return value


def _us(moment: datetime) -> str:
    """MM/dd/yyyy HH:mm:ss, as Dataverse's messages write a date-time."""
    return f"{moment.month:02}/{moment.day:02}/{moment.year:04} {moment:%H:%M:%S}"
