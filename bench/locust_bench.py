"""Locust: the sync rate of devices driven through Locust versus the same devices under `syncsim run`.

The scenario is scenarios/smoke.yaml made busy, written at run time into a temporary folder (and
checked with `syncsim validate`): technicians and managers by class count, every device on the
loopback network (no shaping, so the generator's own speed shows), a short `sync_interval_s`, no
service-protection limits, and `duration_s` / `time_scale` giving ~20 real seconds (~8 s quick).

Each round runs the scenario twice, in child processes, alternating which goes first:
- `python -m simulator.cli run SCENARIO --out DIR --no-progress`: syncs during the test (summary.json
  `totals.syncs` minus every class's `final_syncs`) per real second of the test (duration_s /
  time_scale);
- `python -m locust -f simulator/locust/locustfile.py --scenario SCENARIO --headless -t <same s>`:
  Request Count of the SYNC rows FIRST_SYNC / DELTA_SYNC / FORCED_SYNC of Locust's CSV, per the same
  real seconds. syncsim's own summary.json of that run must count the same syncs (a mismatch is an
  ERROR figure); its `generator` section gives the engine thread's loop lag.
The figure is Locust's rate over syncsim run's, median of the rounds' ratios (target >= 80%).

Reference, no target: a plain Locust FastHttpUser GETting one account deltaLink (empty deltas) as
fast as it can, 20 users, against `python -m simulator.server.process` serving the same scenario.

Capacity, no target: how many devices one Locust process holds while its engine loop lag p99 stays
at or under 100 ms (summary.json `generator.devices_process.loop_lag_ms_p99`, the limit above which
syncsim calls the generator saturated). A variant of the busy scenario at a realistic pace: smoke.yaml's
own networks (technicians 4g, managers wifi), `sync_interval_s` 60 (one sync per device per real
second at time_scale 60), technicians and managers 3:1 plus two spare devices of each class (Locust's
split of -u over the classes is only proportional to within one user). One single-process headless
Locust per size (`-u N -r N -t ~15 s`, its own embedded server), sizes growing, stopping at the first
size above 100 ms or at the largest; every size is one run, and no new size starts once the sweep's
time budget is spent.

Children get the environment without LOCUST_* and SYNCSIM_* variables, run in the temporary folder,
listen on loopback only, and are ended when they outlive their deadline.
"""

from __future__ import annotations

import asyncio
import csv
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from yarl import URL

import simulator
from bench.common import API, NO_LIMITS, Figure, Rounds, deadline_in, fmt, headers, info, interleave
from bench.pages_bench import walk
from simulator.health import LAG_LIMIT_MS
from simulator.runner import Admin
from simulator.scenario import load_scenario
from simulator.yaml_file import read_yaml

NAME = "locust"
TARGET_RATIO = 0.80
SMOKE = Path(__file__).resolve().parent.parent / "scenarios" / "smoke.yaml"
LOCUSTFILE = Path(simulator.__file__).parent / "locust" / "locustfile.py"  # a path: Locust must not be imported here
SYNC_NAMES = ("FIRST_SYNC", "DELTA_SYNC", "FORCED_SYNC")
TIME_SCALE = 60.0
SYNC_INTERVAL_S = 5.0  # scenario seconds: 1/12 real second between a device's syncs
QUIET_PERIOD_S = 600.0  # scenario seconds: at most 10 real seconds of final syncs
SLACK_S = 90.0  # real seconds a child may take beyond its test (start, seeding, quiet period, reports)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
REFERENCE_USER = "technician-0001"
REFERENCE_DEVICE = f"dev-{REFERENCE_USER}"
CAPACITY_INTERVAL_S = 60.0  # scenario seconds: one real second between a device's syncs
CAPACITY_DURATION_S = 3600  # scenario seconds (60 real): longer than any -t, so -t ends the test
CAPACITY_SPARE = 2  # devices of each class beyond the size's share


