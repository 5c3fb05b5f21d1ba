"""A fuzzing campaign: the hostile cases once, then generated cases over every operation until a
case count or a time limit is reached, whichever comes first."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from fuzz.cases import HOSTILE
from fuzz.context import Context
from fuzz.generate import Operation, generated, operations, step
from fuzz.run import Finding, Report, Runner
from fuzz.server import FuzzServer
from fuzz.wire import Client

CHUNK = 50  # generated cases per hypothesis run; the limits are checked between runs


@dataclass
class Limits:
    cases: int = 5000
    seconds: float = 600.0
    seed: int = 0


def fuzz_settings(examples: int, derandomize: bool = False) -> settings:
    """Hypothesis settings for driving a server: no deadline, no shrinking (a failing example is
    reported by the runner, never raised), no example database."""
    return settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def run_generated(runner: Runner, ctx: Context, ops: Sequence[Operation], examples: int, seed_value: int | None,
                  derandomize: bool = False, stop: Callable[[], bool] = lambda: False) -> None:
    """`examples` generated cases spread over `ops` (each drawn in positive or negative mode)."""
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)

    # Web API operations are drawn three times as often as /_syncsim ones (mostly a 401 by design)
    weighted = [op for op in ops for _ in range(1 if op.admin else 3)]

    @st.composite
    def labelled(draw: st.DrawFn) -> tuple[str, object]:
        op = draw(st.sampled_from(weighted))
        mode = draw(st.sampled_from(modes))
        return f"{op.label} ({mode.value})", draw(generated(op, ctx, mode))

    def once(drawn: tuple[str, object]) -> None:
        if stop():
            return
        name, request = drawn
        runner.run(f"generated: {name}", [step(request)])  # type: ignore[arg-type]

    test = given(labelled())(fuzz_settings(examples, derandomize)(once))
    if seed_value is not None and not derandomize:
        test = seed(seed_value)(test)
    test()


def campaign(server: FuzzServer, limits: Limits, on_finding: Callable[[Finding], None] | None = None,
             hostile: bool = True, progress: Callable[[Report], None] | None = None) -> Report:
    client = Client(server.base_url)
    try:
        ctx = Context(server, client)
        runner = Runner(server, client, on_finding=on_finding)
        deadline = time.monotonic() + limits.seconds

        def stop() -> bool:
            return runner.report.cases >= limits.cases or time.monotonic() >= deadline

        if hostile:
            for name, build in HOSTILE.items():
                if stop():
                    break
                runner.run(name, build(ctx))
                ctx.refresh_rows()
        chunk = 0
        while not stop():
            examples = min(CHUNK, limits.cases - runner.report.cases)
            run_generated(runner, ctx, operations(), examples, limits.seed * 100_003 + chunk, stop=stop)
            ctx.refresh_rows()
            chunk += 1
            if progress is not None:
                progress(runner.report)
        return runner.report
    finally:
        client.close()
