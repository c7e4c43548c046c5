"""Documentation that runs (issue 13): every file in examples/ and every ```yaml block of README.md and docs/*.md
that holds a JobTrigger is applied to the real API server, each in a namespace of its own with the controller
running, and each JobTrigger must become Ready. Where an example's comments say "change X, then a Job appears",
the test does it and sees the Job. Blocks that are not full manifests are either completed into a JobTrigger
(JobTrigger fragments such as ``spec: {triggers: ...}``) or listed in :data:`FRAGMENTS` with the reason they do not
run, so a new block is never skipped silently.

The error messages the docs quote (docs/api.md "Error messages" and "The Ready condition", the validation stages,
docs/operations.md "Troubleshooting") are produced on the real server and compared with what the controller wrote
into the Ready condition and the Warning Event: a wording change in the code fails here instead of leaving the docs
stale. Placeholders in a quote (``...``, ``<API server message>``, ``[i]``) match anything; the test namespace is
written as ``default`` before comparing.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobtrigger.api.validation import parse_jobtrigger
from jobtrigger.jobs.builder import Occurrence, build_job
from jobtrigger.kube.client import ApiError, KubeClient
from jobtrigger.kube.discovery import Discovery
from tests.integration.conftest import (
    CONTROLLER_RULES,
    Runner,
    condition,
    finish_job_pods,
    get_jt,
    grant_role,
    jobs_of,
    jt_path,
    stays,
    wait_for,
    wait_jobs,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.y*ml"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
JT_API = "jobtrigger.dev/v1alpha1"

#: what the suite must find at least (README + docs held 21 JobTriggers in 21 blocks when this test was written)
MIN_EXAMPLES = 12
MIN_DOC_MANIFESTS = 21

#: how many cases of each kind actually ran in this session (printed at the end of the module)
EXECUTED: dict[str, int] = {"example": 0, "doc block": 0, "doc fragment": 0, "error message": 0}


# ---------------------------------------------------------------------------------------------------- Markdown


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    doc: str  # path relative to the repository
    line: int  # 1-based line of the opening fence
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def documents(self) -> list[Any]:
        return [d for d in yaml.safe_load_all(self.text) if d is not None]


FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<lang>[\w+-]*)[^\n]*$")


def fenced_blocks(path: Path, text: str | None = None) -> list[Block]:
    """Every fenced block (of ``text``, a part of the file); the fence's indentation is removed from its lines."""
    out: list[Block] = []
    lines = (path.read_text() if text is None else text).splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m.group("indent")), m.group("fence")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        rel = str(path.relative_to(ROOT))
        out.append(Block(rel, i + 1, m.group("lang").lower(), "\n".join(body) + "\n"))
        i = j + 1
    return out


def yaml_blocks() -> list[Block]:
    return [b for doc in DOCS for b in fenced_blocks(doc) if b.lang in ("yaml", "yml")]


def holds_jobtrigger(block: Block) -> bool:
    return any(isinstance(d, dict) and d.get("kind") == "JobTrigger" for d in block.documents())


# ---------------------------------------------------------------------------------------------------- fragments

#: Kinds of the operators the migration guides start from: their manifests are the "before" side of a comparison.
FOREIGN_KINDS = {"CertWatcher", "ChangeTriggeredJob", "ExtendedJob", "PlanescapeJob", "QuarksJob"}


@dataclass(frozen=True)
class Fragment:
    """What to do with a ```yaml block that holds no JobTrigger.

    ``into``: the block is part of a JobTrigger; each YAML document is merged into a minimal JobTrigger at this
    path (``""``: the document is ``{spec: ...}``) and must become Ready. ``skip``: why it cannot run.
    """

    marker: str  # a text only this block (of its file) contains
    into: str | None = None
    skip: str = ""
    needs: dict[str, Any] | None = None  # what the fragment leaves out, merged in before it


