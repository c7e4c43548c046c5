"""What the API server refuses at admission (the CRD's schema and CEL rules), and what only the controller can refuse.

* The CEL rules (``x-kubernetes-validations``, generated from jobtrigger/api/models.py) on a server that evaluates
  them (1.29+ here; CEL itself is 1.25+, ``fieldPath``/``reason`` 1.28+): each bad JobTrigger is a 422 whose
  causes name the field, and the controller's own validation names the same field (for older servers).
* On every server: the CRD with its CEL rules installs (1.20 drops the unknown keyword), and the issue-15
  reproducers (``jobTemplate.spec.template`` not an object) are a 422 naming ``spec.jobTemplate.spec.template``.
* A template only the controller can reject (the server keeps the rest of the template as written): Ready=False,
  reason InvalidSpec, the field path in the message; and a valid JobTrigger next to it still works.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from jobtrigger.api.crd import CRD_NAME
from jobtrigger.api.models import GROUP, VERSION
from jobtrigger.api.validation import parse_jobtrigger
from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import Runner, condition, create_jt, jt_path, wait_ready

CEL_MINOR = 29  # the oldest minor these rules are tested on (CEL GA in 1.29; fieldPath/reason since 1.28)


async def server_minor(kube: KubeClient) -> int:
    got = await kube.get("/version")
    return int(re.sub(r"\D", "", str(got.get("minor", "0"))) or 0)


def body(name: str = "bad", **spec: Any) -> dict[str, Any]:
    jt: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": name},
        "spec": {
            "triggers": {"manual": {}},
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
                    }
                }
            },
        },
    }
    jt["spec"].update(copy.deepcopy(spec))
    return jt


def cm(**kw: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", **kw}


def watching(*entries: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"resources": {"watch": list(entries), **kw}}


async def refused(kube: KubeClient, ns: str, obj: dict[str, Any]) -> list[tuple[str, str]]:
    """Create ``obj``; it must be refused with 422: the (field, message) causes."""
    with pytest.raises(ApiError) as info:
        await kube.create(jt_path(ns), obj)
    e = info.value
    assert e.status == 422, (e.status, e.message)
    causes = (e.body.get("details") or {}).get("causes") or []
    # CEL servers add a field-less note when a schema error kept the rules from running
    notes = ("some validation rules were not checked",)
    return [
        (str(c.get("field", "")), str(c.get("message", "")))
        for c in causes
        if not any(note in str(c.get("message", "")) for note in notes)
    ]


@dataclass(frozen=True)
class Case:
    id: str
    obj: dict[str, Any]
    field: str  # the field the 422 (and the controller) names
    message: str  # part of the rule's message
    controller: bool = True  # the controller checks it too (False: only useful at admission)


W0 = "spec.triggers.resources.watch[0]"
CASES = [
    Case("no-trigger", body(triggers={}), "spec.triggers", "set at least one of"),
    Case(
        "name-and-selector",
        body(triggers=watching(cm(name="a", selector={"matchLabels": {"a": "b"}}))),
        W0,
        "exactly one",
    ),
    Case(
        "neither-name-nor-selector",
        body(triggers=watching(cm(name="a"), cm())),
        "spec.triggers.resources.watch[1]",
        "exactly one",
    ),
    Case(
        "mount-on-a-deployment",
        body(triggers=watching({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "mount": {}})),
        f"{W0}.mount",
        "only a v1 Secret or ConfigMap",
    ),
    Case(
        "mount-by-selector",
        body(
            triggers=watching(
                {"apiVersion": "v1", "kind": "Secret", "selector": {"matchLabels": {"a": "b"}}, "mount": {}}
            )
        ),
        f"{W0}.mount",
        "mount needs a watched object by name",
    ),
    Case("empty-watch-selector", body(triggers=watching(cm(selector={}))), f"{W0}.selector", "an empty selector"),
    Case(
        "empty-pod-selector",
        body(triggers={"pods": {"selector": {"matchLabels": {}}, "when": ["Ready"]}}),
        "spec.triggers.pods.selector",
        "an empty selector",
    ),
    Case(
        "in-without-values",
        body(triggers=watching(cm(selector={"matchExpressions": [{"key": "a", "operator": "In"}]}))),
        f"{W0}.selector.matchExpressions[0].values",
        "needs at least one value",
    ),
    Case(
        "exists-with-values",
        body(
            triggers={
                "pods": {
                    "selector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
                    "when": ["Ready"],
                }
            }
        ),
        "spec.triggers.pods.selector.matchExpressions[0].values",
        "takes no values",
    ),
    Case(
        "cooldown-too-long",
        body(triggers=watching(cm(name="a"), cooldown="9000h")),
        "spec.triggers.resources.cooldown",
        "longer than the maximum",
    ),
    Case(
        "keep-versions-without-versioned",
        body(output={"name": "out", "keepVersions": 3}),
        "spec.output.keepVersions",
        "keepVersions applies to versioned outputs only",
        controller=False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_cel_rules_refuse_bad_jobtriggers_naming_the_field(kube: KubeClient, namespace: str, case: Case) -> None:
    minor = await server_minor(kube)
    if minor < CEL_MINOR:
        pytest.skip(f"CEL rules are tested on Kubernetes 1.{CEL_MINOR}+; this server is 1.{minor}, which ignores them")
    causes = await refused(kube, namespace, case.obj)
    assert any(field == case.field and case.message in message for field, message in causes), causes
    if case.controller:  # the same check in the controller (servers without CEL, objects stored before the rule)
        _, errors = parse_jobtrigger(case.obj)
        assert any(e.field == case.field and case.message in e.message for e in errors), errors


async def test_the_crd_with_cel_rules_installs_on_every_server(kube: KubeClient) -> None:
    """The ``kube`` fixture installed it; a server without CEL (< 1.25) drops the rules, a newer one keeps them."""
    got = await kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}")
    schema = got["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    kept = "x-kubernetes-validations" in json.dumps(schema)
    assert kept == (await server_minor(kube) >= 25)
    assert schema["properties"]["metadata"]["properties"]["name"]["maxLength"] == 63
    assert any(c["type"] == "Established" and c["status"] == "True" for c in got["status"]["conditions"])


@pytest.mark.parametrize("template", [-1, "a" * 100, [None], True], ids=["number", "string", "list", "boolean"])
async def test_issue_15_reproducers_are_refused_naming_the_template(
    kube: KubeClient, namespace: str, template: Any
) -> None:
    """The schema says ``template`` is an object (every version); the controller says the same of objects stored
    before this schema (tests/unit/test_validation_total.py)."""
    obj = body()
    obj["spec"]["jobTemplate"]["spec"]["template"] = template
    causes = await refused(kube, namespace, obj)
    assert [field for field, _ in causes] == ["spec.jobTemplate.spec.template"], causes
    _, errors = parse_jobtrigger(obj)
    assert [e.field for e in errors] == ["spec.jobTemplate.spec.template"]


async def test_a_name_longer_than_63_characters_is_refused(kube: KubeClient, namespace: str) -> None:
    """The schema's one constraint on metadata (every version); the controller checks it too (Sync.run)."""
    causes = await refused(kube, namespace, body("x" * 64))
    assert [f for f, _ in causes] == ["metadata.name"], causes
    assert "63" in causes[0][1]


