#!/usr/bin/env python3
"""Draw the main panels of the chart's Grafana dashboard from a real run into docs/img/dashboard.png.

    .venv/bin/python hack/plot-dashboard.py                 # runs tests/integration/test_prometheus.py, then plots
    .venv/bin/python hack/plot-dashboard.py --data run.json # plots data saved by an earlier run

The test (a real controller process, scraped every second by a real Prometheus, through a healthy phase and then a
refused Job create, refused watches and a forbidden reference) saves each panel's query_range over the run when
JOBTRIGGER_DASHBOARD_DATA names a file; this script plots those series with matplotlib, the dashboard's own queries
(with $__rate_interval = 10s, as Grafana would choose for a 1 s scrape interval).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "dashboard.png"
MAIN = [
    "Jobs created by trigger and result",
    "Event → Job latency",
    "Active Jobs against the cap",
    "Watch restarts by cause",
    "API requests by code",
    "JobTriggers by Ready reason",
]
LEGEND_KEYS = ("trigger", "result", "cause", "code", "reason")


def run_test(data: Path) -> None:
    env = {**os.environ, "JOBTRIGGER_DASHBOARD_DATA": str(data)}
    cmd = [sys.executable, "-m", "pytest", "-q", "tests/integration/test_prometheus.py"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def legend(series: dict[str, Any], panel: str) -> str:
    m = series["metric"]
    parts = [m[k] for k in LEGEND_KEYS if k in m]
    if parts:
        return " ".join(parts)
    q = series["query"]
    if q.startswith("histogram_quantile("):
        return "p" + str(round(float(q.split("(")[1].split(",")[0]) * 100))
    return "cap" if q.startswith("vector(") else "active" if "active_jobs" in q else panel


def plot(data: dict[str, Any], out: Path) -> None:
    t0 = data["start"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), constrained_layout=True)
    for ax, title in zip(axes.flat, MAIN, strict=True):
        for s in data["panels"].get(title, []):
            xs = [float(t) - t0 for t, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            style = "--" if s["query"].startswith("vector(") else "-"
            ax.plot(xs, ys, style, label=legend(s, title), linewidth=1.4)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("seconds into the run")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        "jobtrigger dashboard, real run (tests/integration/test_prometheus.py): healthy changes -> Jobs, then a "
        "refused Job create, 3 refused watches (403) and a forbidden reference",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out} (alerts firing in that run: {', '.join(data['alerts'])})")


def main(argv: list[str]) -> int:
    if "--data" in argv:
        path = Path(argv[argv.index("--data") + 1])
    else:
        path = Path(tempfile.mkdtemp()) / "dashboard-run.json"
        run_test(path)
    plot(json.loads(path.read_text()), OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