FRAGMENTS: dict[str, list[Fragment]] = {
    "docs/api.md": [
        Fragment("    selector:\n      matchLabels: {app.kubernetes.io/part-of: shop}", into="spec.triggers.resources"),
        Fragment("containers:                                 # and initContainers", skip="what mount adds to a Job"),
        Fragment("matchLabels: {component: redis}", into=""),
        Fragment('cron: "@hourly"', into=""),
        Fragment("migrate: {log: migrate-log}", into="spec"),
        Fragment("# in jobTemplate, as written", skip="a Job template reference and the Job built from it"),
        Fragment("kind: Job\n", skip="a Job as the controller creates it (output, see examples/deployment-image)"),
        Fragment("message: watching 2 object(s) for 2 resource entries", skip="status written by the controller"),
        Fragment("triggers: schedule(* * * * * */5)", skip="status written by the controller"),
        Fragment("triggers: pods(Ready,Deleted)", skip="status written by the controller"),
    ],
    "docs/from-cert-watch.md": [
        Fragment("my-cert-volume", skip="a pod template excerpt of the cert-watch setup"),
        Fragment("# or: history: 3 (both); default: 5 each", into=""),
    ],
    "docs/from-extendedjob.md": [
        Fragment("podstate:", skip="ExtendedJob's API (the side being migrated from)"),
        Fragment("- {key: job-name, operator: DoesNotExist}", into=""),
        Fragment("# the Job of an ExtendedJob", skip="labels of an ExtendedJob's Job (output)"),
        Fragment("# the Job of a JobTrigger", skip="an excerpt of a Job the controller created (output)"),
        Fragment('secretRef: "mynamespace/fooSecret"', skip="ExtendedJob's API (the side being migrated from)"),
        Fragment("name: foo-secret      # in the JobTrigger's namespace", into=""),
    ],
    "docs/from-kube-changejob.md": [
        Fragment("spec:\n  cooldown: 30s", skip="ChangeTriggeredJob's API (the side being migrated from)"),
        Fragment(
            "cooldown: 30s     # default 60s; 0s disables",
            into="",
            needs={
                "spec": {"triggers": {"resources": {"watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "a"}]}}}
            },
        ),
        Fragment("spec:\n  history: 10\n", skip="ChangeTriggeredJob's API (same text as the next block)"),
        Fragment("history: 10                      # default 5, minimum 1", into=""),
        Fragment("# jobtrigger status after a run", skip="status written by the controller"),
    ],
    "docs/from-planescapejob.md": [
        Fragment(
            "concurrencyPolicy: Forbid   # CRD default", skip="PlanescapeJob's API (the side being migrated from)"
        ),
        Fragment("concurrencyPolicy: Forbid   # default is Allow: write it", into=""),
        # two blocks with the same text (PlanescapeJob's and JobTrigger's); both are valid JobTrigger spec
        Fragment("successfulJobsHistoryLimit: 3  # Keep 3 successful jobs", into=""),
        Fragment("# kubectl get job nightly-cleanup-", skip="an excerpt of a Job the controller created (output)"),
    ],
    "docs/from-quarksjob.md": [
        Fragment("# implicit: the operator deletes every succeeded Job", skip="QuarksJob's API (migrated from)"),
        Fragment("failedJobsHistoryLimit: 3       # keep failed ones to debug", into=""),
        Fragment("          versioned: true", skip="QuarksJob's API (the side being migrated from)"),
        Fragment("    keepVersions: 3", into=""),
    ],
    "docs/metrics.md": [
        Fragment(
            "# The alert rules of jobtrigger (docs/metrics.md#alert-rules)",
            skip="a Prometheus rules file: test_alerts.py checks it equals charts/jobtrigger/files/alerts.yaml "
            "and runs promtool on it; tests/integration/test_prometheus.py loads it into a real Prometheus",
        ),
    ],
    "docs/operations.md": [
        Fragment("# values-ha.yaml", skip="Helm values (tests/integration/test_helm_install.py installs the chart)"),
    ],
    "docs/rbac.md": [
        Fragment("rbac:\n  watch:", skip="Helm values (tests/integration/test_helm_install.py installs the chart)"),
    ],
}


def entries(block: Block) -> list[Fragment]:
    """The FRAGMENTS entries matching a block without a JobTrigger (a foreign operator's manifest: a built-in one)."""
    docs = block.documents()
    if docs and all(isinstance(d, dict) and d.get("kind") in FOREIGN_KINDS for d in docs):
        return [Fragment("", skip="the manifest being migrated from (that operator is not installed)")]
    return [f for f in FRAGMENTS.get(block.doc, []) if f.marker in block.text]


def classify(block: Block) -> Fragment:
    found = entries(block)
    assert len(found) == 1, (
        f"{block.id}: a ```yaml block without a JobTrigger must match exactly one FRAGMENTS entry of "
        f"{block.doc} in {__name__} (found {len(found)}): list it with what to do with it, or make it a full "
        f"manifest\n{block.text}"
    )
    return found[0]


BLOCKS = yaml_blocks()
MANIFEST_BLOCKS = [b for b in BLOCKS if holds_jobtrigger(b)]
FRAGMENT_BLOCKS = [b for b in BLOCKS if not holds_jobtrigger(b)]
#: fragments completed into a JobTrigger (a block matching no or several entries fails test_inventory instead)
COMPLETED_BLOCKS = [b for b in FRAGMENT_BLOCKS if len(e := entries(b)) == 1 and e[0].into is not None]


# ---------------------------------------------------------------------------------------------------- applying


def default_template() -> dict[str, Any]:
    return {
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]}},
        }
    }


def minimal_jobtrigger(name: str) -> dict[str, Any]:
    return {
        "apiVersion": JT_API,
        "kind": "JobTrigger",
        "metadata": {"name": name},
        "spec": {"triggers": {"manual": {}}, "jobTemplate": default_template()},
    }


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def localize(objs: list[dict[str, Any]], ns: str) -> list[dict[str, Any]]:
    """The objects of one example or block, moved from the example's namespace into the test's namespace.

    The example's namespace is the JobTrigger's (``default``, ``ops``, ...; none: the current one). Every object of
    the example lives there, and so does everything a JobTrigger names in that namespace (``watch[].namespace``,
    ``pods.namespace``); references to other namespaces are left as written."""
    objs = copy.deepcopy(objs)
    homes = {(o.get("metadata") or {}).get("namespace") for o in objs if o.get("kind") == "JobTrigger"} - {None}
    assert len(homes) <= 1, f"JobTriggers in several namespaces: {homes}"
    home = next(iter(homes), None)
    for o in objs:
        meta = o.setdefault("metadata", {})
        assert meta.get("namespace") in (None, home), f"{o['kind']}/{meta.get('name')}: not in namespace {home}"
        if o.get("kind") != "JobTrigger":
            continue
        triggers = (o.get("spec") or {}).get("triggers") or {}
        for w in (triggers.get("resources") or {}).get("watch") or []:
            if home is not None and w.get("namespace") == home:
                w["namespace"] = ns
        pods = triggers.get("pods") or {}
        if home is not None and pods.get("namespace") == home:
            pods["namespace"] = ns
    return objs