@dataclass(frozen=True, slots=True)
class Config:
    technicians: int
    managers: int
    duration_s: int  # scenario seconds of the test; real seconds = duration_s / TIME_SCALE
    rounds: int  # syncsim run + Locust pairs
    budget_s: float  # real seconds after which no new round starts
    reference_s: int  # real seconds of the FastHttpUser run
    reference_users: int
    sizes: tuple[int, ...]  # devices per Locust process in the capacity sweep, growing
    size_s: int  # real seconds (-t) of each size
    sweep_budget_s: float  # real seconds after which the sweep starts no new size

    @property
    def real_s(self) -> int:
        return round(self.duration_s / TIME_SCALE)


FULL = Config(technicians=30, managers=10, duration_s=1200, rounds=2, budget_s=100, reference_s=10,
              reference_users=20, sizes=(50, 100, 200, 400, 800), size_s=15, sweep_budget_s=110)
QUICK = Config(technicians=12, managers=4, duration_s=480, rounds=1, budget_s=0, reference_s=4,
               reference_users=20, sizes=(25, 50, 100), size_s=6, sweep_budget_s=40)

REFERENCE_LOCUSTFILE = '''\
"""A plain FastHttpUser GETting one deltaLink (written by bench/locust_bench.py)."""

from locust import FastHttpUser, constant, task

PATH = {path!r}
HEADERS = {headers!r}


class DeltaUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def delta(self) -> None:
        self.client.get(PATH, headers=HEADERS, name="delta")
'''


@dataclass(frozen=True, slots=True)
class Side:
    """One run of the scenario: syncs during the test, and what syncsim's summary says of it."""

    syncs: int  # counted by the side (summary for syncsim run, Locust's CSV for Locust)
    summary_syncs: int  # syncsim's summary: totals.syncs minus final syncs
    exit_code: int
    check_passed: bool  # the summary's end_of_run_check
    wall_s: float  # the summary's wall_s: real seconds from the run's start to the end of its quiet period
    loop_lag_p99_ms: float | None  # the device engine's loop, generator.devices_process
    generator: dict[str, Any]  # the summary's generator section (loop lag and CPU of both processes)


# --- the scenario ----------------------------------------------------------------------------------
def write_scenario(folder: Path, cfg: Config) -> Path:
    """smoke.yaml made busy (see the module's docstring), as folder/bench_locust.yaml."""
    return write_smoke(folder, technicians=cfg.technicians, managers=cfg.managers, duration_s=cfg.duration_s,
                       sync_interval_s=SYNC_INTERVAL_S, loopback=True,
                       description="bench/locust_bench.py: smoke.yaml on loopback, syncing often.")


def write_capacity_scenario(folder: Path, devices: int) -> Path:
    """The capacity sweep's scenario for `devices` Locust users (see the module's docstring)."""
    technicians = round(devices * 3 / 4)
    return write_smoke(folder, technicians=technicians + CAPACITY_SPARE,
                       managers=devices - technicians + CAPACITY_SPARE, duration_s=CAPACITY_DURATION_S,
                       sync_interval_s=CAPACITY_INTERVAL_S, loopback=False,
                       description="bench/locust_bench.py: smoke.yaml on its own networks, a sync a minute.")


def write_smoke(folder: Path, *, technicians: int, managers: int, duration_s: int, sync_interval_s: float,
                loopback: bool, description: str) -> Path:
    """smoke.yaml with these class counts, duration, sync interval and network, no service-protection
    limits, at TIME_SCALE, as folder/bench_locust.yaml."""
    doc: dict[str, Any] = read_yaml(SMOKE)
    doc |= {"name": "bench_locust", "description": description,
            "duration_s": duration_s, "time_scale": TIME_SCALE, "quiet_period_s": QUIET_PERIOD_S}
    doc["server"] = {**doc.get("server", {}), **NO_LIMITS}
    counts = {"technician": technicians, "manager": managers}
    for c in doc["user_classes"]:
        c["count"] = counts[c["name"]]
        if loopback:
            c["networks"] = {"loopback": 1.0}
        c["behaviour"] = {**c.get("behaviour", {}), "sync_interval_s": sync_interval_s}
    path = folder / "bench_locust.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


