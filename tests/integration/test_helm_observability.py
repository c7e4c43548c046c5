"""`helm install` with the observability values on the real API server (issue #11): the PrometheusRule (with a
minimal monitoring.coreos.com CRD, as the Prometheus Operator would have installed it) and the Grafana dashboard
ConfigMap are created with exactly the chart's rules file and dashboard JSON, and `helm uninstall` removes them."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import yaml

from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import wait_for
from tests.integration.test_helm_install import CHART, _run, helm, helm_env  # noqa: F401  (helm is a fixture)

PROMETHEUS_RULE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {"kind": "PrometheusRule", "listKind": "PrometheusRuleList", "plural": "prometheusrules"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


async def _prometheus_rule_crd(kube: KubeClient) -> None:
    try:
        await kube.create(CRDS, PROMETHEUS_RULE_CRD)
    except ApiError as e:
        if e.status != 409:
            raise

    async def established() -> bool | None:
        crd = await kube.get(f"{CRDS}/prometheusrules.monitoring.coreos.com")
        conds = (crd.get("status") or {}).get("conditions") or []
        return True if any(c["type"] == "Established" and c["status"] == "True" for c in conds) else None

    await wait_for(established, "PrometheusRule CRD established")


async def test_helm_install_renders_the_alert_rules_and_the_dashboard(
    helm: Path,  # noqa: F811
    kube: KubeClient,
    kubeconfig: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    await _prometheus_rule_crd(kube)
    release = f"jt-{secrets.token_hex(3)}"
    env = helm_env(tmp_path)
    target = ["--kubeconfig", kubeconfig, "--namespace", namespace]
    values = [
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "metrics.grafanaDashboard.enabled=true",
    ]
    rc, out = await _run([str(helm), "install", release, str(CHART), *target, *values, "--skip-crds"], env)
    assert rc == 0, f"helm install failed:\n{out}"
    try:
        rules = (await kube.get(f"/apis/monitoring.coreos.com/v1/namespaces/{namespace}/prometheusrules"))["items"]
        assert len(rules) == 1
        rule = rules[0]
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        shipped = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
        assert rule["spec"]["groups"] == shipped["groups"]

        cms = (await kube.get(f"/api/v1/namespaces/{namespace}/configmaps", labelSelector="grafana_dashboard=1"))[
            "items"
        ]
        assert len(cms) == 1
        (dashboard,) = cms[0]["data"].values()
        assert json.loads(dashboard) == json.loads((CHART / "dashboards" / "jobtrigger.json").read_text())
    finally:
        rc, out = await _run([str(helm), "uninstall", release, *target], env)
        assert rc == 0, f"helm uninstall failed:\n{out}"

    async def removed() -> bool | None:
        rules = (await kube.get(f"/apis/monitoring.coreos.com/v1/namespaces/{namespace}/prometheusrules"))["items"]
        cms = (await kube.get(f"/api/v1/namespaces/{namespace}/configmaps", labelSelector="grafana_dashboard=1"))[
            "items"
        ]
        return True if not rules and not cms else None

    await wait_for(removed, "helm uninstall removed the PrometheusRule and the dashboard ConfigMap")