@dataclass
class Env:
    """One example's namespace on the test server."""

    kube: KubeClient
    ns: str
    discovery: Discovery
    strict: bool  # the server supports fieldValidation=Strict (1.25+): a typo in a manifest is an error
    created: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def path(self, api_version: str, kind: str, name: str = "") -> str:
        gvr = await self.discovery.resolve(api_version, kind)
        return gvr.path(self.ns if gvr.namespaced else None, name or None)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(obj)
        gvr = await self.discovery.resolve(body["apiVersion"], body["kind"])
        meta = body.setdefault("metadata", {})
        if gvr.namespaced:
            meta["namespace"] = self.ns
        else:
            meta.pop("namespace", None)
        query = {"fieldValidation": "Strict"} if self.strict else {}
        try:
            got = await self.kube.create(gvr.path(self.ns if gvr.namespaced else None), body, **query)
        except ApiError as e:
            raise AssertionError(f"creating {body['kind']}/{meta.get('name')}: {e.status} {e.message}") from None
        self.created.append((gvr.path(self.ns if gvr.namespaced else None, meta["name"]), got))
        return got

    async def patch(self, api_version: str, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.merge_patch(await self.path(api_version, kind, name), patch)

    async def check_job_template(self, jt: dict[str, Any]) -> None:
        """``jobTemplate.spec`` is mostly schema-less in the CRD (the API server keeps unknown fields there, the
        controller's dry run prunes them): where the server can, a strict dry run of the Job the controller would
        build finds a typo in it."""
        if not self.strict:
            return
        model, errors = parse_jobtrigger(jt)
        assert model is not None and not errors, errors
        job = build_job(
            trigger_name=jt["metadata"]["name"],
            namespace=self.ns,
            trigger_uid=jt["metadata"]["uid"],
            spec=model.spec,
            occurrence=Occurrence("manual", "docs-dry-run", "a strict dry run by the docs test"),
        )
        try:
            await self.kube.create(
                f"/apis/batch/v1/namespaces/{self.ns}/jobs", job, dryRun="All", fieldValidation="Strict"
            )
        except ApiError as e:
            raise AssertionError(f"jobTemplate of {jt['metadata']['name']}: {e.status} {e.message}") from None

    async def ready(self, name: str, timeout: float = 30) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            jt = await get_jt(self.kube, self.ns, name)
            c = condition(jt)
            if c and c.get("status") == "False":
                raise AssertionError(f"JobTrigger {name}: Ready=False, {c.get('reason')}: {c.get('message')}")
            return jt if c and c.get("status") == "True" else None

        return await wait_for(probe, f"JobTrigger {name} Ready=True", timeout)

    async def jobs(self, owner: str, count: int, selector: str = "", timeout: float = 30) -> list[dict[str, Any]]:
        if not selector:
            return await wait_jobs(self.kube, self.ns, owner, count, timeout)

        async def probe() -> list[dict[str, Any]] | None:
            got = await self.kube.get(
                f"/apis/batch/v1/namespaces/{self.ns}/jobs", labelSelector=f"jobtrigger.dev/owner={owner},{selector}"
            )
            items: list[dict[str, Any]] = got.get("items") or []
            return items if len(items) >= count else None

        return await wait_for(probe, f"{count} Job(s) of {owner} with {selector}", timeout)

    async def no_more_jobs(self, owner: str, count: int, seconds: float = 2.0) -> None:
        async def probe() -> bool:
            return len(await jobs_of(self.kube, self.ns, owner)) == count

        assert await stays(probe, seconds), f"{owner}: expected exactly {count} Job(s)"

    async def status(self, name: str) -> dict[str, Any]:
        return dict((await get_jt(self.kube, self.ns, name)).get("status") or {})


@pytest.fixture(scope="module")
async def server_strict(kube: KubeClient) -> bool:
    version = await kube.get("/version")
    minor = int(re.sub(r"\D.*", "", str(version.get("minor", "0"))) or 0)
    return minor >= 25


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Any:
    """At the end of the module: how many examples, doc blocks and quoted messages ran against the server."""
    yield
    line = "docs and examples run against the API server: " + ", ".join(f"{n} {k}(s)" for k, n in EXECUTED.items())
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(line)
        else:
            print(line)


@pytest.fixture
async def env(kube: KubeClient, namespace: str, runner: Runner, server_strict: bool) -> AsyncIterator[Env]:
    e = Env(kube, namespace, Discovery(kube), server_strict)
    try:
        yield e
    finally:
        for path, _ in reversed(e.created):  # cluster-scoped objects outlive the namespace
            if "/namespaces/" not in path:
                with contextlib.suppress(ApiError):
                    await kube.delete(path)


async def apply_manifests(env: Env, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create the objects (prerequisites first, JobTriggers last); every JobTrigger must become Ready."""
    objs = localize(objs, env.ns)
    order = sorted(objs, key=lambda o: o.get("kind") == "JobTrigger")
    jts = []
    for obj in order:
        got = await env.create(obj)
        if obj.get("kind") == "JobTrigger":
            await env.check_job_template(got)
            jts.append(got)
    assert jts, "no JobTrigger"
    return [await env.ready(jt["metadata"]["name"]) for jt in jts]


# ---------------------------------------------------------------------------------------------------- walkthroughs
# What an example's comments tell the reader to do, done on the server. Keyed by file name; every example whose
# comments describe a change that runs a Job has one (test_every_walkthrough_is_covered checks the kubectl lines).


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def env_of(job: dict[str, Any], container: int = 0) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][container]["env"]}


async def finish(env: Env, job: dict[str, Any], messages: dict[str, str] | None = None) -> None:
    """Play the kubelet for the Job's pod, then wait until the controller has seen the Job finish."""
    name = job["metadata"]["name"]
    owner = job["metadata"]["labels"]["jobtrigger.dev/owner"]
    await finish_job_pods(env.kube, env.ns, name, "Succeeded", messages)

    async def done() -> bool:
        st = await env.status(owner)
        return not any(a.get("name") == name for a in st.get("active") or [])

    await wait_for(done, f"Job {name} no longer active", 30)


async def walk_cluster_scoped_node(env: Env) -> None:
    # kubectl label node worker-1 example.com/maintenance=true
    await env.patch("v1", "Node", "worker-1", {"metadata": {"labels": {"example.com/maintenance": "true"}}})
    (job,) = await env.jobs("worker-1-labels", 1)
    assert job["metadata"]["annotations"]["jobtrigger.dev/reason"] == "Node/worker-1 updated (metadata.labels)"


async def walk_configmap_change(env: Env) -> None:
    await env.patch("v1", "ConfigMap", "app-config", {"data": {"greeting": "hi"}})
    (job,) = await env.jobs("on-config-change", 1)
    assert env_of(job)["JOBTRIGGER_CHANGED_PATHS"] == "data"


async def walk_deployment_image(env: Env) -> None:
    # replica changes do not count ...
    await env.patch("apps/v1", "Deployment", "web-app", {"spec": {"replicas": 2}})
    await env.no_more_jobs("web-app-image", 0)
    # ... kubectl set image deployment/web-app web=nginx:1.27-alpine does
    containers = [{"name": "web", "image": "nginx:1.27-alpine"}]
    await env.patch("apps/v1", "Deployment", "web-app", {"spec": {"template": {"spec": {"containers": containers}}}})
    (job,) = await env.jobs("web-app-image", 1)
    assert env_of(job)["JOBTRIGGER_CHANGED_PATHS"] == "spec.template.spec.containers[*].image"
    assert job["metadata"]["labels"]["app.kubernetes.io/part-of"] == "web-app"


async def walk_errand(env: Env) -> None:
    # 1. jobtrigger run db-backup / kubectl annotate jt db-backup jobtrigger.dev/run-requested=...
    await env.patch(JT_API, "JobTrigger", "db-backup", {"metadata": {"annotations": {RUN: "1700000000"}}})
    (first,) = await env.jobs("db-backup", 1, "jobtrigger.dev/trigger=manual")
    assert env_of(first)["JOBTRIGGER_RUN_REQUEST"] == "1700000000"
    await finish(env, first)  # concurrencyPolicy Forbid: the errand below must not find it active
    # 2. kubectl patch jt db-backup --type merge -p '{"spec":{"triggers":{"manual":{"strategy":"now"}}}}'
    await env.patch(JT_API, "JobTrigger", "db-backup", {"spec": {"triggers": {"manual": {"strategy": "now"}}}})
    await env.jobs("db-backup", 2, "jobtrigger.dev/trigger=manual")

    async def reset() -> bool:
        jt = await get_jt(env.kube, env.ns, "db-backup")
        return bool(jt["spec"]["triggers"]["manual"]["strategy"] == "manual")

    await wait_for(reset, "strategy set back to manual")


async def walk_label_selector(env: Env) -> None:
    await env.patch("v1", "ConfigMap", "shop-prices", {"data": {"apple": "0.55"}})
    (job,) = await env.jobs("shop-config", 1)
    assert json.loads(env_of(job)["JOBTRIGGER_OBJECTS"])[0]["name"] == "shop-prices"
    # kubectl create configmap shop-stock ... && kubectl label configmap shop-stock app.kubernetes.io/part-of=shop
    await env.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shop-stock"}, "data": {"a": "1"}})
    await env.patch("v1", "ConfigMap", "shop-stock", {"metadata": {"labels": {"app.kubernetes.io/part-of": "shop"}}})
    jobs = await env.jobs("shop-config", 2, timeout=30)  # after the 10 s cooldown
    created = [o for j in jobs for o in json.loads(env_of(j)["JOBTRIGGER_OBJECTS"]) if o["name"] == "shop-stock"]
    assert created and created[0]["change"] == "created"


async def walk_multi_resource_all(env: Env) -> None:
    await env.patch("v1", "ConfigMap", "sync-config", {"data": {"endpoint": "https://api-v2.example.com"}})

    async def pending() -> str | None:
        return (await env.status("sync-all")).get("pending")

    assert await wait_for(pending, "status.pending") == "condition All: waiting for watch[1] to change"
    await env.no_more_jobs("sync-all", 0, 1.0)
    await env.patch("v1", "Secret", "sync-credentials", {"stringData": {"token": "rotated"}})
    (job,) = await env.jobs("sync-all", 1)
    assert job["metadata"]["annotations"]["jobtrigger.dev/reason"].endswith("updated (data) and 1 more")


async def walk_nightly_schedule(env: Env) -> None:
    async def next_run() -> str | None:
        return (await env.status("nightly-cleanup")).get("nextScheduleTime")

    nxt = await wait_for(next_run, "status.nextScheduleTime")
    assert re.search(r"T0[01]:00:00", nxt), nxt  # 02:00 Europe/Berlin is 00:00 or 01:00 UTC


async def walk_once(env: Env) -> None:
    (job,) = await env.jobs("migration-job", 1)
    assert env_of(job)["JOBTRIGGER_TRIGGER"] == "schedule"
    await env.no_more_jobs("migration-job", 1, 1.0)


async def walk_output_versioned_secret(env: Env) -> None:
    async def version(n: int) -> dict[str, Any] | None:
        got = await env.kube.get(
            f"/api/v1/namespaces/{env.ns}/secrets", labelSelector="jobtrigger.dev/output-of=db-creds"
        )
        found = [s for s in got["items"] if s["metadata"]["name"] == f"db-creds-v{n}"]
        return found[0] if found else None

    for n, (selector, password) in enumerate([("schedule", "first"), ("manual", "second")], 1):
        if selector == "manual":  # jobtrigger run generate-db-creds: a new password -> db-creds-v2
            await env.patch(JT_API, "JobTrigger", "generate-db-creds", {"metadata": {"annotations": {RUN: "again"}}})
        (job,) = await env.jobs("generate-db-creds", 1, f"jobtrigger.dev/trigger={selector}")
        assert env_of(job)["JOBTRIGGER_OUTPUT_FILE"] == "/var/run/jobtrigger/output.json"
        out = {"creds.json": {"user": "app", "password": password, "port": 5432}}
        await finish_job_pods(env.kube, env.ns, job["metadata"]["name"], "Succeeded", {"generate": json.dumps(out)})
        secret = await wait_for(lambda n=n: version(n), f"Secret db-creds-v{n}", 30)
        assert base64.b64decode(secret["data"]["password"]).decode() == password
        assert secret["metadata"]["labels"]["app.kubernetes.io/part-of"] == "shop" and secret["immutable"] is True


async def walk_pod_ready(env: Env) -> None:
    # kubectl run redis-0 --image=redis:7 --labels=component=redis,tier=cache,environment=prod
    labels = {"component": "redis", "tier": "cache", "environment": "prod"}
    spec = {"containers": [{"name": "redis-0", "image": "redis:7"}]}
    await env.create(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "redis-0", "labels": labels}, "spec": spec}
    )
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}
    await env.kube.merge_patch(
        f"/api/v1/namespaces/{env.ns}/pods/redis-0/status",
        {"status": {"phase": "Running", "podIP": "10.1.2.3", "conditions": [ready]}},
    )
    (job,) = await env.jobs("redis-ready", 1)
    assert job["metadata"]["labels"]["jobtrigger.dev/affected-pod"] == "redis-0"
    assert env_of(job)["JOBTRIGGER_POD_STATE"] == "Ready"
    # kubectl delete pod redis-0: a second Job, JOBTRIGGER_POD_STATE=Deleted
    await env.kube.request("DELETE", f"/api/v1/namespaces/{env.ns}/pods/redis-0", query={"gracePeriodSeconds": 0})
    jobs = await env.jobs("redis-ready", 2)
    assert sorted(env_of(j)["JOBTRIGGER_POD_STATE"] for j in jobs) == ["Deleted", "Ready"]


