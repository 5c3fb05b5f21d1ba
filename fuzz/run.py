"""Running cases and judging answers: steps, findings and the report.

A case is a sequence of steps (a generator may look at each answer before making the next step).
Every answer is judged the same way:

- `5xx`: the server answered 500 or more;
- `schema`: the answer does not conform to openapi.yaml (fuzz/conformance.py), a 4xx without the
  Dataverse error body included;
- `state`: a 4xx (or a GET/HEAD, or a step that must not write) changed the server's state
  (store version, rows per table, write log); a `$batch` refused with 400 may carry the answers of
  parts that ran before the failing one, and then may have changed it;
- `unexpected`: a step that expects given statuses (a hostile request: a 4xx) got another one, or
  its own check of the answer failed;
- `no-answer`: the connection closed or timed out.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Generator, Iterable
from dataclasses import dataclass, field

from fuzz import conformance
from fuzz.server import FuzzServer
from fuzz.wire import Answer, Client, NoAnswer, Request

FOUR_XX = frozenset(range(400, 500))
KINDS = ("5xx", "schema", "state", "unexpected", "no-answer")
TITLES = {"5xx": "5xx seen", "schema": "schema mismatches", "state": "state changes on 4xx",
          "unexpected": "unexpected answers (hostile requests not refused)", "no-answer": "no answer"}


@dataclass
class Step:
    """One request and what it must get: `expect` statuses (None: anything below 500), and whether
    the server's state must stay as it was whatever the status (`unchanged=True`; by default only a
    4xx, a GET and a HEAD must leave it unchanged)."""

    request: Request
    expect: Collection[int] | None = FOUR_XX
    unchanged: bool = False
    verify: Callable[[Answer], str | None] | None = None  # a problem with the answer, or None


Flow = Generator[Step, Answer, None]
Steps = Iterable[Step] | Flow


@dataclass
class Finding:
    kind: str
    case: str
    request: Request
    answer: Answer | None
    detail: str
    server_error: str = ""  # the exception the server logged while answering, if any

    def render(self, base_url: str, label: str | None = None) -> str:
        got = self.answer.summary() if self.answer is not None else "(no answer)"
        known = f" (known bug: {label})" if label else ""
        return (f"[{self.kind}] {self.case}{known}: {self.detail}\n"
                f"    request: {self.request.describe().replace(chr(10), chr(10) + '    ')}\n"
                f"    answer:  {got}\n"
                f"    repro:   {self.request.curl(base_url)}")


@dataclass
class Report:
    cases: int = 0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    label: Callable[[Finding], str | None] = field(default=lambda f: None)  # names a finding's known bug

    def count(self, kind: str) -> int:
        return sum(1 for f in self.findings if f.kind == kind)

    def summary(self) -> dict[str, int]:
        return {"cases tried": self.cases, "requests sent": self.requests,
                **{TITLES[k]: self.count(k) for k in KINDS}}

    def render(self, base_url: str, examples: int = 3) -> str:
        elapsed = time.monotonic() - self.started
        lines = [f"syncsim fuzz: {self.cases} cases tried, {self.requests} requests in {elapsed:.1f} s"]
        width = max(len(TITLES[k]) for k in KINDS)
        lines.append(f"  {'cases tried':<{width}}  {self.cases}")
        for kind in KINDS:
            lines.append(f"  {TITLES[kind]:<{width}}  {self.count(kind)}")
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        lines.append(f"  statuses: {statuses}")
        for kind in KINDS:
            found = [f for f in self.findings if f.kind == kind]
            if not found:
                continue
            by_case: dict[str, Finding] = {}
            for f in found:
                by_case.setdefault(_signature(f), f)
            distinct = sorted(by_case.values(), key=lambda f: self.label(f) is not None)  # unlabelled first
            lines.append("")
            lines.append(f"{TITLES[kind]}: {len(found)} ({len(by_case)} distinct); the first {min(examples, len(by_case))}:")
            lines += [f.render(base_url, self.label(f)) for f in distinct[:examples]]
        return "\n".join(lines)


def _signature(f: Finding) -> str:
    """Findings of one kind that are the same problem: the case (generated cases: the operation) and
    the detail without the numbers in it."""
    detail = "".join("#" if c.isdigit() else c for c in f.detail)[:160]
    return f"{f.case.split(' #')[0]}|{detail}"


class Runner:
    """Sends the steps of cases to a FuzzServer and judges every answer into a Report."""

    def __init__(self, server: FuzzServer, client: Client, report: Report | None = None,
                 on_finding: Callable[[Finding], None] | None = None) -> None:
        self.server = server
        self.client = client
        self.report = report or Report()
        self.on_finding = on_finding

    def run(self, name: str, steps: Steps) -> list[Finding]:
        """Run one case; returns its findings (also added to the report)."""
        self.report.cases += 1
        found: list[Finding] = []
        iterator = iter(steps)
        answer: Answer | None = None
        while True:
            try:
                if answer is None or not isinstance(iterator, Generator):
                    step = next(iterator)
                else:
                    step = iterator.send(answer)
            except StopIteration:
                break
            answer = self.step(name, step, found)
            if answer is None:
                break
        return found

    def step(self, name: str, step: Step, found: list[Finding]) -> Answer | None:
        request = step.request
        before = self.server.snapshot()
        self.report.requests += 1
        try:
            answer = self.client.send(request)
        except NoAnswer as exc:
            self._add(found, Finding("no-answer", name, request, None, str(exc)))
            return None
        after = self.server.snapshot()
        self.report.statuses[answer.status] += 1
        problems = conformance.check(request.method, request.path, answer)
        errors = self.server.take_errors()
        error = errors[-1] if errors else ""
        for problem in problems:
            kind = "5xx" if problem.startswith("server error") else "schema"
            if kind == "5xx" and error:
                problem += f": {error}"
            self._add(found, Finding(kind, name, request, answer, problem, error))
        changed = before.diff(after)
        if changed and self._must_hold(step, answer):
            self._add(found, Finding("state", name, request, answer, f"answered {answer.status} but changed {changed}"))
        if step.expect is not None and answer.status not in step.expect and answer.status < 500:
            wanted = "a 4xx" if set(step.expect) == FOUR_XX else "/".join(map(str, sorted(step.expect)))
            self._add(found, Finding("unexpected", name, request, answer, f"expected {wanted}, got {answer.status}"))
        trouble = step.verify(answer) if step.verify is not None else None
        if trouble:
            self._add(found, Finding("unexpected", name, request, answer, trouble))
        return answer

    @staticmethod
    def _must_hold(step: Step, answer: Answer) -> bool:
        if step.unchanged or step.request.method in ("GET", "HEAD"):
            return True
        if not 400 <= answer.status < 500:
            return False
        parts = conformance.batch_parts(answer)
        # a $batch stopped at a failing part: the parts before it ran, and may have written
        return not any(200 <= s < 300 for s in parts[:-1])

    def _add(self, found: list[Finding], finding: Finding) -> None:
        found.append(finding)
        self.report.findings.append(finding)
        if self.on_finding is not None:
            self.on_finding(finding)
