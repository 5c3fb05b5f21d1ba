"""`syncsim bench`: the benchmark, its baseline gate and the capacity search, as one command."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
from rich.console import Console

from simulator.nightly.baseline import Finding, compare, parse_tolerances, regressions
from simulator.nightly.capacity import find_capacity, parse_slo
from simulator.nightly.report import write_html, write_json
from simulator.nightly.run import Bench, run_bench, scenario_fingerprint
from simulator.scenario import Scenario, load_scenario
from simulator.target import Where
from simulator.writable import file_problem, folder_problem


class BenchUsageError(Exception):
    """An option the benchmark cannot use; the message says what is allowed."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="nightly scaling benchmark: fleet sizes, baseline gate, capacity search")
    bench.add_argument("scenario", type=Path)
    bench.add_argument("--devices", help="fleet sizes, comma-separated (e.g. 100,1000,5000)")
    bench.add_argument("--repeat", type=int, default=1, help="runs per size; medians are compared (default 1)")
    bench.add_argument("--clock", choices=("virtual", "real"), default="virtual",
                       help="virtual (default): deterministic runs in simulated time; real: the server in its own "
                            "process, real sockets and waits at the scenario's time_scale")
    bench.add_argument("--out", type=Path, default=Path("reports/bench"), help="folder for bench.json, bench.html, runs")
    bench.add_argument("--save-baseline", type=Path, metavar="FILE", help="store this result as a baseline")
    bench.add_argument("--baseline", type=Path, metavar="FILE", help="compare with a baseline; exit 1 on a regression")
    bench.add_argument("--tolerance", action="append", default=[], metavar="METRIC=X",
                       help="override a metric's tolerance (repeatable), e.g. first_sync_p95_s=0.3")
    bench.add_argument("--tolerance-file", type=Path, help="a JSON object of metric -> tolerance")
    bench.add_argument("--find-capacity", action="store_true", help="search the largest fleet meeting every --slo")
    bench.add_argument("--slo", action="append", default=[], help="e.g. 'first_sync_p95<=60s' (repeatable)")
    bench.add_argument("--start", type=int, default=50, help="capacity search: first fleet size (default 50)")
    bench.add_argument("--max-runs", type=int, default=8, help="capacity search: at most this many runs (default 8)")
    bench.add_argument("--max-minutes", type=float, default=30, help="capacity search: at most this long (default 30)")
    bench.add_argument("--precision", type=float, default=0.1, help="capacity search: stop within this share (0.1)")


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.find_capacity:
        return _capacity(args, console)
    sizes = _sizes(args.devices)
    if args.repeat < 1:
        raise BenchUsageError(f"--repeat {args.repeat}: give an integer >= 1")
    overrides = _tolerances(args)
    baseline = _load_baseline(args.baseline) if args.baseline else None
    if baseline is not None:
        _check_comparable(args.baseline, baseline, load_scenario(args.scenario), sizes)
    _check_outputs(args.out, args.save_baseline)
    bench = run_bench(args.scenario, sizes, args.repeat, args.out, console, _server(args))
    if bench.interrupted:
        return _interrupted(bench, sizes, args.out, console)
    findings = compare(bench, baseline, overrides) if baseline else []
    json_path = write_json(bench, args.out / "bench.json", findings)
    html_path = write_html(bench, args.out / "bench.html", findings)
    if args.save_baseline:
        write_json(bench, args.save_baseline)
        console.print(f"baseline saved: {args.save_baseline}")
    console.print(f"bench: {json_path} and {html_path}")
    if baseline is None:
        return 0 if all(s.checks_passed for s in bench.sizes) else 1
    return _verdict(findings, bench, console)


def _interrupted(bench: Bench, sizes: list[int], out: Path, console: Console) -> int:
    """A bench stopped early keeps the sizes it finished (bench.json, bench.html); no baseline is saved
    from it and none is compared. Exit 130 (SIGINT) or 143 (SIGTERM)."""
    json_path = write_json(bench, out / "bench.json", [])
    html_path = write_html(bench, out / "bench.html", [])
    done = ", ".join(str(s.devices) for s in bench.sizes) or "none"
    console.print(f"[bold yellow]bench interrupted ({bench.interrupted})[/]: sizes done {done} of "
                  f"{', '.join(map(str, sizes))}, kept in {json_path} and {html_path}; no baseline saved or compared")
    return 143 if bench.interrupted == "SIGTERM" else 130