# --- children --------------------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    """This environment without settings meant for other Locust or syncsim runs."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "SYNCSIM_"))}


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Terminate a child still running, then kill it if it does not go."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def run_child(args: list[str], cwd: Path, log: Path, timeout_s: float, ok: tuple[int, ...] = (0,)) -> int:
    """Run `python args...` in cwd, output to log; its exit status (one of ok), else RuntimeError."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=cwd, env=child_env(),
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=out,
                                                    stderr=asyncio.subprocess.STDOUT)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            raise RuntimeError(f"`{' '.join(args[:4])} ...` still running after {timeout_s:g} s; "
                               f"its last lines:\n{tail(log)}") from None
        finally:
            await stop(proc)
    if code not in ok:
        raise RuntimeError(f"`{' '.join(args[:4])} ...` exited with status {code}; its last lines:\n{tail(log)}")
    return code


def read_summary(folder: Path) -> dict[str, Any]:
    """The summary.json of the one run report in folder."""
    found = sorted(folder.glob("bench_locust-*/summary.json"))
    if len(found) != 1:
        raise RuntimeError(f"expected one run report in {folder}, found {len(found)}")
    summary: dict[str, Any] = orjson.loads(found[0].read_bytes())
    return summary


def syncs_in_test(summary: dict[str, Any]) -> int:
    """Syncs during the test: all of them minus the quiet period's final syncs."""
    return int(summary["totals"]["syncs"]) - sum(int(c.get("final_syncs", 0)) for c in summary["classes"].values())


def side_of(summary: dict[str, Any], syncs: int, exit_code: int) -> Side:
    lag = summary.get("generator", {}).get("devices_process", {}).get("loop_lag_ms_p99")
    return Side(syncs, syncs_in_test(summary), exit_code, bool(summary.get("end_of_run_check", {}).get("passed")),
                float(summary.get("wall_s") or 0.0), None if lag is None else float(lag),
                dict(summary.get("generator") or {}))


def stats_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def syncsim_run(scenario: Path, folder: Path, cfg: Config) -> Side:
    out = folder / "run"
    code = await run_child(["-m", "simulator.cli", "run", str(scenario), "--out", str(out), "--no-progress"],
                           folder, folder / "run.log", cfg.real_s + SLACK_S, ok=(0, 1))
    summary = read_summary(out)
    return side_of(summary, syncs_in_test(summary), code)


async def locust_run(scenario: Path, folder: Path, seconds: int, users: int | None = None) -> Side:
    """`seconds` of Locust (-t) on the scenario: its whole fleet by its shape, or `users` devices (-u, -r)."""
    rep = folder / "rep"
    count = [] if users is None else ["-u", str(users), "-r", str(users)]
    code = await run_child(["-m", "locust", "-f", str(LOCUSTFILE), "--scenario", str(scenario), "--headless",
                            "--only-summary", *count, "-t", f"{seconds}s", "--csv", str(folder / "l"),
                            "--syncsim-out", str(rep)],
                           folder, folder / "locust.log", seconds + SLACK_S, ok=(0, 1))
    rows = stats_rows(folder / "l_stats.csv")
    syncs = sum(int(r["Request Count"]) for r in rows if r["Type"] == "SYNC" and r["Name"] in SYNC_NAMES)
    return side_of(read_summary(rep), syncs, code)


