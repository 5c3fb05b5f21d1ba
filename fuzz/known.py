"""Server bugs the fuzzer has found and that are not fixed yet.

Each bug names the hostile cases that reproduce it (tests/test_fuzz.py marks those cases
xfail(strict=True) with the bug's summary, so the suite stays green and a fix shows up as an
XPASS) and a matcher that recognises its findings among generated cases (the generated-case tests
allow those findings and fail on any other). `python -m fuzz` labels findings with the bug they
match. Remove a bug from this list once it is fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fuzz.run import Finding


@dataclass(frozen=True)
class KnownBug:
    key: str
    summary: str
    cases: tuple[str, ...]  # hostile cases (fuzz.cases.HOSTILE) that reproduce it
    matches: Callable[[Finding], bool] | None  # recognises its findings anywhere (None: only in its cases)

    def reproduced_by(self, findings: list[Finding]) -> bool:
        """Whether a case's findings show this bug (any finding, for a bug without a matcher)."""
        return any(self.matches(f) for f in findings) if self.matches is not None else bool(findings)


KNOWN: tuple[KnownBug, ...] = ()

BY_CASE: dict[str, KnownBug] = {case: bug for bug in KNOWN for case in bug.cases}


def known_bug(finding: Finding) -> KnownBug | None:
    """The known bug a finding is an instance of: the bug its hostile case reproduces, or the first
    whose matcher recognises it."""
    return BY_CASE.get(finding.case) or next(
        (bug for bug in KNOWN if bug.matches is not None and bug.matches(finding)), None)
