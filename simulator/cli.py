"""The `syncsim` command: thin subcommands over the runner and the server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from simulator.scenario import ScenarioError, load_scenario


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="syncsim", description="Sync simulator and load tester for offline-first apps.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario against the embedded mock server and write reports")
    run.add_argument("scenario", type=Path)
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument("--devices", type=int, help="override the total device count (classes given by share)")
    run.add_argument("--duration", type=float, help="override duration_s (scenario seconds)")
    run.add_argument("--time-scale", type=float, help="override time_scale")
    run.add_argument("--out", type=Path, default=Path("reports"), help="folder for run reports (default: reports)")
    run.add_argument("--no-progress", action="store_true", help="do not print progress lines")
    serve = sub.add_parser("serve", help="run the mock Dataverse server standalone")
    serve.add_argument("scenario", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8443 if "--tls" in sys.argv else 8080)
    serve.add_argument("--tls", action="store_true", help="serve https with a self-signed CA (needed by the SDK)")
    serve.add_argument("--admin-key", help="admin key for /_syncsim/ (default: random, printed)")
    sub.add_parser("validate", help="check scenario files and print what they define").add_argument(
        "scenarios", type=Path, nargs="+")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "serve":
            from simulator.server.serve import serve_forever

            serve_forever(load_scenario(args.scenario), host=args.host, port=args.port, tls=args.tls,
                          admin_key=args.admin_key)
            return 0
        for path in args.scenarios:
            s = load_scenario(path)
            counts = s.class_counts()
            print(f"{path}: ok: {len(s.tables)} tables, {sum(t.rows for t in s.tables):,} rows, "
                  f"{sum(counts.values())} devices ({', '.join(f'{k} {v}' for k, v in counts.items())})")
        return 0
    except ScenarioError as exc:
        print(f"syncsim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from simulator.runner import run_scenario

    scenario = load_scenario(args.scenario, seed=args.seed, devices=args.devices, duration_s=args.duration,
                             time_scale=args.time_scale)
    result = asyncio.run(run_scenario(scenario, args.out, progress=not args.no_progress))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