async def walk_rerun_on_config_change(env: Env) -> None:
    (once,) = await env.jobs("migrate", 1)
    await finish(env, once)  # concurrencyPolicy Queue: a change during the run waits for it
    await env.patch("v1", "ConfigMap", "migrate-settings", {"data": {"target": "42"}})
    (job,) = await env.jobs("migrate", 1, "jobtrigger.dev/trigger=config")
    assert env_of(job)["JOBTRIGGER_REASON"].startswith("ConfigMap/")
    await env.patch("v1", "ConfigMap", "migrate-settings", {"metadata": {"labels": {"touched": "yes"}}})
    await env.no_more_jobs("migrate", 2)


async def walk_tls_secret_mount(env: Env) -> None:
    # kubectl create secret tls example-tls --cert=new.crt --key=new.key --dry-run=client -o yaml | kubectl apply -f -
    await env.patch("v1", "Secret", "example-tls", {"data": {"tls.crt": b64("new cert"), "tls.key": b64("new key")}})
    (job,) = await env.jobs("example-tls-distribute", 1)
    pod = job["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "certs"] == ["example-tls"]
    for c in pod["containers"]:
        assert {"name": "certs", "mountPath": "/workspace", "readOnly": True} in c["volumeMounts"]


RUN = "jobtrigger.dev/run-requested"

#: objects an example's comments create before the `kubectl apply` (apiVersion, kind, name -> the manifest)
PREREQUISITES: dict[str, list[dict[str, Any]]] = {
    "cluster-scoped-node.yaml": [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}}],
    "tls-secret-mount.yaml": [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "example-tls"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64("cert"), "tls.key": b64("key")},
        }
    ],
}

