"""A real Prometheus (Debian's 2.42, from hack/get-prometheus.sh) scraping a real ``jobtrigger controller``.

The controller process runs as a ServiceAccount with least-privilege Roles in two namespaces, with leader
election and ``--max-active-jobs 4``, and works through a scripted scenario:

* healthy: ConfigMap changes -> Jobs (more than the cap: runs wait), one Job's pod fails;
* a Job create refused (403: no ``create`` on jobs in the second namespace) -> JobCreateFailed, sync errors;
* watches refused (403: Secrets, Pods, Deployments, which the Role does not grant) -> WatchFailed, watch restarts;
* a forbidden reference (a ConfigMap in the other namespace without --allow-cross-namespace) -> Forbidden;
* at the end the controller stops, so no replica leads.

Prometheus scrapes it every second and evaluates a test-only copy of charts/jobtrigger/files/alerts.yaml whose
``for:`` durations are cut to 3 s (expressions, windows and thresholds unchanged). Checked: every PromQL query
printed in docs/metrics.md returns series with the documented labels; every panel query of the chart's dashboard
returns data; the expected alerts are ``firing`` and the others are not. With JOBTRIGGER_DASHBOARD_DATA=<file> the
test also writes the dashboard's panels over the run (query_range) there, for hack/plot-dashboard.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import (
    CONTROLLER_RULES,
    condition,
    create_cm,
    create_jt,
    finish_job_pods,
    free_port,
    get_jt,
    grant_role,
    jobs_of,
    patch_cm,
    wait_for,
    wait_jobs,
    wait_ready,
)
from tests.integration.test_helm_install import _sa_kubeconfig, _sa_token
from tests.unit.test_alerts import ALERTS, alert_names, prometheus_binary

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "metrics.md"
DASHBOARD = ROOT / "charts" / "jobtrigger" / "dashboards" / "jobtrigger.json"
SCRAPE_JOB = "jobtrigger"
CAP = 4
#: the alerts the scenario must set off, and the ones that must stay quiet while the controller runs
EXPECTED_FIRING = {
    "JobTriggerJobCreateFailing",
    "JobTriggerSyncErrors",
    "JobTriggerWatchRestarts",
    "JobTriggerNotReady",
}
QUIET = {"JobTriggerQueueBacklog", "JobTriggerNoLeader"}
LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
]


def docs_queries() -> list[tuple[str, str]]:
    """(comment, PromQL) of the ```promql block of docs/metrics.md."""
    [block] = re.findall(r"```promql\n(.*?)```", DOCS.read_text(), re.S)
    out, comment = [], ""
    for line in block.splitlines():
        if line.startswith("#"):
            comment = line.lstrip("# ")
        elif line.strip():
            out.append((comment, line.strip()))
    return out


def documented_labels(query: str) -> set[str]:
    """The labels a query's result has: those of its outer ``by (...)``, without ``le`` under histogram_quantile."""
    m = re.search(r"by \(([^)]*)\)", query)
    labels = {x.strip() for x in m.group(1).split(",")} if m else set()
    return labels - {"le"} if query.startswith("histogram_quantile") else labels


def dashboard_queries(rate_interval: str = "10s") -> list[tuple[str, str]]:
    """(panel title, PromQL with the dashboard variables filled in as Grafana would for this run)."""
    d = json.loads(DASHBOARD.read_text())
    subst = {"$__rate_interval": rate_interval, "$job": SCRAPE_JOB, "$cap": str(CAP)}
    out = []
    for p in d["panels"]:
        for t in p["targets"]:
            expr = t["expr"]
            for k, v in subst.items():
                expr = expr.replace(k, v)
            out.append((p["title"], expr))
    return out


def short_for_rules(dest: Path) -> Path:
    """A copy of the shipped rules with every ``for:`` cut to 3 s (nothing else changed)."""
    text, n = re.subn(r"(?m)^(\s+for: )\S+$", r"\g<1>3s", ALERTS.read_text())
    assert n == len(alert_names())
    dest.write_text(text)
    return dest


class Prom:
    def __init__(self, http: aiohttp.ClientSession, port: int):
        self.http, self.base = http, f"http://127.0.0.1:{port}"

    async def get(self, path: str, **params: str) -> Any:
        async with self.http.get(self.base + path, params=params) as r:
            body = await r.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, q: str) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=q)
        assert data["resultType"] == "vector", (q, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> dict[str, set[str]]:
        """alertname -> states (pending, firing)."""
        out: dict[str, set[str]] = {}
        for a in (await self.get("/api/v1/alerts"))["alerts"]:
            out.setdefault(a["labels"]["alertname"], set()).add(a["state"])
        return out


async def start_prometheus(tmp: Path, target_port: int, port: int) -> asyncio.subprocess.Process:
    rules = short_for_rules(tmp / "alerts.yaml")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("wb")
    return await asyncio.create_subprocess_exec(
        str(prometheus_binary("prometheus")),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_prometheus_scrapes_the_controller_and_the_alerts_fire(
    kube: KubeClient, kubeconfig: str, control_plane: ControlPlane | None, namespace: str, tmp_path: Path
) -> None:
    t_start = time.time()
    ns, other = namespace, f"{namespace}-b"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": other}})
    procs: list[asyncio.subprocess.Process] = []
    try:
        # --- the controller's identity: a ServiceAccount; ConfigMaps and Jobs in ns, no Job create in `other`
        await kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "jobtrigger"}})
        user = f"system:serviceaccount:{ns}:jobtrigger"
        await grant_role(kube, ns, user, CONTROLLER_RULES + LEASE_RULES)
        no_create = [
            {**r, "verbs": [v for v in r["verbs"] if v != "create"]} if r["resources"] == ["jobs"] else r
            for r in CONTROLLER_RULES
        ]
        await grant_role(kube, other, user, CONTROLLER_RULES)  # until the JobTrigger there has run once
        token, _ = await _sa_token(kube, control_plane, ns, "jobtrigger")
        sa_kubeconfig = _sa_kubeconfig(kubeconfig, token, ns, tmp_path / "sa-kubeconfig")

        port, prom_port = free_port(), free_port()
        ctl_log = (tmp_path / "controller.log").open("wb")
        controller = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobtrigger.cli", "controller", "--kubeconfig", str(sa_kubeconfig),
            "--namespace", f"{ns},{other}", "--http-addr", f"127.0.0.1:{port}", "--max-active-jobs", str(CAP),
            "--leader-elect", "--leader-election-namespace", ns, "--log-format", "json",
            stdin=subprocess.DEVNULL, stdout=ctl_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(controller)
        prometheus = await start_prometheus(tmp_path, port, prom_port)
        procs.append(prometheus)

        async with aiohttp.ClientSession() as http:
            prom = Prom(http, prom_port)

            async def up() -> bool:
                assert controller.returncode is None, (tmp_path / "controller.log").read_text()
                assert prometheus.returncode is None, (tmp_path / "prometheus.log").read_text()
                try:
                    return bool(await prom.query(f'up{{job="{SCRAPE_JOB}"}} == 1'))
                except (aiohttp.ClientError, AssertionError):
                    return False

            await wait_for(up, "Prometheus scraping the controller", timeout=30)
            rules = await prom.get("/api/v1/rules")
            loaded = {r["name"]: r["health"] for g in rules["groups"] for r in g["rules"]}
            assert loaded == {name: "ok" for name in alert_names()}

            # --- healthy: a JobTrigger in `other` runs once (a ConfigMap change); then the controller
            # loses `create` on jobs there (its template was validated by a dry run already: the next create fails)
            watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]
            await create_cm(kube, other, "cfg", {"n": "0"})
            await create_jt(kube, other, "refused", {"resources": {"cooldown": "0s", "watch": watch}})
            await wait_ready(kube, other, "refused")
            await patch_cm(kube, other, "cfg", {"data": {"n": "1"}})
            [first] = await wait_jobs(kube, other, "refused", 1)
            await kube.merge_patch(
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{other}/roles/jobtrigger", {"rules": no_create}
            )

            # changes -> Jobs, more than the cap (the last one waits), one Job's pod fails
            await create_cm(kube, ns, "cfg", {"n": "0"})
            await create_jt(kube, ns, "changes", {"resources": {"cooldown": "0s", "watch": watch}})
            await wait_ready(kube, ns, "changes")
            for i in range(1, 5):
                await patch_cm(kube, ns, "cfg", {"data": {"n": str(i)}})
                await asyncio.sleep(0.7)
            jobs = await wait_jobs(kube, ns, "changes", CAP - 1)
            await finish_job_pods(kube, ns, jobs[0]["metadata"]["name"], phase="Failed")
            await wait_jobs(kube, ns, "changes", CAP)  # the cap freed a slot: the waiting run got its Job
            await finish_job_pods(kube, other, first["metadata"]["name"], phase="Succeeded")  # below the cap
            await asyncio.sleep(3)  # a few healthy scrapes before the trouble

            # --- trouble: a refused Job create, refused watches, a forbidden reference
            await patch_cm(kube, other, "cfg", {"data": {"n": "2"}})
            for kind, api in (("Secret", "v1"), ("Pod", "v1"), ("Deployment", "apps/v1")):
                w = [{"apiVersion": api, "kind": kind, "name": "x"}]
                await create_jt(kube, ns, f"no-{kind.lower()}", {"resources": {"watch": w}})
            cross = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "namespace": other}]
            await create_jt(kube, ns, "cross", {"resources": {"watch": cross}})
            for name in ("no-secret", "no-pod", "no-deployment"):
                assert (condition(await wait_ready(kube, ns, name, "False")) or {})["reason"] == "WatchFailed"
            assert (condition(await wait_ready(kube, ns, "cross", "False")) or {})["reason"] == "Forbidden"
            assert len(await jobs_of(kube, other, "refused")) == 1

            seen_alerts: list[dict[str, set[str]]] = [{}]

            async def firing() -> dict[str, set[str]] | None:
                got = seen_alerts[0] = await prom.alerts()
                return got if all("firing" in got.get(a, set()) for a in EXPECTED_FIRING) else None

            try:
                alerts = await wait_for(firing, f"alerts {sorted(EXPECTED_FIRING)} firing", timeout=45)
            except AssertionError as e:
                values = {q: await prom.query(q) for q in ("jobtrigger_jobs_created_total", "jobtrigger_syncs_total")}
                raise AssertionError(f"{e}; alerts: {seen_alerts[0]}; {values}") from None
            assert not QUIET & set(alerts), alerts
            assert "changes" in str(await get_jt(kube, ns, "changes"))

            # --- every query of docs/metrics.md: series, with the documented labels
            for comment, q in docs_queries():
                result = await prom.query(q)
                assert result, f"docs/metrics.md query ({comment}) returned nothing: {q}"
                for sample in result:
                    assert set(sample["metric"]) == documented_labels(q), (q, sample)
                    assert not math.isnan(float(sample["value"][1])) or "quantile" in q, (q, sample)
            by_trigger = await prom.query(docs_queries()[0][1])
            assert {s["metric"]["trigger"] for s in by_trigger} == {"resources"}
            errors = await prom.query(
                'sum by (verb, resource, code) (rate(jobtrigger_api_requests_total{code!~"2..|404|409"}[5m]))'
            )
            seen = {(x["metric"]["verb"], x["metric"]["resource"], x["metric"]["code"]) for x in errors}
            assert ("POST", "jobs", "403") in seen, seen  # the refused Job create
            assert {r for v, r, c in seen if c == "403" and v in ("GET", "WATCH")} >= {"secrets", "pods"}, seen

            async def reasons() -> dict[str, float] | None:
                # the gauge follows the JobTriggers' conditions and Prometheus scrapes it later: awaited
                got = {s["metric"]["reason"]: float(s["value"][1]) for s in await prom.query(
                    "sum by (reason) (jobtrigger_jobtriggers)"
                )}  # fmt: skip
                return got if got.get("WatchFailed") == 3 and got.get("Forbidden") == 1 else None

            await wait_for(reasons, "3 JobTriggers WatchFailed and 1 Forbidden in Prometheus", timeout=30)

            # --- every panel of the dashboard has data (a number, over the run)
            end = time.time()
            panels: dict[str, list[dict[str, Any]]] = {}
            for title, q in dashboard_queries():
                data = await prom.get(
                    "/api/v1/query_range", query=q, start=str(t_start), end=str(end), step="1"
                )  # fmt: skip
                values = [float(v) for s in data["result"] for _, v in s["values"]]
                assert any(not math.isnan(v) for v in values), f"panel {title!r}: no data for {q}"
                panels.setdefault(title, []).extend(
                    {"query": q, "metric": s["metric"], "values": s["values"]} for s in data["result"]
                )

            # --- the controller goes away: nobody leads
            await stop(controller)
            assert controller.returncode == 0

            async def no_leader() -> dict[str, set[str]] | None:
                got = await prom.alerts()
                return got if "firing" in got.get("JobTriggerNoLeader", set()) else None

            await wait_for(no_leader, "JobTriggerNoLeader firing", timeout=30)

            if os.environ.get("JOBTRIGGER_DASHBOARD_DATA"):
                Path(os.environ["JOBTRIGGER_DASHBOARD_DATA"]).write_text(  # noqa: ASYNC240
                    json.dumps({"start": t_start, "end": end, "alerts": sorted(alerts), "panels": panels})
                )
    finally:
        for p in reversed(procs):
            await stop(p)
        with contextlib.suppress(Exception):
            await kube.delete(f"/api/v1/namespaces/{other}")
