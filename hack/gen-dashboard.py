#!/usr/bin/env python3
"""Generate the chart's Grafana dashboard (charts/jobtrigger/dashboards/jobtrigger.json) with grafana-foundation-sdk.

    .venv/bin/python hack/gen-dashboard.py            # rewrite the committed JSON
    .venv/bin/python hack/gen-dashboard.py --check    # exit 1 if the committed JSON is not what this generates

The chart ships it in a ConfigMap for the Grafana sidecar (metrics.grafanaDashboard.enabled). tests/unit/
test_dashboard.py checks that the committed JSON is this script's output, tests/integration/test_prometheus.py
that every panel's query returns data from a real Prometheus scraping a real controller, and hack/plot-dashboard.py
draws the main panels of such a run into docs/img/dashboard.png.

Variables: ``datasource`` (a Prometheus data source), ``job`` (the scrape job(s) of the controller) and ``cap``
(the --max-active-jobs of the deployment, for the "active Jobs against the cap" panel; 0 = no cap, no line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh

OUT = Path(__file__).resolve().parents[1] / "charts" / "jobtrigger" / "dashboards" / "jobtrigger.json"
UID = "jobtrigger-controller"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'job=~"$job"'  # every query is limited to the chosen scrape job(s)
RATE = "[$__rate_interval]"


def quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{SEL}}}{RATE})))"


#: (title, description, unit, [(PromQL, legend)], kind, width) in dashboard order, 24 columns per row.
PANELS: list[tuple[str, str, str, list[tuple[str, str]], str, int]] = [
    (
        "Jobs created by trigger and result",
        "Job create calls per second. exists: the occurrence already had its Job (a retry, a restart, a "
        "fail-over); error: the create failed (Warning Event JobCreateFailed).",
        "ops",
        [
            (
                f"sum by (trigger, result) (rate(jobtrigger_jobs_created_total{{{SEL}}}[$__rate_interval]))",
                "{{trigger}} {{result}}",
            )
        ],
        "timeseries",
        12,
    ),
    (
        "Event → Job latency",
        "From the arrival of the watch event to the Job created (jobtrigger_event_to_job_seconds).",
        "s",
        [
            (
                quantile(q, "jobtrigger_event_to_job_seconds"),
                f"p{round(q * 100)}",
            )
            for q in (0.5, 0.9, 0.99)
        ],
        "timeseries",
        12,
    ),
    (
        "Work queue depth",
        "JobTrigger keys waiting for a worker; it should drain to 0 (alert JobTriggerQueueBacklog).",
        "short",
        [(f"sum(jobtrigger_queue_depth{{{SEL}}})", "waiting")],
        "timeseries",
        8,
    ),
    (
        "Active Jobs against the cap",
        "Active Jobs of all JobTriggers (from the Job watch) and the --max-active-jobs cap of the $cap variable.",
        "short",
        [(f"sum(jobtrigger_active_jobs{{{SEL}}})", "active"), ("vector($cap) > 0", "cap")],
        "timeseries",
        8,
    ),
    (
        "Watch restarts by cause",
        "Watch streams re-opened per second: 410 (relist, normal now and then), inactivity (a silent stream), "
        "error (connection, 403, ...; alert JobTriggerWatchRestarts).",
        "ops",
        [(f"sum by (cause) (rate(jobtrigger_watch_restarts_total{{{SEL}}}[$__rate_interval]))", "{{cause}}")],
        "timeseries",
        8,
    ),
    (
        "API requests by code",
        "Requests to the API server per second by HTTP status (0: no answer). 409 on jobs is the exactly-once "
        "mechanism, 404 on deletes is harmless, 403 is missing RBAC.",
        "reqps",
        [(f"sum by (code) (rate(jobtrigger_api_requests_total{{{SEL}}}[$__rate_interval]))", "{{code}}")],
        "timeseries",
        12,
    ),
    (
        "JobTriggers by Ready reason",
        "JobTriggers by the reason of their Ready condition; anything but Watching/Suspended/Syncing needs a look "
        "(alert JobTriggerNotReady).",
        "short",
        [(f"sum by (reason) (jobtrigger_jobtriggers{{{SEL}}})", "{{reason}}")],
        "timeseries",
        12,
    ),
    (
        "Syncs by result",
        "JobTrigger evaluations per second; errors are retried with backoff (alert JobTriggerSyncErrors).",
        "ops",
        [(f"sum by (result) (rate(jobtrigger_syncs_total{{{SEL}}}[$__rate_interval]))", "{{result}}")],
        "timeseries",
        8,
    ),
    (
        "Sync duration p95",
        "95th percentile of the time to evaluate one JobTrigger.",
        "s",
        [
            (
                quantile(0.95, "jobtrigger_sync_duration_seconds"),
                "p95",
            )
        ],
        "timeseries",
        8,
    ),
    (
        "Leader",
        "Replicas holding the leader Lease: 1 expected (alert JobTriggerNoLeader).",
        "short",
        [(f"sum(jobtrigger_leader{{{SEL}}})", "leaders")],
        "stat",
        8,
    ),
]


def build() -> dict[str, Any]:
    d = (
        dashboard.Dashboard("jobtrigger")
        .uid(UID)
        .description("The jobtrigger controller: Jobs, latency, queue, watches, API requests, JobTriggers.")
        .tags(["jobtrigger", "kubernetes"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("job")
            .label("Job")
            .datasource(DS)
            .query("label_values(jobtrigger_leader, job)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            dashboard.TextBoxVariable("cap")
            .label("--max-active-jobs")
            .description("The controller's --max-active-jobs (0: no cap)")
            .default_value("0")
            .current(VariableOption(text="0", value="0"))
        )
    )
    for title, description, unit, queries, kind, width in PANELS:
        panel: Any = (timeseries.Panel() if kind == "timeseries" else stat.Panel()).title(title)
        panel = panel.description(description).unit(unit).datasource(DS).span(width).height(8)
        for i, (expr, legend) in enumerate(queries):
            panel = panel.with_target(
                prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)).datasource(DS)
            )
        d = d.with_panel(panel)
    out: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    return out


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text() != text:
            print(f"{OUT} is stale: run hack/gen-dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