WALKTHROUGHS: dict[str, Callable[[Env], Awaitable[None]]] = {
    "cluster-scoped-node.yaml": walk_cluster_scoped_node,
    "configmap-change.yaml": walk_configmap_change,
    "deployment-image.yaml": walk_deployment_image,
    "errand.yaml": walk_errand,
    "label-selector.yaml": walk_label_selector,
    "multi-resource-all.yaml": walk_multi_resource_all,
    "nightly-schedule.yaml": walk_nightly_schedule,
    "once.yaml": walk_once,
    "output-versioned-secret.yaml": walk_output_versioned_secret,
    "pod-ready.yaml": walk_pod_ready,
    "rerun-on-config-change.yaml": walk_rerun_on_config_change,
    "tls-secret-mount.yaml": walk_tls_secret_mount,
}


# ---------------------------------------------------------------------------------------------------- tests


def test_inventory() -> None:
    """Everything is found and everything is accounted for (no server needed)."""
    assert len(EXAMPLES) >= MIN_EXAMPLES, [p.name for p in EXAMPLES]
    assert sum(1 for b in MANIFEST_BLOCKS for d in b.documents() if d.get("kind") == "JobTrigger") >= MIN_DOC_MANIFESTS
    for b in FRAGMENT_BLOCKS:
        classify(b)  # fails for a block nobody decided about
    for doc, entries in FRAGMENTS.items():
        for f in entries:
            assert any(b.doc == doc and f.marker in b.text for b in FRAGMENT_BLOCKS), f"stale FRAGMENTS entry {f}"
    for doc in DOCS:  # a JobTrigger in a block that is not ```yaml would escape the test
        for b in fenced_blocks(doc):
            assert b.lang in ("yaml", "yml") or "kind: JobTrigger" not in b.text, f"{b.id}: mark it ```yaml"
    print(
        f"{len(EXAMPLES)} examples, {len(MANIFEST_BLOCKS)} doc blocks with a JobTrigger, {len(COMPLETED_BLOCKS)} "
        f"JobTrigger fragments completed, {len(FRAGMENT_BLOCKS) - len(COMPLETED_BLOCKS)} blocks skipped with a reason"
    )