async def test_a_container_without_a_name_or_no_container_is_refused(kube: KubeClient, namespace: str) -> None:
    obj = body()
    pod = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod["containers"] = [{"image": "busybox"}]
    causes = await refused(kube, namespace, obj)
    # 1.20's schema validator leaves the index out of the path
    assert [f for f, _ in causes] in (
        ["spec.jobTemplate.spec.template.spec.containers[0].name"],
        ["spec.jobTemplate.spec.template.spec.containers.name"],
    ), causes
    pod["containers"] = []
    causes = await refused(kube, namespace, obj)
    assert [f for f, _ in causes] == ["spec.jobTemplate.spec.template.spec.containers"], causes


async def test_a_template_only_the_controller_can_reject(kube: KubeClient, namespace: str, runner: Runner) -> None:
    """The server keeps the template as written beyond its known shape, so a YAML slip inside a container is
    stored; the controller answers with Ready=False naming the field, never an endless retry (issue 15)."""
    containers = [{"name": "main", "image": "busybox", "env": "A=1"}]  # a string where a list belongs
    template = {"spec": {"template": {"metadata": {"labels": ["app"]}, "spec": {"containers": containers}}}}
    await create_jt(kube, namespace, "slip", {"manual": {}}, jobTemplate=template)
    jt = await wait_ready(kube, namespace, "slip", "False")
    c = condition(jt)
    assert c is not None and c["reason"] == "InvalidSpec", c
    assert "spec.jobTemplate.spec.template.metadata.labels: must be an object" in c["message"], c
    assert "spec.jobTemplate.spec.template.spec.containers[0].env: must be a list of objects" in c["message"], c
    assert jt["status"]["observedGeneration"] == jt["metadata"]["generation"]

    # fixing the slip makes it Ready
    fix = {"metadata": {"labels": None}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}}
    await kube.merge_patch(jt_path(namespace, "slip"), {"spec": {"jobTemplate": {"spec": {"template": fix}}}})
    await wait_ready(kube, namespace, "slip")
