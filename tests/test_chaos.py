"""The fault matrix end to end: `syncsim run scenarios/chaos.yaml` (what `make chaos` runs) injects
every fault kind at once, reaches every path the ledger's invariants exist for (none "not exercised",
none "not reached"), and the run's ledger finds no violation."""

from __future__ import annotations

from pathlib import Path

import orjson

from simulator.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_the_chaos_scenario_survives_every_fault_with_zero_violations(tmp_path: Path) -> None:
    code = main(["run", str(ROOT / "scenarios" / "chaos.yaml"), "--out", str(tmp_path), "--no-progress"])
    (run_dir,) = tmp_path.iterdir()
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    ledger = summary["ledger"]
    assert code == 0 and ledger["passed"], {k: v for k, v in ledger["invariants"].items() if v["violations"]}
    assert all(result["checked"] > 0 for result in ledger["invariants"].values())
    assert ledger["not_exercised"] == [] and ledger["not_reached"] == [], ledger["paths"]
    assert set(ledger["paths"]) >= {"429s met by devices", "answers lost after a write was applied",
                                    "first syncs of more than one attempt",
                                    "first syncs cut by airplane mode and resumed",
                                    "first syncs that read a cut answer again",
                                    "delta continuation pages", "rows revoked from a device's view",
                                    "rows deleted on the server", "syncs stopped by a full device"}
    injected = summary["faults_injected"]
    for kind in ("server cut", "server drop", "server error", "server lose_answer", "storm 429",
                 "airplane mode on", "requests cut by airplane mode", "delta tokens expired"):
        assert injected.get(kind, 0) > 0, (kind, injected)
    assert ledger["edits"]["most_by_one_device"]["edits"] >= 10_000  # the hoarder's queue
    assert summary["classes"]["technician"]["rejections_by_cause"].get("PrivilegeDenied", 0) > 0
    assert ledger["conflicts"]["reported"] == ledger["conflicts"]["ledger"] > 0