def test_every_walkthrough_is_covered() -> None:
    """An example whose comments tell the reader to change something has a walkthrough here."""
    for path in EXAMPLES:
        comments = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
        acts = re.search(r"kubectl (patch|label|set|annotate|run|delete|create)|jobtrigger run", comments)
        if acts or path.name in PREREQUISITES:
            assert path.name in WALKTHROUGHS, f"{path.name}: its comments describe steps; add a walkthrough"
    assert set(WALKTHROUGHS) <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"examples/{p.name}")
async def test_example(env: Env, path: Path) -> None:
    for obj in PREREQUISITES.get(path.name, []):
        await env.create(obj)
    objs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]  # noqa: ASYNC240 (a small file)
    await apply_manifests(env, objs)
    walk = WALKTHROUGHS.get(path.name)
    if walk is not None:
        await walk(env)
    EXECUTED["example"] += 1


@pytest.mark.parametrize("block", MANIFEST_BLOCKS, ids=lambda b: b.id)
async def test_doc_block(env: Env, block: Block) -> None:
    await apply_manifests(env, block.documents())
    EXECUTED["doc block"] += 1


@pytest.mark.parametrize("block", COMPLETED_BLOCKS, ids=lambda b: b.id)
async def test_doc_fragment(env: Env, block: Block) -> None:
    frag = classify(block)
    assert frag.into is not None
    for i, doc in enumerate(block.documents()):
        for key in reversed(frag.into.split(".") if frag.into else []):
            doc = {key: doc}
        assert set(doc) == {"spec"}, f"{block.id}: only spec can be completed into a JobTrigger, not {sorted(doc)}"
        jt = merge(merge(minimal_jobtrigger(f"fragment-{i}"), frag.needs or {}), doc)
        await apply_manifests(env, [jt])
    EXECUTED["doc fragment"] += 1


# ---------------------------------------------------------------------------------------------------- error messages

API, READY = ("docs/api.md", "Error messages"), ("docs/api.md", "The Ready condition")
STAGES = ("docs/api.md", "How a JobTrigger is validated")
OPS = ("docs/operations.md", "Troubleshooting")
#: a quote that starts with a field path and names what is wrong with it: a condition message
FIELD_MESSAGE = re.compile(r"^(spec|metadata)\.\S*: (\.\.\.|.* )")  # not `spec.suspend: true`


@dataclass(frozen=True)
class Quote:
    doc: str
    section: str
    text: str  # as the docs show it (a table row: "<field>: <message>")

    def pattern(self) -> re.Pattern[str]:
        """``...`` and ``<placeholder>`` match anything, ``[i]``/``[j]``/``[k]`` any index; compared with
        :func:`flat` text (inline code in Markdown cannot show a line break)."""
        out = ""
        for part in re.split(r"(\.\.\.|<[^<>]+>|\[[ijk]\])", self.text):
            if part == "..." or (part.startswith("<") and part.endswith(">")):
                out += ".*?"
            elif re.fullmatch(r"\[[ijk]\]", part):
                out += r"\[\d+\]"
            else:
                out += re.escape(part)
        return re.compile(out, re.S)

    def found_in(self, written: str, namespace: str) -> bool:
        return bool(self.pattern().search(flat(written).replace(namespace, "default")))


def flat(text: str) -> str:
    return " ".join(text.split())


def section(doc: str, title: str) -> str:
    lines = (ROOT / doc).read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+) (.+?)\s*$", line)
        if m and m.group(2) == title:
            level = len(m.group(1))
            end = next(
                (j for j in range(i + 1, len(lines)) if re.match(rf"^#{{1,{level}}} ", lines[j])),
                len(lines),
            )
            return "\n".join(lines[i + 1 : end])
    raise AssertionError(f"{doc}: no section {title!r}")


def code_spans(text: str) -> list[str]:
    text = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", text)]


def cells(row: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def documented_messages() -> list[Quote]:
    """Every error message the docs quote in the sections this test owns."""
    out: list[Quote] = []
    # docs/api.md "Error messages": the table (field | messages) and the paragraphs below it
    text = section(*API)
    for line in text.splitlines():
        if line.startswith("|"):
            row = cells(line)
            if len(row) != 2 or set(row[0]) <= set("-") or row[0] == "Field":
                continue
            for field_ in code_spans(row[0])[:1]:
                out += [Quote(*API, f"{field_}: {m}") for m in code_spans(row[1]) if " " in m]
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("|"))
    out += [Quote(*API, s) for s in code_spans(prose) if " " in s]
    # docs/api.md "The Ready condition": the Message column of the False rows
    for line in section(*READY).splitlines():
        row = cells(line) if line.startswith("|") else []
        if len(row) == 4 and row[0] == "`False`":
            out += [Quote(*READY, s) for s in code_spans(row[3]) if " " in s]
    # docs/api.md validation stages, docs/operations.md troubleshooting: field-named messages ...
    for where in (STAGES, OPS):
        out += [Quote(*where, s) for s in code_spans(section(*where)) if FIELD_MESSAGE.match(s)]
    # ... and the condition message and the Event of the `kubectl describe jt` output
    for block in re.findall(r"```console\n(.*?)```", section(*OPS), re.S):
        for m in re.finditer(r"^\s*(?:Message:|Warning\s+\w+\s+\S+\s+jobtrigger)\s+(.+?)\s*$", block, re.M):
            out.append(Quote(*OPS, m.group(1)))
    return out


