"""The `syncsim` command: thin subcommands over the runner and the server.

Bad input (a scenario file, an override, a host or port, an --out folder) ends the command with one
`syncsim: ...` message that names it and what is allowed, and exit status 2, before any long work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from simulator.nightly import command as nightly_command
from simulator.scenario import ScenarioError, load_scenario


class UsageError(Exception):
    """An option the command cannot use; the message names it and what is allowed."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="syncsim", description="Sync simulator and load tester for offline-first apps.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario against the embedded mock server and write reports")
    run.add_argument("scenario", type=Path)
    run.add_argument("--seed", type=int, help="override the scenario's seed (an integer >= 0)")
    run.add_argument("--devices", type=int,
                     help="override the total device count (an integer from 1 to the scenario's max_devices)")
    run.add_argument("--duration", type=float, help="override duration_s (scenario seconds, > 0)")
    run.add_argument("--clock", choices=("virtual", "real"),
                     help="virtual (the default): simulated time, deterministic, as fast as the machine goes; "
                          "real: real sockets and waits at the scenario's time_scale (the default with --target)")
    run.add_argument("--time-scale", type=float, help="override time_scale (> 0; real clock only)")
    run.add_argument("--out", type=Path, default=Path("reports"), help="folder for run reports (default: reports)")
    run.add_argument("--no-progress", action="store_true", help="do not print progress lines")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="URL",
                       help="drive an already running `syncsim serve` of the same scenario (loopback URL)")
    where.add_argument("--in-process", action="store_true",
                       help="with --clock real: run the embedded server on the devices' event loop "
                            "(default: its own process)")
    run.add_argument("--admin-key", help="with --target: the admin key `syncsim serve` printed")
    run.add_argument("--ca-file", type=Path, help="with an https --target: the CA file `syncsim serve --tls` printed")
    serve = sub.add_parser("serve", help="run the mock Dataverse server standalone")
    serve.add_argument("scenario", type=Path)
    serve.add_argument("--seed", type=int, help="override the scenario's seed (as `syncsim run --seed`)")
    serve.add_argument("--devices", type=int, help="override the total device count (as `syncsim run --devices`)")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="0..65535 (default 8080, or 8443 with --tls; 0 picks a free one)")
    serve.add_argument("--tls", action="store_true", help="serve https with a self-signed CA (needed by the SDK)")
    serve.add_argument("--admin-key", help="admin key for /_syncsim/ (default: random, printed)")
    sub.add_parser("validate", help="check scenario files and print what they define").add_argument(
        "scenarios", type=Path, nargs="+")
    nightly_command.add_parser(sub)
    advise = sub.add_parser("advise", help="estimate each class's profile and first sync, and advise (no run)")
    advise.add_argument("scenarios", type=Path, nargs="+", help="one scenario, or several to compare (what-if)")
    advise.add_argument("--json", action="store_true", help="print JSON instead of tables")
    locust = sub.add_parser("locust", help="run a scenario's devices in Locust (docs/locust.md)",
                            description="Run `locust -f <syncsim's locustfile> --scenario SCENARIO ARGS...`; "
                                        "every argument after the scenario goes to Locust.",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="syncsim's own options, among Locust's (Locust's --help cannot list them: it "
                                   "prints its help before loading a locustfile):\n"
                                   "  --host URL --admin-key KEY  drive a running `syncsim serve` of the same "
                                   "scenario (loopback)\n"
                                   "  --syncsim-out DIR           folder for syncsim's report (default reports)\n"
                                   "  --syncsim-requests          also put every device request in Locust's "
                                   "statistics")
    locust.add_argument("scenario", type=Path)
    locust.add_argument("locust_args", nargs=argparse.REMAINDER, help="Locust's own arguments (-u, --headless, ...)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _run, "serve": _serve, "validate": _validate, "bench": nightly_command.run,
               "locust": _locust, "advise": _advise}[args.command]
    try:
        return command(args)
    except (ScenarioError, UsageError, nightly_command.BenchUsageError) as exc:
        print(f"syncsim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from simulator.runner import run_blocking
    from simulator.server.process import ServerProcessError
    from simulator.target import TargetError

    scenario = load_scenario(args.scenario, seed=args.seed, devices=args.devices, duration_s=args.duration,
                             time_scale=args.time_scale)
    server = _where(args)
    _check_writable(args.out)
    try:
        result = run_blocking(scenario, args.out, progress=not args.no_progress, server=server)
    except (TargetError, ServerProcessError) as exc:
        raise UsageError(str(exc)) from None
    return result.exit_code


def _where(args: argparse.Namespace) -> Any:
    """The run's server from --clock, --target and --in-process (a Target or a `Where`)."""
    from simulator.target import Target

    if (args.admin_key or args.ca_file) and not args.target:
        raise UsageError("--admin-key and --ca-file go with --target URL (a running `syncsim serve`)")
    if args.target and not args.admin_key:
        raise UsageError(f"--target {args.target}: give --admin-key, the key `syncsim serve` printed")
    real = args.target or args.in_process
    if args.clock == "virtual" and real:
        flag = "--target" if args.target else "--in-process"
        raise UsageError(f"{flag} runs in real time (real sockets and waits); drop --clock virtual or use --clock real")
    if args.target:
        return Target(args.target, args.admin_key, args.ca_file)
    if args.clock == "real" or real:
        return "in_process" if args.in_process else "process"
    if args.time_scale is not None:
        print(f"syncsim: --time-scale {args.time_scale:g} means nothing in virtual time (a run takes the time its "
              "work takes); it applies with --clock real", file=sys.stderr)
    return "virtual"


def _check_writable(folder: Path) -> None:
    """Create `folder` and write and remove a probe file in it, so that a run cannot end unable to save.

    Raises UsageError naming the folder and the system's reason.
    """
    from simulator.writable import folder_problem

    problem = folder_problem(folder)
    if problem is not None:
        raise UsageError(f"--out {folder}: cannot write reports there: {problem}")


def _serve(args: argparse.Namespace) -> int:
    from simulator.server.serve import ServeError, serve_forever

    scenario = load_scenario(args.scenario, seed=args.seed, devices=args.devices)
    port = args.port if args.port is not None else 8443 if args.tls else 8080
    try:
        serve_forever(scenario, host=args.host, port=port, tls=args.tls, admin_key=args.admin_key)
    except ServeError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _locust(args: argparse.Namespace) -> int:
    import subprocess

    import simulator.locust

    load_scenario(args.scenario)  # a bad file is named here, before Locust starts
    locustfile = Path(simulator.locust.__file__).parent / "locustfile.py"
    return subprocess.call([sys.executable, "-m", "locust", "-f", str(locustfile), "--scenario", str(args.scenario),
                            *args.locust_args])


def _advise(args: argparse.Namespace) -> int:
    """Estimates and advice per scenario; with several, what changes from the first to each other.
    Exit status 1 when a profile cannot work as it is (an error-level advice), else 0."""
    import json

    from rich.console import Console
    from rich.table import Table

    from simulator import advisor

    reports = [advisor.report(load_scenario(path)) for path in args.scenarios]
    whatif = {r.scenario: advisor.compare(reports[0], r) for r in reports[1:]}
    if args.json:
        print(json.dumps({"scenarios": [r.to_dict() for r in reports], "compare": whatif}, indent=2))
        return 1 if any(r.errors for r in reports) else 0
    console = Console()
    for r in reports:
        table = Table(title=f"{r.scenario}: what one device of each class holds (estimates, no run)")
        for col in ("User class", "Devices", "Tables", "Rows", "Data MB", "File MB"):
            table.add_column(col, justify="left" if col == "User class" else "right")
        for c in r.classes:
            table.add_row(c.user_class, str(c.devices), str(len(c.tables)), f"{c.rows:,.0f}",
                          f"{c.data_bytes / advisor.MIB:,.1f}", f"{c.file_bytes / advisor.MIB:,.1f}")
        console.print(table)
        times = Table(title=f"{r.scenario}: estimated first sync (s), per network of the class")
        for col in ("User class", "Network", "Total", "Metadata", "Data", "Files", "Of which device"):
            times.add_column(col, justify="left" if col in ("User class", "Network") else "right")
        for c in r.classes:
            for network, p in c.first_sync_s.items():
                times.add_row(c.user_class, network, f"{p['total']:,.1f}", f"{p['metadata']:,.1f}",
                              f"{p['data']:,.1f}", f"{p['files']:,.1f}", f"{p.get('processing', 0.0):,.1f}")
        console.print(times)
        for c in r.classes:  # the device's own work, per kind (the table has the class's mix)
            for kind, p in c.processing_s.items():
                console.print(f"{c.user_class} / {kind}: device processing {p['total']:,.1f} s per first sync "
                              f"(metadata {p['metadata']:,.1f}, data {p['data']:,.1f}, files {p['files']:,.1f})",
                              highlight=False)
        for a in r.advice:
            console.print(f"[{'red' if a.level == 'error' else 'yellow'}]{a}[/]", highlight=False)
        if not r.advice:
            console.print("[green]no advice: every profile is within the guidance[/]")
    for name, lines in whatif.items():
        console.print(f"[bold]what-if: {reports[0].scenario} -> {name}[/]")
        for line in lines:
            console.print(f"  {line}", highlight=False)
    return 1 if any(r.errors for r in reports) else 0


def _validate(args: argparse.Namespace) -> int:
    for path in args.scenarios:
        s = load_scenario(path)
        counts = s.class_counts()
        print(f"{path}: ok: {len(s.tables)} tables, {sum(t.rows for t in s.tables):,} rows, "
              f"{sum(counts.values())} devices ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
