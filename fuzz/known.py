"""Server bugs the fuzzer has found and that are not fixed yet.

Each bug names the hostile cases that reproduce it (tests/test_fuzz.py marks those cases
xfail(strict=True) with the bug's summary, so the suite stays green and a fix shows up as an
XPASS) and a matcher that recognises its findings among generated cases (the generated-case tests
allow those findings and fail on any other). `python -m fuzz` labels findings with the bug they
match. Remove a bug from this list once it is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fuzz.run import Finding

_BULK = re.compile(r"/Microsoft\.Dynamics\.CRM\.(CreateMultiple|UpdateMultiple|UpsertMultiple)(\?|$)")


@dataclass(frozen=True)
class KnownBug:
    key: str
    summary: str
    cases: tuple[str, ...]  # hostile cases (fuzz.cases.HOSTILE) that reproduce it
    matches: Callable[[Finding], bool] | None  # recognises its findings anywhere (None: only in its cases)

    def reproduced_by(self, findings: list[Finding]) -> bool:
        """Whether a case's findings show this bug (any finding, for a bug without a matcher)."""
        return any(self.matches(f) for f in findings) if self.matches is not None else bool(findings)


def _server_error(*needles: str) -> Callable[[Finding], bool]:
    """A 500 (and the schema mismatch of its undocumented status) whose server-side exception line
    contains every needle."""
    return lambda f: f.answer is not None and f.answer.status == 500 and all(n in f.server_error for n in needles)


def _undo_moves_version(f: Finding) -> bool:
    path = f.request.path
    return f.kind == "state" and (bool(_BULK.search(path)) or path.split("?")[0].endswith("/$batch")) \
        and "store.version" in f.detail and "rows" not in f.detail and "write_log" not in f.detail


def _aiohttp_parser(f: Finding) -> bool:
    """aiohttp's own answer to a request its HTTP parser refuses (the app never answers text/plain 400)."""
    return f.answer is not None and f.answer.status == 400 and f.answer.media_type == "text/plain"


def _alternate_key_spec(f: Finding) -> bool:
    """The document's 412 codes and row URLs, which do not know alternate keys yet."""
    return f.kind == "schema" and ("0x80060892" in f.detail or bool(
        re.search(r"header (OData-EntityId|Location)=\"[^\"]*/api/data/v9\.2/\w+\([^)\"]*=", f.detail)))


def _syncsim_413(f: Finding) -> bool:
    return (f.kind == "schema" and f.request.path.startswith("/_syncsim/") and f.answer is not None
            and f.answer.status == 413)


KNOWN: tuple[KnownBug, ...] = (
    KnownBug(
        "datetime-overflow-500",
        "a $filter date-time literal whose UTC conversion leaves the calendar (0001-01-01T00:00:00+01:00, "
        "9999-12-31T23:59:59-01:00) is a 500: odata_filter.to_datetime raises OverflowError, which literal() "
        "does not catch (in comparisons, In/NotIn values, and a $skiptoken carrying such a value)",
        ("query/datetime-literals-out-of-range", "query/skiptoken-with-an-out-of-range-date"),
        _server_error("OverflowError")),
    KnownBug(
        "undo-keeps-version-and-tombstone",
        "a failed all-or-nothing group (CreateMultiple / UpdateMultiple / UpsertMultiple, a $batch changeset) "
        "is undone row by row, but store.version stays advanced by the undone writes, and an undone delete "
        "stays in TableStore.deleted (GET /_syncsim/ledger then lists the row as deleted while it exists)",
        ("ids/bulk-update-with-another-users-row", "batch/failing-changeset-is-undone",
         "batch/failing-bulk-action-is-undone", "batch/undone-delete-is-not-in-the-ledger"),
        _undo_moves_version),
    KnownBug(
        "out-of-range-numbers-accepted",
        "whole-number and decimal columns take any JSON number: past Int32 (2147483648, 2^64-1), past the "
        "decimal range (1e308), and outside the MinValue/MaxValue that EntityDefinitions advertises; "
        "Dataverse refuses them with 400 (0x80044331)",
        ("body/numbers-a-column-cannot-hold", "body/number-outside-the-columns-range"),
        None),
    KnownBug(
        "lookup-value-writable",
        "a row body may set a lookup's `_<column>_value` directly: it is stored without checking that the "
        "row exists (a dangling lookup), where `<column>@odata.bind` gets 404; Dataverse treats "
        "`_<column>_value` as read-only (400)",
        ("columns/write-a-lookup-value-directly",),
        None),
    KnownBug(
        "patch-ignores-primary-id",
        "a PATCH body with another primary id than the URL's, or one that is not a GUID, is silently ignored "
        "(204) instead of refused (POST validates the same property)",
        ("columns/change-the-primary-id",),
        None),
    KnownBug(
        "delete-primary-id-column",
        "DELETE <set>(<id>)/<primary id column> answers 204 and writes a new row version that changes nothing "
        "(the other system columns get 400)",
        ("columns/clear-the-primary-id-through-the-column-route",),
        None),
    KnownBug(
        "batch-delimiter-without-line-break",
        "a $batch whose first delimiter is not followed by a line break (`--bContent-Type: ...`) loses that "
        "part silently: 200 with no parts instead of 400",
        ("batch/delimiter-without-a-line-break",),
        None),
    KnownBug(
        "aiohttp-parser-errors",
        "a request aiohttp's HTTP parser refuses (a request line or header over 8,190 bytes, an invalid "
        "Content-Length) is answered by aiohttp before the app runs: 400 text/plain ('Got more than 8190 "
        "bytes...', 'Invalid character in Content-Length'), without OData-Version or the Dataverse error body",
        ("query/url-longer-than-8190-bytes", "headers/header-longer-than-8190-bytes", "headers/malformed-content-length"),
        _aiohttp_parser),
    KnownBug(
        "spec-no-413-on-syncsim-routes",
        "openapi.yaml: the /_syncsim routes that read a JSON body answer 413 past server.max_body_mb "
        "(aiohttp's client_max_size), but the document lists no 413 for them",
        ("body/oversized-on-a-syncsim-route",),
        _syncsim_413),
)

KNOWN += (
    KnownBug(
        "spec-alternate-keys",
        "openapi.yaml has not caught up with alternate keys (docs/protocol.md has): the 412 for a key clash "
        "carries 0x80060892 DuplicateRecordEntityKey, which PreconditionFailed does not list; the 204 of an "
        "upsert by key names the key in OData-EntityId / Location, which RowUrl (GUID only) refuses; and the "
        "text still says alternate keys are not modelled and get 400 (info.description, UpsertMultiple)",
        ("keys/duplicate-alternate-key", "keys/upsert-by-alternate-key"),
        _alternate_key_spec),
    KnownBug(
        "alternate-keys-case-sensitive",
        "alternate-key values are compared case-sensitively: a create with 'acc-000013' next to 'ACC-000013' "
        "succeeds, and accounts(accountnumber='acc-000013') is 404; Dataverse's key index is case-insensitive "
        "(the database collation), so it answers 412 0x80060892 and finds the row",
        ("keys/duplicate-alternate-key-in-another-case",),
        None),
)

BY_CASE: dict[str, KnownBug] = {case: bug for bug in KNOWN for case in bug.cases}


def known_bug(finding: Finding) -> KnownBug | None:
    """The known bug a finding is an instance of: the bug its hostile case reproduces, or the first
    whose matcher recognises it."""
    return BY_CASE.get(finding.case) or next(
        (bug for bug in KNOWN if bug.matches is not None and bug.matches(finding)), None)