@dataclass(frozen=True)
class ErrorCase:
    """A JobTrigger that makes the controller write the documented messages it claims."""

    id: str
    reason: str
    triggers: dict[str, Any]
    claims: tuple[tuple[tuple[str, str], str], ...]  # ((doc, section), a text only that quote contains)
    name: str = "broken"
    containers: tuple[dict[str, Any], ...] = ({"name": "main", "image": "busybox:1.36"},)
    identity: str = ""  # run the controller as this user, with the namespaced rules of CONTROLLER_RULES only
    rules: tuple[dict[str, Any], ...] = ()  # ... or with these rules instead
    allow_cross_namespace: bool = False

    def body(self) -> dict[str, Any]:
        jt = minimal_jobtrigger(self.name)
        jt["spec"]["triggers"] = self.triggers
        jt["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] = list(self.containers)
        return jt


def cm(**kw: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", **kw}


def watching(*entries: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"resources": {"watch": list(entries), **kw}}


CHART_SA = "system:serviceaccount:jobtrigger-system:jobtrigger"  # the identity docs/operations.md shows

ERROR_CASES = [
    ErrorCase("no-trigger", "InvalidSpec", {}, ((API, "set at least one of"),)),
    ErrorCase("name-xor-selector", "InvalidSpec", watching(cm()), ((API, "set exactly one of name and selector"),)),
    ErrorCase("empty-selector", "InvalidSpec", watching(cm(selector={})), ((API, "an empty selector"),)),
    ErrorCase(
        "selector-values",
        "InvalidSpec",
        watching(
            cm(
                selector={
                    "matchExpressions": [
                        {"key": "a", "operator": "In"},
                        {"key": "b", "operator": "Exists", "values": ["x"]},
                    ]
                }
            )
        ),
        ((API, "needs at least one value"), (API, "takes no values")),
    ),
    ErrorCase(
        "jmespath",
        "InvalidSpec",
        watching(cm(name="a"), cm(name="b", fields=["data.important-key"])),
        ((API, "invalid JMESPath expression"), (STAGES, "fields[0]: ..."), (OPS, "fields[0]: ...")),
    ),
    ErrorCase(
        "mount",
        "InvalidSpec",
        watching(
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "mount": {}},
            {"apiVersion": "v1", "kind": "Secret", "selector": {"matchLabels": {"a": "b"}}, "mount": {}},
        ),
        ((API, "only a v1 Secret or ConfigMap"), (API, "mount needs a watched object by name")),
    ),
    ErrorCase(
        "cooldown",
        "InvalidSpec",
        watching(cm(name="a"), cooldown="9000h"),
        ((API, "longer than the maximum"),),
    ),
    ErrorCase("cron-empty", "InvalidSpec", {"schedule": {"cron": " "}}, ((API, "empty expression"),)),
    ErrorCase(
        "cron-alias",
        "InvalidSpec",
        {"schedule": {"cron": "@hourlyy", "timeZone": "Mars/Base"}},
        ((API, "unknown alias"), (API, "'Mars/Base'")),
    ),
    ErrorCase(
        "cron-fields",
        "InvalidSpec",
        {"schedule": {"cron": "0 2 * *", "timeZone": "Europe/Berln"}},
        ((API, "has 4 fields; want 5"), (API, "'Europe/Berln'")),
    ),
    ErrorCase("cron-never", "InvalidSpec", {"schedule": {"cron": "0 0 30 2 *"}}, ((API, "never matches"),)),
    ErrorCase("cron-range", "InvalidSpec", {"schedule": {"cron": "61 * * * *"}}, ((API, "out of range"),)),
    ErrorCase(
        "pods-namespace",
        "Forbidden",
        {"pods": {"selector": {"matchLabels": {"app": "db"}}, "when": ["Ready"], "namespace": "other"}},
        ((API, "spec.triggers.pods.namespace: namespace 'other'"),),
    ),
    ErrorCase(
        "cluster-scoped",
        "InvalidSpec",
        watching({"apiVersion": "v1", "kind": "Node", "name": "n1", "namespace": "x"}),
        ((API, "is cluster-scoped"),),
    ),
    ErrorCase(
        "mount-namespace",
        "InvalidSpec",
        watching({"apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": "other", "mount": {}}),
        ((API, "own namespace can be mounted"),),
        allow_cross_namespace=True,
    ),
    ErrorCase(
        "unknown-kind",
        "UnknownKind",
        watching(
            {"apiVersion": "v1", "kind": "Gizmo", "name": "a"}, {"apiVersion": "x/v1", "kind": "Gizmo", "name": "a"}
        ),
        ((READY, "'Gizmo' does not exist"), (READY, "is not served")),
    ),
    ErrorCase(
        "forbidden",
        "Forbidden",
        watching(cm(name="a", namespace="kube-system")),
        ((READY, "'kube-system'"),),
    ),
    ErrorCase(
        "job-template",
        "InvalidJobTemplate",
        {"manual": {}},
        ((READY, "BAD_NAME"),),
        containers=({"name": "BAD_NAME", "image": "busybox:1.36"},),
    ),
    ErrorCase(
        "watch-secrets",
        "WatchFailed",
        # by selector: the API server names the object in its 403 for a watch by name ('secrets "s" is forbidden')
        watching(
            {"apiVersion": "v1", "kind": "Secret", "selector": {"matchLabels": {"app.kubernetes.io/part-of": "shop"}}}
        ),
        ((READY, "secrets.core"), (OPS, 'User "system:'), (OPS, "403 ...")),
        identity=CHART_SA,
    ),
    ErrorCase(
        "no-job-create",
        "SyncError",
        {"manual": {}},
        ((READY, "retrying with backoff"),),
        identity=CHART_SA,
        # the controller's rules without `create` on Jobs: the Job template's dry run is refused on every retry
        rules=tuple(
            {**r, "verbs": [v for v in r["verbs"] if v != "create"]} if r["resources"] == ["jobs"] else r
            for r in CONTROLLER_RULES
        ),
    ),
    ErrorCase(
        "watch-pods",
        "WatchFailed",
        {"pods": {"selector": {"matchLabels": {"app": "db"}}, "when": ["Ready"]}},
        ((READY, "list/watch pods in namespace"),),
        identity=CHART_SA,
    ),
]


def claimed(case: ErrorCase, quotes: list[Quote]) -> list[Quote]:
    out = []
    for (doc, sec), key in case.claims:
        found = [q for q in quotes if (q.doc, q.section) == (doc, sec) and key in q.text]
        assert len(found) == 1, f"{case.id}: {key!r} must match exactly one quote of {doc} {sec!r}, found {found}"
        out += found
    return out


def test_every_documented_message_has_a_case() -> None:
    """A message quoted in those sections that no case produces fails here (no server needed)."""
    quotes = documented_messages()
    assert len(quotes) >= 25, quotes
    covered = [q for case in ERROR_CASES for q in claimed(case, quotes)]
    missing = [q for q in quotes if q not in covered]
    assert not missing, f"documented messages no ErrorCase produces: {missing}"
    assert len(covered) == len(set(covered)), "a quote claimed twice"
    print(f"{len(quotes)} documented error messages, {len(ERROR_CASES)} cases")


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.id)
async def test_documented_error_message(
    kube: KubeClient, kubeconfig: str, namespace: str, server_strict: bool, case: ErrorCase
) -> None:
    quotes = claimed(case, documented_messages())
    if case.identity:
        await grant_role(kube, namespace, case.identity, list(case.rules) or CONTROLLER_RULES)
    runner = Runner(
        kubeconfig, namespace, impersonate=case.identity or None, allow_cross_namespace=case.allow_cross_namespace
    )
    await runner.start()
    try:
        query = {"fieldValidation": "Strict"} if server_strict else {}
        try:
            await kube.create(jt_path(namespace), case.body(), **query)
        except ApiError as e:
            if e.status == 422 and server_strict:  # 1.25+: the CRD's CEL rules refuse it before the controller
                pytest.skip(f"refused at admission on this server (CEL): {e.message}")
            raise

        async def not_ready() -> dict[str, Any] | None:
            c = condition(await get_jt(kube, namespace, case.name))
            return c if c and c.get("status") == "False" else None

        cond = await wait_for(not_ready, f"{case.name} Ready=False", 30)
        assert cond["reason"] == case.reason, cond

        async def event_messages() -> list[str] | None:
            got = await kube.get(
                f"/api/v1/namespaces/{namespace}/events", fieldSelector=f"involvedObject.name={case.name}"
            )
            found = [e["message"] for e in got["items"] if e.get("reason") == case.reason and e["type"] == "Warning"]
            return found or None

        events = await wait_for(event_messages, "the Warning Event", 20)
        for q in quotes:
            where = f"{q.doc} ({q.section}) quotes\n  {q.text}\n"
            assert q.found_in(cond["message"], namespace), f"{where}the condition says\n  {cond['message']}"
            assert any(q.found_in(e, namespace) for e in events), f"{where}the Events say\n  {events}"
    finally:
        await runner.stop()
    EXECUTED["error message"] += len(quotes)