def _check_comparable(path: Path, baseline: Bench, scenario: Scenario, sizes: list[int]) -> None:
    """Before the first run: the baseline measured this scenario file (its fingerprint: every field but
    the fleet's size) at every size asked for."""
    mine = scenario_fingerprint(scenario)
    if baseline.scenario != scenario.name or (baseline.fingerprint and baseline.fingerprint != mine):
        raise BenchUsageError(
            f"--baseline {path}: it measured scenario {baseline.scenario!r} (fingerprint "
            f"{baseline.fingerprint or 'not recorded'}), this bench runs {scenario.name!r} ({mine}): compare with a "
            "baseline saved from the same scenario file and seed (--save-baseline)")
    missing = [n for n in sizes if baseline.size(n) is None]
    if missing:
        have = ", ".join(str(s.devices) for s in baseline.sizes)
        raise BenchUsageError(f"--baseline {path}: it has sizes {have}, not {', '.join(map(str, missing))}: run "
                              "--devices with the baseline's sizes, or save a new baseline")


def _check_outputs(out: Path, save_baseline: Path | None) -> None:
    """Before the first run: the reports' folder and the baseline file can be written."""
    problem = folder_problem(out)
    if problem is not None:
        raise BenchUsageError(f"--out {out}: cannot write reports there: {problem}")
    problem = file_problem(save_baseline) if save_baseline is not None else None
    if problem is not None:
        raise BenchUsageError(f"--save-baseline {save_baseline}: cannot write the baseline there: {problem}")


def _verdict(findings: list[Finding], bench: Bench, console: Console) -> int:
    bad = regressions(findings)
    noisy = [f for f in findings if f.verdict == "noisy"]
    blind = [f for f in findings if f.verdict == "not comparable" and f.metric == "*"]
    for f in noisy + blind:
        console.print(f"[yellow]{f.line()}[/]")
    for f in bad:
        console.print(f"[red]{f.line()}[/]")
    failed_checks = [s.devices for s in bench.sizes if not s.checks_passed]
    if failed_checks:
        console.print(f"[red]runs failed their end-of-run check or ledger at {failed_checks} devices[/]")
    ok = not bad and not blind and not failed_checks
    console.print(f"against the baseline: {len(bad)} regressed, {len(noisy)} noisy, {len(blind)} sizes not "
                  f"comparable, {len(findings) - len(bad) - len(noisy) - len(blind)} within tolerance: "
                  + ("[green]PASS[/]" if ok else "[red]FAIL[/]"))
    return 0 if ok else 1


def _capacity(args: argparse.Namespace, console: Console) -> int:
    if not args.slo:
        raise BenchUsageError("--find-capacity needs at least one --slo, e.g. --slo 'first_sync_p95<=60s'")
    try:
        slos = [parse_slo(text) for text in args.slo]
    except ValueError as exc:
        raise BenchUsageError(str(exc)) from None
    if args.start < 1 or args.max_runs < 1 or args.max_minutes <= 0 or not 0 < args.precision < 1:
        raise BenchUsageError("--start and --max-runs must be >= 1, --max-minutes > 0, --precision between 0 and 1")
    scenario = load_scenario(args.scenario)
    _check_outputs(args.out, None)
    result = find_capacity(args.scenario, slos, args.start, scenario.max_devices, args.max_runs,
                           args.max_minutes, args.precision, args.out, console, _server(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "capacity.json").write_bytes(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2))
    console.print(f"capacity: {result.largest_ok if result.largest_ok is not None else 'none'} devices meet every "
                  f"SLO; {('first breaking at ' + format(result.first_failing, ',') + ': ' + '; '.join(result.broke)) if result.first_failing else 'no size broke one'}"
                  f". Stopped: {result.stopped_because}. Curve: {args.out / 'capacity.json'}")
    return 0


def _server(args: argparse.Namespace) -> Where:
    return "virtual" if args.clock == "virtual" else "process"


def _sizes(text: str | None) -> list[int]:
    if not text:
        raise BenchUsageError("--devices: give fleet sizes, e.g. --devices 100,1000,5000")
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise BenchUsageError(f"--devices {text!r}: give integers separated by commas, e.g. 100,1000") from None
    if any(n < 1 for n in sizes) or len(set(sizes)) != len(sizes):
        raise BenchUsageError(f"--devices {text!r}: sizes must be distinct integers >= 1")
    return sorted(sizes)


def _tolerances(args: argparse.Namespace) -> dict[str, float]:
    items = list(args.tolerance)
    if args.tolerance_file:
        try:
            data = orjson.loads(args.tolerance_file.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise BenchUsageError(f"--tolerance-file {args.tolerance_file}: {exc}") from None
        if not isinstance(data, dict):
            raise BenchUsageError(f"--tolerance-file {args.tolerance_file}: a JSON object of metric -> tolerance")
        items = [f"{k}={v}" for k, v in data.items()] + items  # the command line wins
    try:
        return parse_tolerances(items)
    except ValueError as exc:
        raise BenchUsageError(str(exc)) from None


def _load_baseline(path: Path) -> Bench:
    try:
        return Bench.from_dict(orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise BenchUsageError(f"--baseline {path}: not a bench.json written by `syncsim bench` ({exc})") from None
