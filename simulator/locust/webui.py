"""syncsim's tab in Locust's web UI: the per-class table, live, and syncsim's report once written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from locust.env import Environment

from simulator.runner import RunResult

if TYPE_CHECKING:
    from simulator.locust.coordinator import Coordinator


def class_row(name: str, c: dict[str, Any]) -> dict[str, Any]:
    """One user class as a row of the syncsim tab (seconds and percentages as text)."""
    def s(v: Any) -> str:
        return "–" if v is None else f"{v:.2f}"

    first, delta = c.get("first_sync") or {}, c.get("delta_sync") or {}
    causes = c.get("failures_by_cause") or {}
    unfinished = (c.get("first_sync_detail") or {}).get("unfinished", {}).get("count", 0)
    return {"user_class": name, "devices": c.get("devices", 0), "syncs": c.get("syncs", 0),
            "first_p50": s(first.get("p50")), "first_p95": s(first.get("p95")), "first_p99": s(first.get("p99")),
            "unfinished": unfinished, "delta_p95": s(delta.get("p95")),
            "conflicts": f"{100 * (c.get('conflict_rate') or 0):.2f}%",
            "rejections": f"{100 * (c.get('rejection_rate') or 0):.2f}%",
            "failures": ", ".join(f"{k} {n}" for k, n in sorted(causes.items())) or "–"}


TABLE_COLUMNS = [("user_class", "User class"), ("devices", "Devices"), ("syncs", "Syncs"),
                 ("first_p50", "First sync p50 (s)"), ("first_p95", "p95 (s)"), ("first_p99", "p99 (s)"),
                 ("unfinished", "Unfinished"), ("delta_p95", "Delta p95 (s)"), ("conflicts", "Conflicts"),
                 ("rejections", "Rejections"), ("failures", "Failures by cause")]


def extend_web_ui(environment: Environment, coordinator: Coordinator) -> None:
    """A syncsim tab in Locust's web UI (the per-class table, live) and syncsim's report under
    /syncsim/report once the test has stopped."""
    from flask import Response, request

    web_ui = environment.web_ui
    app = web_ui.app if web_ui is not None else None
    if web_ui is None or app is None:
        return
    web_ui.template_args["extended_tabs"] = [{"title": "syncsim", "key": "syncsim"}]
    web_ui.template_args["extended_tables"] = [
        {"key": "syncsim", "structure": [{"key": k, "title": t} for k, t in TABLE_COLUMNS]}]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "/syncsim/report", "title": "syncsim report (HTML; written at test stop)"}]

    @app.after_request
    def _with_syncsim(response: Response) -> Response:
        if request.path == "/stats/requests" and response.is_json:
            import json

            body = response.get_json()
            body["extended_stats"] = [{"key": "syncsim", "data": coordinator.table()}]
            response.set_data(json.dumps(body))
        return response

    @app.route("/syncsim/report")
    def _report() -> Response:
        result = coordinator.result
        page = result.out_dir / "report.html" if result is not None else None
        if page is None or not page.exists():
            return Response("syncsim's report is written when the test stops.", status=404, mimetype="text/plain")
        return Response(page.read_bytes(), mimetype="text/html")


def rewrite_summary(result: RunResult) -> None:
    """summary.json again, with what the coordinator added (the device hosts)."""
    import orjson

    path = result.out_dir / "summary.json"
    if path.exists():
        path.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))