async def test_documented_admission_errors(kube: KubeClient, namespace: str, server_strict: bool) -> None:
    """Stage 1 of docs/api.md: what the CRD schema refuses, in the words of the API server (kubectl's layout)."""
    (block,) = [b for b in fenced_blocks(ROOT / STAGES[0], section(*STAGES)) if " is invalid:" in b.text]
    lines = block.text.strip().splitlines()
    m = re.fullmatch(r'The (\w+) "(.+)" is invalid:', lines[0])
    assert m, lines[0]
    documented = sorted(line.removeprefix("* ") for line in lines[1:])
    jt = minimal_jobtrigger(m.group(2))
    jt["spec"]["history"] = 0
    jt["spec"]["triggers"] = {"resources": {"cooldown": "1 minute", "watch": []}}
    jt["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] = []
    with pytest.raises(ApiError) as refused:
        await kube.create(jt_path(namespace), jt)
    details = refused.value.body.get("details") or {}
    assert (refused.value.status, details.get("kind"), details.get("name")) == (422, m.group(1), m.group(2))
    actual = sorted(f"{c['field']}: {c['message']}" for c in details.get("causes") or [])
    if server_strict:  # 1.25+ also evaluates the CRD's CEL rules (documented with them), so more causes may come
        assert set(documented) <= set(actual), (documented, actual)
    else:
        assert documented == actual
    EXECUTED["error message"] += len(documented)


async def test_documented_unknown_fields(kube: KubeClient, namespace: str, server_strict: bool) -> None:
    """Stage 1 of docs/api.md: a typo such as ``cooldwon:`` is pruned, or refused under strict field validation."""
    text = section(*STAGES)
    assert "`cooldwon:`" in text
    jt = minimal_jobtrigger("typo")
    jt["spec"]["triggers"] = {"resources": {"cooldwon": "30s", "watch": [cm(name="a")]}}
    got = await kube.create(jt_path(namespace), jt)  # no fieldValidation: what the API server does by default
    assert got["spec"]["triggers"]["resources"] == {"cooldown": "60s", "condition": "Any", "watch": [cm(name="a")]}
    EXECUTED["error message"] += 1
    if not server_strict:
        return
    jt["metadata"]["name"] = "typo-strict"
    with pytest.raises(ApiError) as refused:
        await kube.create(jt_path(namespace), jt, fieldValidation="Strict")
    quotes = [q for q in code_spans(text) if "unknown field" in q]
    assert len(quotes) == 1, f"docs/api.md stage 1 should quote the refusal: {refused.value.message}"
    assert Quote(*STAGES, quotes[0]).found_in(refused.value.message, namespace), (quotes, refused.value.message)