# --- the reference: a plain FastHttpUser -----------------------------------------------------------
async def delta_link(base_url: str, admin_key: str) -> tuple[str, dict[str, str]]:
    """The deltaLink at the end of the user's tracked read of accounts, and the headers to GET it."""
    async with aiohttp.ClientSession() as session:
        token = await Admin(session, base_url, admin_key).token(REFERENCE_USER)
        hdrs = headers(token, tracked=True, device=REFERENCE_DEVICE)
        pages: dict[str, bytes] = {}
        await walk(session, f"{base_url}{API}/accounts", hdrs, max_pages=100, capture=pages)
        link = str(orjson.loads(list(pages.values())[-1])["@odata.deltaLink"])
        async with session.get(link, headers=hdrs) as resp:
            sample = await resp.read()
            if resp.status != 200 or orjson.loads(sample)["value"]:
                raise RuntimeError(f"the delta is not empty: HTTP {resp.status} {sample[:300]!r}")
    return link, hdrs


async def reference(scenario: Path, folder: Path, cfg: Config) -> tuple[float, int, int]:
    """FastHttpUser delta GETs against the scenario's server; (requests/s, requests, failures)."""
    with (folder / "server.log").open("wb") as log:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulator.server.process", str(scenario), cwd=folder, env=child_env(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log)
        assert server.stdin is not None and server.stdout is not None
        try:
            try:
                line = await asyncio.wait_for(server.stdout.readline(), START_TIMEOUT_S)
                ready = orjson.loads(line)
                base_url, admin_key = str(ready["base_url"]), str(ready["admin_key"])
            except (TimeoutError, orjson.JSONDecodeError, KeyError, TypeError):
                raise RuntimeError(f"the server process did not start; its output:\n"
                                   f"{tail(folder / 'server.log')}") from None
            link, hdrs = await delta_link(base_url, admin_key)
            locustfile = folder / "delta_locustfile.py"
            locustfile.write_text(REFERENCE_LOCUSTFILE.format(path=URL(link).raw_path_qs, headers=hdrs),
                                  encoding="utf-8")
            users = str(cfg.reference_users)
            await run_child(["-m", "locust", "-f", str(locustfile), "--headless", "--only-summary", "-u", users,
                             "-r", users, "-t", f"{cfg.reference_s}s", "--host", base_url,
                             "--csv", str(folder / "ref")],
                            folder, folder / "reference.log", cfg.reference_s + SLACK_S, ok=(0, 1))
        finally:
            server.stdin.close()  # the server stops when its stdin closes
            try:
                await asyncio.wait_for(server.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                await stop(server)
    aggregated = next(r for r in stats_rows(folder / "ref_stats.csv") if r["Name"] == "Aggregated")
    requests, failures = int(aggregated["Request Count"]), int(aggregated["Failure Count"])
    if not requests:
        raise RuntimeError(f"the FastHttpUser made no requests; its output:\n{tail(folder / 'reference.log')}")
    return float(aggregated["Requests/s"]), requests, failures


# --- capacity: devices per Locust process ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sweep:
    """The capacity sweep's runs by size, and why it ended before its largest size, if it did."""

    runs: list[tuple[int, Side]]
    skipped: list[int]  # sizes not run because the time budget was spent
    error: str  # the size that could not run and why, or ""
    seconds: float


def saturated(side: Side) -> bool:
    """Its engine loop lag p99 is above the limit, or unknown."""
    return side.loop_lag_p99_ms is None or side.loop_lag_p99_ms > LAG_LIMIT_MS


async def capacity(root: Path, cfg: Config) -> Sweep:
    """One single-process Locust per size, growing, until one is saturated (or the budget is spent)."""
    started = time.perf_counter()
    deadline = deadline_in(cfg.sweep_budget_s)
    runs: list[tuple[int, Side]] = []
    for i, devices in enumerate(cfg.sizes):
        if runs and time.monotonic() > deadline:
            return Sweep(runs, list(cfg.sizes[i:]), "", time.perf_counter() - started)
        folder = root / f"capacity-{devices}"
        folder.mkdir()
        scenario = write_capacity_scenario(folder, devices)
        load_scenario(scenario)  # a bad scenario is this file's bug: let it crash
        try:
            side = await locust_run(scenario, folder, cfg.size_s, users=devices)
        except (RuntimeError, OSError, KeyError, ValueError) as exc:
            return Sweep(runs, [], f"{devices} devices: {exc}", time.perf_counter() - started)
        runs.append((devices, side))
        if saturated(side):
            break
    return Sweep(runs, [], "", time.perf_counter() - started)


def pct(x: Any) -> str:
    return "?" if x is None else f"{float(x):.0%}"


def ms(x: Any) -> str:
    return "?" if x is None else f"{float(x):g} ms"


def size_text(devices: int, side: Side, seconds: int) -> str:
    """One size's figures: lag p99, CPU, syncs/s (and the server process beside it)."""
    own = side.generator.get("devices_process") or {}
    server = side.generator.get("server_process") or {}
    check = "" if side.check_passed else ", end-of-run check FAILED"
    return (f"{devices}: lag p99 {ms(side.loop_lag_p99_ms)}, CPU p50 {pct(own.get('cpu_p50'))} "
            f"(max {pct(own.get('cpu_max'))}), {fmt(side.syncs / seconds)} syncs/s "
            f"(server: lag p99 {ms(server.get('loop_lag_ms_p99'))}, CPU p50 {pct(server.get('cpu_p50'))}){check}")


def capacity_figure(sweep: Sweep, cfg: Config) -> Figure:
    """The largest size whose loop lag p99 stayed within the limit; no target."""
    name = f"devices per Locust process, loop lag p99 <= {LAG_LIMIT_MS:g} ms"
    fine = [n for n, side in sweep.runs if not saturated(side)]
    over = [n for n, side in sweep.runs if saturated(side)]
    largest = cfg.sizes[-1]
    if over:
        value, unit = float(fine[-1]) if fine else 0.0, "devices"
        verdict = (f"{fine[-1]} (the next size, {over[0]}, went over)" if fine
                   else f"under {over[0]}, the smallest size tried (went over)")
    elif sweep.runs:
        value, unit = float(fine[-1]), "devices or more"
        verdict = (f"more than {largest} (even the largest size tried stayed within)" if fine[-1] == largest
                   else f"{fine[-1]} or more (larger sizes not run)")
    else:
        value, unit, verdict = float("nan"), "devices", "no size ran"
    why = ""
    if sweep.skipped:
        why = f"; sizes {', '.join(map(str, sweep.skipped))} not run: the sweep's {cfg.sweep_budget_s:g} s budget was spent"
    if sweep.error:
        why += f"; ERROR: {sweep.error}"
    per_device = TIME_SCALE / CAPACITY_INTERVAL_S
    detail = (f"no target: {verdict}. One single-process headless Locust per size (-u N -r N, so every first sync "
              f"starts in the first second; -t {cfg.size_s} s; its own embedded server in a child process on the "
              f"same {os.cpu_count()} CPUs), sizes {', '.join(map(str, cfg.sizes))} in turn, stopping at the first "
              f"whose summary.json generator.devices_process.loop_lag_ms_p99 (every 0.1 s lag sample from the run's "
              f"start to the end of its quiet period) is above {LAG_LIMIT_MS:g} ms; smoke.yaml, technicians:managers "
              f"3:1 (+{CAPACITY_SPARE} spare devices per class), each class on smoke's own network (technicians 4g, "
              f"managers wifi), sync_interval_s {CAPACITY_INTERVAL_S:g} at time_scale {TIME_SCALE:g} (about "
              f"{per_device:g} sync per device per real second, i.e. N syncs/s at most), no service-protection "
              f"limits; one run per size, {sweep.seconds:.0f} s for the sweep. Per size (CPU as a share of one "
              f"core, the whole Locust process; syncs/s = Locust SYNC entries per second of -t): "
              f"{'; '.join(size_text(n, side, cfg.size_s) for n, side in sweep.runs) or 'none'}{why}")
    data: dict[str, Any] = {
        "sizes": [{"devices": n, "loop_lag_ms_p99": side.loop_lag_p99_ms,
                   "syncs_per_s": side.syncs / cfg.size_s, "end_of_run_check": side.check_passed,
                   "generator": side.generator} for n, side in sweep.runs],
        "open_ended": not over, "skipped": sweep.skipped, "sync_interval_s": CAPACITY_INTERVAL_S,
        "seconds": cfg.size_s}
    if sweep.error or not sweep.runs:
        data["error"] = True
    return Figure(NAME, name, value, unit, "no target", None, None, detail, data)


# --- figures ---------------------------------------------------------------------------------------
def check_counts(locust: list[Side]) -> list[Figure]:
    """An ERROR figure when Locust's SYNC entries and syncsim's summary disagree in some round."""
    wrong = [(i + 1, s) for i, s in enumerate(locust) if s.syncs != s.summary_syncs]
    if not wrong:
        return []
    what = "; ".join(f"round {i}: Locust {s.syncs:,}, syncsim summary {s.summary_syncs:,}" for i, s in wrong)
    worst = max((s.syncs - s.summary_syncs for _, s in wrong), key=abs)
    return [Figure(NAME, "Locust SYNC entries vs syncsim's summary", float(worst), "syncs", "= 0", None, False,
                   f"sync counts differ: {what}", {"error": True, "mismatches": [
                       {"round": i, "locust": s.syncs, "summary": s.summary_syncs} for i, s in wrong]})]


def check_runs(ours: list[Side], theirs: list[Side]) -> list[Figure]:
    """An ERROR figure when a run of either side failed its end-of-run check (e.g. a machine too busy
    for the quiet period): its sync count is not a rate to compare, so the ratio is not valid."""
    failed = [f"Locust round {i + 1}" for i, s in enumerate(ours) if not s.check_passed]
    failed += [f"syncsim run round {i + 1}" for i, s in enumerate(theirs) if not s.check_passed]
    if not failed:
        return []
    return [Figure(NAME, "runs whose end-of-run check failed", float(len(failed)), "runs", "= 0", None, False,
                   f"end-of-run check failed in {', '.join(failed)}: the sync-rate ratio is not valid; "
                   "re-run on a quiet machine", {"error": True, "failed": failed})]


def per_ran(sides: list[Side]) -> str:
    """Syncs per second of the summary's wall_s (the devices' time, plus a short quiet period), median."""
    rates = [s.syncs / s.wall_s for s in sides if s.wall_s > 0]
    return fmt(statistics.median(rates)) if rates else "?"


def codes(sides: list[Side]) -> str:
    failed = sum(1 for s in sides if not s.check_passed)
    return f"; end-of-run check FAILED in {failed} of {len(sides)} runs" if failed else ""


async def run_async(cfg: Config) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-locust-") as tmp:
        root = Path(tmp)
        scenario = write_scenario(root, cfg)
        await run_child(["-m", "simulator.cli", "validate", str(scenario)], root, root / "validate.log",
                        START_TIMEOUT_S)
        runs: dict[str, list[Side]] = {"syncsim": [], "locust": []}

        async def side(kind: str) -> float:
            folder = root / f"{kind}-{len(runs[kind]) + 1}"
            folder.mkdir()
            got = await (syncsim_run(scenario, folder, cfg) if kind == "syncsim"
                         else locust_run(scenario, folder, cfg.real_s))
            runs[kind].append(got)
            return got.syncs / cfg.real_s

        r: Rounds = await interleave(lambda: side("locust"), lambda: side("syncsim"), cfg.rounds,
                                     deadline_in(cfg.budget_s))
        started = time.perf_counter()
        ref_rate, ref_requests, ref_failures = await reference(scenario, root, cfg)
        ref_s = time.perf_counter() - started
        sweep = await capacity(root, cfg)
    ours, theirs = runs["locust"], runs["syncsim"]
    devices = cfg.technicians + cfg.managers
    what = (f"{devices} devices ({cfg.technicians} technician, {cfg.managers} manager) of smoke.yaml on loopback, "
            f"sync_interval_s {SYNC_INTERVAL_S:g}, {cfg.duration_s:,} scenario s = {cfg.real_s} real s")
    valid = all(s.check_passed for s in ours + theirs)  # a failed run's sync count is no rate to compare
    lags = [s.loop_lag_p99_ms for s in ours if s.loop_lag_p99_ms is not None]
    run_lags = [s.loop_lag_p99_ms for s in theirs if s.loop_lag_p99_ms is not None]
    return [
        info(NAME, "syncs/s under syncsim run", r.bare_median, "syncs/s",
             detail=f"{what}; syncs during the test per round: {', '.join(f'{s.syncs:,}' for s in theirs)}; "
                    f"wall_s {', '.join(f'{s.wall_s:.1f}' for s in theirs)} s{codes(theirs)}",
             rounds=r.bare, syncs=[s.syncs for s in theirs]),
        Figure(NAME, "syncs/s under Locust vs syncsim run", r.ours_median, "syncs/s",
               f">= {TARGET_RATIO:.0%} of syncsim run ({fmt(r.bare_median)} syncs/s)", r.ratio,
               r.ratio >= TARGET_RATIO and valid,
               f"{'' if valid else 'NOT VALID (a run failed its end-of-run check, see the ERROR figure); '}"
               f"ratio {r.ratio:.2f}; Locust SYNC entries per round: {', '.join(f'{s.syncs:,}' for s in ours)} "
               f"(syncsim's summary of the same runs: {', '.join(f'{s.summary_syncs:,}' for s in ours)}), "
               f"over the same {cfg.real_s} s; syncsim's wall_s {', '.join(f'{s.wall_s:.1f}' for s in ours)} s "
               f"(run start to end of quiet period; -t also counts Locust's start), {per_ran(ours)} syncs per "
               f"second of it (syncsim run {per_ran(theirs)}); "
               f"{len(r.ours)} rounds, {r.spread()}{codes(ours)}",
               {"bare": r.bare_median, "min_ratio": TARGET_RATIO, "rounds_ours": r.ours, "rounds_bare": r.bare,
                "syncs": [s.syncs for s in ours], "summary_syncs": [s.summary_syncs for s in ours]}),
        *check_counts(ours),
        *check_runs(ours, theirs),
        info(NAME, "plain FastHttpUser empty delta GETs", ref_rate, "req/s",
             detail=f"reference, no target: {cfg.reference_users} FastHttpUsers GET one accounts deltaLink for "
                    f"{cfg.reference_s} s against `python -m simulator.server.process` of the same scenario; "
                    f"Locust's Aggregated Requests/s; {ref_requests:,} requests ({fmt(ref_requests / cfg.reference_s)} per "
                    f"second of -t), {ref_failures:,} failed; {ref_s:.0f} s with the server's start",
             requests=ref_requests, failures=ref_failures),
        info(NAME, "Locust engine loop lag p99", statistics.median(lags) if lags else float("nan"), "ms",
             detail=f"summary.json generator.devices_process.loop_lag_ms_p99 of the Locust runs: "
                    f"{', '.join(f'{x:g}' for x in lags) or 'none'} ms (syncsim run: "
                    f"{', '.join(f'{x:g}' for x in run_lags) or 'none'} ms)",
             rounds=lags, syncsim_run=run_lags),
        capacity_figure(sweep, cfg),
    ]


def figures(quick: bool = False) -> list[Figure]:
    return asyncio.run(run_async(QUICK if quick else FULL))
