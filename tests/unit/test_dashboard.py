"""The chart's Grafana dashboard is the output of hack/gen-dashboard.py (grafana-foundation-sdk), like the CRD is
the output of ``jobtrigger crd``: the committed JSON must equal a fresh generation, and it covers what an operator
looks at. That every panel's query returns data is checked against a real Prometheus in
tests/integration/test_prometheus.py."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "charts" / "jobtrigger" / "dashboards" / "jobtrigger.json"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_dashboard", ROOT / "hack" / "gen-dashboard.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def panel_queries(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """panel title -> its PromQL expressions."""
    return {p["title"]: [t["expr"] for t in p.get("targets") or []] for p in dashboard["panels"]}


def test_committed_dashboard_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == generator().render(), "run: .venv/bin/python hack/gen-dashboard.py"


def test_dashboard_covers_the_operators_questions() -> None:
    d = json.loads(COMMITTED.read_text())
    assert d["uid"] == "jobtrigger-controller" and d["title"] == "jobtrigger"
    assert [v["name"] for v in d["templating"]["list"]] == ["datasource", "job", "cap"]
    queries = panel_queries(d)
    every = " ".join(q for qs in queries.values() for q in qs)
    for metric, by in [
        ("jobtrigger_jobs_created_total", "trigger, result"),
        ("jobtrigger_event_to_job_seconds_bucket", "le"),
        ("jobtrigger_watch_restarts_total", "cause"),
        ("jobtrigger_api_requests_total", "code"),
        ("jobtrigger_jobtriggers", "reason"),
    ]:
        assert re.search(rf"sum by \({by}\) \((rate\()?{metric}", every), (metric, by)
    for metric in ("jobtrigger_queue_depth", "jobtrigger_active_jobs", "jobtrigger_leader"):
        assert f"sum({metric}{{" in every
    assert "vector($cap)" in every  # active Jobs against the cap
    assert {"histogram_quantile(0.5,", "histogram_quantile(0.9,", "histogram_quantile(0.99,"} <= {
        m.group() for m in re.finditer(r"histogram_quantile\(0\.\d+,", every)
    }
    for title, qs in queries.items():
        assert qs, f"panel {title!r} has no query"
        for q in qs:
            assert "jobtrigger_" not in q or 'job=~"$job"' in q, f"{title}: not limited to $job: {q}"
    for p in d["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["description"] and p["fieldConfig"]["defaults"]["unit"]
    # the panels tile a 24-column grid without overlapping
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps"
                cells.add((x, y))
