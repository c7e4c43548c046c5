"""Tests for jobtrigger.jobs.output: collecting a Job's output from pod statuses/logs and planning the writes."""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jobtrigger.api.models import OutputSpec
from jobtrigger.jobs.output import (
    ANNOTATION_OUTPUT_HASH,
    ANNOTATION_OUTPUT_SOURCE,
    ENV_OUTPUT_FILE,
    LABEL_OUTPUT_OF,
    LABEL_OUTPUT_VERSION,
    OUTPUT_FILE,
    Action,
    collect,
    label_selector,
    label_value,
    log_requests,
    message_budget,
    newest_pod,
    newest_version,
    output_hash,
    plan,
    prepare_pod_spec,
    version_of,
)

OWNER = {
    "apiVersion": "jobtrigger.dev/v1alpha1",
    "kind": "JobTrigger",
    "name": "certs",
    "uid": "6f1c2a4e-1111-2222-3333-444455556666",
    "controller": True,
    "blockOwnerDeletion": True,
}
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def out(**kw: Any) -> OutputSpec:
    return OutputSpec.model_validate({"name": "result", **kw})


def terminated(
    name: str, message: str | None = None, *, finished: str = "2024-05-01T10:00:05Z", exit_code: int = 0
) -> dict[str, Any]:
    term: dict[str, Any] = {
        "containerID": f"containerd://{name}0123456789abcdef",
        "exitCode": exit_code,
        "finishedAt": finished,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": "2024-05-01T10:00:01Z",
    }
    if message is not None:
        term["message"] = message
    return {
        "containerID": term["containerID"],
        "image": "docker.io/library/busybox:1.36",
        "imageID": "docker.io/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7",
        "lastState": {},
        "name": name,
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {"terminated": term},
    }


def running(name: str) -> dict[str, Any]:
    return {
        "image": "docker.io/istio/proxyv2:1.22.0",
        "imageID": "",
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T10:00:09Z", "message": "old"}},
        "name": name,
        "ready": True,
        "restartCount": 1,
        "started": True,
        "state": {"running": {"startedAt": "2024-05-01T10:00:10Z"}},
    }


def pod(
    name: str, statuses: list[dict[str, Any]], *, created: str = "2024-05-01T10:00:00Z", init: int = 0
) -> dict[str, Any]:
    phase = "Succeeded" if all(s["state"].get("terminated", {}).get("exitCode") == 0 for s in statuses) else "Failed"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "apps",
            "creationTimestamp": created,
            "labels": {"batch.kubernetes.io/job-name": "certs-0a1b2c3d4e", "job-name": "certs-0a1b2c3d4e"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "certs-0a1b2c3d4e", "uid": "j1"}],
            "resourceVersion": "4711",
            "uid": f"uid-{name}",
        },
        "spec": {
            "initContainers": [{"name": f"init{i}", "image": "busybox"} for i in range(init)],
            "containers": [
                {
                    "name": s["name"],
                    "image": "busybox",
                    "terminationMessagePath": OUTPUT_FILE,
                    "terminationMessagePolicy": "File",
                }
                for s in statuses
            ],
            "restartPolicy": "Never",
        },
        "status": {
            "phase": phase,
            "startTime": created,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
            "containerStatuses": statuses,
        },
    }


def secret_data(body: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in body["data"].items()}


def run_plan(output: OutputSpec, data: dict[str, str], existing: list[dict[str, Any]], **kw: Any) -> list[Action]:
    args: dict[str, Any] = {
        "target": "result",
        "data": data,
        "existing": existing,
        "owner_ref": OWNER,
        "job_name": "certs-0a1b2c3d4e",
        "trigger_name": "certs",
        "succeeded": True,
        **kw,
    }
    return plan(output, **args)


class Store:
    """A namespace's Secrets/ConfigMaps, applying planned actions like the API server would."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 0

    def existing(self, target: str) -> list[dict[str, Any]]:
        value = label_selector(target).split("=", 1)[1]
        return [copy.deepcopy(o) for o in self.objects.values() if o["metadata"]["labels"][LABEL_OUTPUT_OF] == value]

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            self.rv += 1
            if a.verb == "create":
                assert a.body is not None and a.name not in self.objects
                self.objects[a.name] = copy.deepcopy(a.body)
                self.objects[a.name]["metadata"]["resourceVersion"] = str(self.rv)
            elif a.verb == "replace":
                assert a.body is not None
                current = self.objects[a.name]
                assert not current.get("immutable")
                assert a.body["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
                self.objects[a.name] = copy.deepcopy(a.body)
                self.objects[a.name]["metadata"]["resourceVersion"] = str(self.rv)
            elif a.verb == "delete":
                del self.objects[a.name]


# --------------------------------------------------------------------------------------------- pod template


def test_prepare_pod_spec_files_sets_path_env_and_policy_in_every_container() -> None:
    spec: dict[str, Any] = {
        "initContainers": [{"name": "setup", "image": "busybox"}],
        "containers": [
            {"name": "gen", "image": "busybox", "env": [{"name": ENV_OUTPUT_FILE, "value": "/wrong"}]},
            {"name": "side", "image": "busybox", "terminationMessagePolicy": "FallbackToLogsOnError"},
        ],
    }
    prepare_pod_spec(spec, out(source="Files"))
    for c in spec["containers"]:
        assert c["terminationMessagePath"] == OUTPUT_FILE
        assert c["terminationMessagePolicy"] == "File"
        assert [e for e in c["env"] if e["name"] == ENV_OUTPUT_FILE] == [
            {"name": ENV_OUTPUT_FILE, "value": OUTPUT_FILE}
        ]
    assert spec["initContainers"] == [{"name": "setup", "image": "busybox"}]


def test_prepare_pod_spec_termination_message_and_logs() -> None:
    spec: dict[str, Any] = {"containers": [{"name": "main", "terminationMessagePolicy": "FallbackToLogsOnError"}]}
    prepare_pod_spec(spec, out(source="TerminationMessage"))
    assert spec == {"containers": [{"name": "main", "terminationMessagePolicy": "File"}]}
    spec = {"containers": [{"name": "main", "terminationMessagePolicy": "FallbackToLogsOnError"}]}
    prepare_pod_spec(spec, out(source="Logs"))
    assert spec == {"containers": [{"name": "main", "terminationMessagePolicy": "FallbackToLogsOnError"}]}


def test_message_budget_follows_the_kubelet() -> None:
    assert message_budget({"containers": [{"name": "a"}]}) == 4096
    assert message_budget({"containers": [{"name": "a"}] * 3}) == 4096
    assert message_budget({"containers": [{"name": "a"}] * 2, "initContainers": [{"name": "i"}] * 2}) == 3072


# --------------------------------------------------------------------------------------------- collect


def test_termination_message_one_key_per_container() -> None:
    pods = [pod("certs-0a1b2c3d4e-x7k2p", [terminated("main", "fingerprint=ab:cd\n"), terminated("audit")])]
    got = collect(out(), pods)
    assert got.errors == []
    assert got.pod == "certs-0a1b2c3d4e-x7k2p"
    assert got.targets == {"result": {"main": "fingerprint=ab:cd\n", "audit": ""}}


def test_termination_message_output_map_routes_and_ignores_unlisted() -> None:
    pods = [pod("p", [terminated("main", "hello"), terminated("sidecar", "noise")])]
    got = collect(out(outputMap={"main": {"greeting": "greetings", "copy.txt": "result"}}), pods)
    assert got.errors == []
    assert got.targets == {"greetings": {"greeting": "hello"}, "result": {"copy.txt": "hello"}}


def test_logs_source() -> None:
    output = out(source="Logs", kind="ConfigMap")
    pods = [pod("p", [terminated("main"), running("istio-proxy")])]
    assert log_requests(output, pods) == [("p", "main")]
    assert log_requests(out(), pods) == []
    got = collect(output, pods, {("p", "main"): "line 1\nline 2\n"})
    assert got.errors == []
    assert got.targets == {"result": {"main": "line 1\nline 2\n"}}


def test_logs_missing_drops_the_target() -> None:
    pods = [pod("p", [terminated("main"), terminated("other")])]
    got = collect(out(source="Logs"), pods, {("p", "main"): "ok"})
    assert got.targets == {}
    assert got.errors == ["no logs of container 'other' in pod p"]


def test_files_default_targets_and_json_flattening() -> None:
    message = json.dumps(
        {
            "certs.json": {"ca": "-----BEGIN CERTIFICATE-----", "port": 8443, "hosts": ["a", "b"], "tls": {"x": 1}},
            "creds": '{"user": "admin", "password": "s3cret"}',
        }
    )
    got = collect(out(source="Files"), [pod("p", [terminated("gen", message), terminated("sidecar")])])
    assert got.errors == []
    assert got.targets == {
        "result-gen-certs": {
            "ca": "-----BEGIN CERTIFICATE-----",
            "port": "8443",
            "hosts": '["a","b"]',
            "tls": '{"x":1}',
        },
        "result-gen-creds": {"user": "admin", "password": "s3cret"},
    }


def test_files_output_map_fan_out_and_merge() -> None:
    gen = json.dumps({"output.json": {"a": "1"}, "extra.json": {"b": "2"}, "ignored.json": {"c": "3"}})
    other = json.dumps({"more.json": {"d": "4"}})
    output = out(
        source="Files",
        outputMap={
            "gen": {"output.json": "app-config", "extra.json": "app-extra"},
            "other": {"more.json": "app-config"},
        },
    )
    got = collect(output, [pod("p", [terminated("gen", gen), terminated("other", other), terminated("side", "x")])])
    assert got.errors == []
    assert got.targets == {"app-config": {"a": "1", "d": "4"}, "app-extra": {"b": "2"}}


def test_files_missing_mapped_file_drops_only_that_target() -> None:
    output = out(source="Files", outputMap={"gen": {"a.json": "ta", "b.json": "tb"}})
    got = collect(output, [pod("p", [terminated("gen", json.dumps({"a.json": {"k": "v"}}))])])
    assert got.targets == {"ta": {"k": "v"}}
    assert got.errors == ["container 'gen' file 'b.json': missing from the output"]


def test_files_mapped_container_that_wrote_nothing_is_an_error() -> None:
    output = out(source="Files", outputMap={"gen": {"a.json": "ta"}})
    got = collect(output, [pod("p", [terminated("gen")])])
    assert got.targets == {}
    assert got.errors == [f"container 'gen' wrote no output to ${ENV_OUTPUT_FILE}"]


def test_files_invalid_json() -> None:
    got = collect(out(source="Files"), [pod("p", [terminated("gen", '{"a.json": {"k": ')])])
    assert got.targets == {}
    assert len(got.errors) == 1
    assert got.errors[0].startswith("container 'gen': output is not valid JSON")
    assert "probably cut" not in got.errors[0]


def test_files_truncated_json_gets_a_hint() -> None:
    cut = json.dumps({"a.json": {"k": "x" * 5000}})[:4096]
    got = collect(out(source="Files"), [pod("p", [terminated("gen", cut)])])
    assert got.targets == {}
    assert "probably cut at the kubelet's limit of 4096" in got.errors[0]


def test_files_invalid_content_and_names() -> None:
    message = json.dumps({"list.json": [1, 2], "bad.json": "not json", "Upper_Case.json": {"k": "v"}, "ok": {"k": "v"}})
    got = collect(out(source="Files"), [pod("p", [terminated("gen", message)])])
    assert got.targets == {"result-gen-ok": {"k": "v"}}
    assert len(got.errors) == 3
    assert "'list.json': must be a JSON object, got list" in got.errors[0]
    assert "'bad.json': not valid JSON" in got.errors[1]
    assert "'result-gen-Upper_Case' is not a valid object name" in got.errors[2]


def test_files_not_an_object() -> None:
    got = collect(out(source="Files"), [pod("p", [terminated("gen", '["a"]')])])
    assert got.errors == ["container 'gen': output must be a JSON object of files, got list"]


def test_conflicting_keys_drop_the_target() -> None:
    output = out(source="Files", outputMap={"a": {"o.json": "shared"}, "b": {"o.json": "shared"}})
    pods = [pod("p", [terminated("a", json.dumps({"o.json": {"k": "1"}})), terminated("b", '{"o.json": {"k": "2"}}')])]
    got = collect(output, pods)
    assert got.targets == {}
    assert got.errors == [
        "container 'b' file 'o.json': data key 'k' of 'shared' is written twice with different values"
    ]


def test_invalid_data_key() -> None:
    got = collect(out(source="Files"), [pod("p", [terminated("gen", json.dumps({"o": {"a b": "1"}}))])])
    assert got.targets == {}
    assert "'a b' is not a valid data key" in got.errors[0]


def test_oversize_container_and_target() -> None:
    pods = [pod("p", [terminated("main", "x" * 101), terminated("other", "y")])]
    got = collect(out(maxBytes=100), pods)
    assert got.targets == {}
    assert got.errors == ["output of container 'main' is 101 bytes > maxBytes 100"]

    pods = [pod("p", [terminated("main", "x" * 60), terminated("other", "y" * 60)])]
    got = collect(out(maxBytes=100), pods)
    assert got.targets == {}
    assert got.errors == ["output for 'result' is 129 bytes > maxBytes 100"]


def test_newest_pod_among_retries() -> None:
    failed1 = pod("p-1", [terminated("main", "attempt 1", finished="2024-05-01T10:00:05Z", exit_code=1)])
    failed2 = pod(
        "p-2",
        [terminated("main", "attempt 2", finished="2024-05-01T10:01:05Z", exit_code=1)],
        created="2024-05-01T10:01:00Z",
    )
    ok = pod("p-3", [terminated("main", "attempt 3", finished="2024-05-01T10:03:05Z")], created="2024-05-01T10:03:00Z")
    pending = pod("p-4", [], created="2024-05-01T10:04:00Z")
    pending["status"] = {"phase": "Pending"}
    for pods in ([failed1, failed2, ok, pending], [ok, pending, failed2, failed1]):
        assert newest_pod(pods) is ok
        assert collect(out(), pods).targets == {"result": {"main": "attempt 3"}}
    assert collect(out(), [failed2, failed1]).targets == {"result": {"main": "attempt 2"}}


def test_only_terminated_containers_count() -> None:
    pods = [pod("p", [terminated("main", "done"), running("istio-proxy")])]
    assert collect(out(), pods).targets == {"result": {"main": "done"}}
    got = collect(out(outputMap={"istio-proxy": {"log": "proxy"}, "main": {"out": "result"}}), pods)
    assert got.targets == {"result": {"out": "done"}}
    assert got.errors == ["container 'istio-proxy' (outputMap) has not terminated in pod p"]


def test_no_terminated_pod() -> None:
    got = collect(out(), [pod("p", [running("main")])])
    assert got.targets == {} and got.pod is None
    assert got.errors == ["no pod of the Job has a terminated container"]


# --------------------------------------------------------------------------------------------- plan


def test_failed_job_with_and_without_write_on_failure() -> None:
    actions = run_plan(out(), {"main": "x"}, [], succeeded=False)
    assert [(a.verb, a.error) for a in actions] == [("skip", False)]
    assert "writeOnFailure" in actions[0].reason
    actions = run_plan(out(writeOnFailure=True), {"main": "x"}, [], succeeded=False)
    assert [a.verb for a in actions] == ["create"]


def test_secret_body() -> None:
    [action] = run_plan(out(labels={"team": "platform", LABEL_OUTPUT_OF: "spoofed"}), {"main": "pässword"}, [])
    assert action.verb == "create" and action.name == "result" and action.body is not None
    body = action.body
    assert body["apiVersion"] == "v1" and body["kind"] == "Secret" and body["type"] == "Opaque"
    assert body["data"] == {"main": base64.b64encode("pässword".encode()).decode()}
    assert secret_data(body) == {"main": "pässword"}
    meta = body["metadata"]
    assert meta["name"] == "result"
    assert meta["labels"] == {"team": "platform", LABEL_OUTPUT_OF: "result"}
    assert meta["ownerReferences"] == [OWNER]
    assert meta["annotations"][ANNOTATION_OUTPUT_HASH] == output_hash({"main": "pässword"})
    source = json.loads(meta["annotations"][ANNOTATION_OUTPUT_SOURCE])
    assert source == {"job": "certs-0a1b2c3d4e", "jobTrigger": "certs", "source": "TerminationMessage"}
    assert "immutable" not in body and "resourceVersion" not in meta


def test_config_map_body_is_plain() -> None:
    [action] = run_plan(out(kind="ConfigMap"), {"main": "plain text"}, [])
    assert action.body is not None
    assert action.body["kind"] == "ConfigMap" and "type" not in action.body
    assert action.body["data"] == {"main": "plain text"}


def test_unversioned_create_identical_replace() -> None:
    store = Store()
    store.apply(run_plan(out(), {"main": "1"}, store.existing("result")))
    actions = run_plan(out(), {"main": "1"}, store.existing("result"))
    assert [(a.verb, a.reason) for a in actions] == [("skip", "output unchanged")]
    rv = store.objects["result"]["metadata"]["resourceVersion"]
    actions = run_plan(out(), {"main": "2"}, store.existing("result"))
    assert [a.verb for a in actions] == ["replace"]
    assert actions[0].body is not None and actions[0].body["metadata"]["resourceVersion"] == rv
    store.apply(actions)
    assert secret_data(store.objects["result"]) == {"main": "2"}


def test_overwrite_false() -> None:
    store = Store()
    store.apply(run_plan(out(overwrite=False), {"main": "1"}, store.existing("result")))
    actions = run_plan(out(overwrite=False), {"main": "2"}, store.existing("result"))
    assert [(a.verb, a.reason) for a in actions] == [("skip", "Secret result exists and overwrite is false")]


def test_plan_size_guard() -> None:
    [action] = run_plan(out(maxBytes=10), {"main": "x" * 20}, [])
    assert (action.verb, action.error, action.reason) == ("skip", True, "output is 24 bytes > maxBytes 10")


def test_versioning_sequence() -> None:
    output = out(versioned=True, keepVersions=2, kind="ConfigMap", labels={"team": "platform"})
    store = Store()

    actions = run_plan(output, {"k": "1"}, store.existing("result"))
    assert [(a.verb, a.name) for a in actions] == [("create", "result-v1")]
    body = actions[0].body
    assert body is not None and body["immutable"] is True
    assert body["metadata"]["labels"] == {"team": "platform", LABEL_OUTPUT_OF: "result", LABEL_OUTPUT_VERSION: "1"}
    store.apply(actions)

    actions = run_plan(output, {"k": "2"}, store.existing("result"))
    assert [(a.verb, a.name) for a in actions] == [("create", "result-v2")]
    store.apply(actions)

    actions = run_plan(output, {"k": "2"}, store.existing("result"))
    assert [(a.verb, a.reason) for a in actions] == [("skip", "output identical to result-v2")]

    actions = run_plan(output, {"k": "3"}, store.existing("result"))
    assert [(a.verb, a.name) for a in actions] == [("create", "result-v3"), ("delete", "result-v1")]
    store.apply(actions)
    assert sorted(store.objects) == ["result-v2", "result-v3"]
    assert newest_version(store.existing("result")) == "result-v3"

    actions = run_plan(output, {"k": "1"}, store.existing("result"))  # same as a deleted older version: new one
    assert [(a.verb, a.name) for a in actions] == [("create", "result-v4"), ("delete", "result-v2")]


def test_versions_ordered_numerically_and_unversioned_ignored() -> None:
    def obj(name: str, version: str | None) -> dict[str, Any]:
        labels = {LABEL_OUTPUT_OF: "result"} | ({LABEL_OUTPUT_VERSION: version} if version else {})
        return {"metadata": {"name": name, "labels": labels}}

    existing = [obj("result-v9", "9"), obj("result-v10", "10"), obj("result", None), obj("junk", "x")]
    assert newest_version(existing) == "result-v10"
    assert [version_of(o) for o in existing] == [9, 10, None, None]
    assert newest_version([obj("result", None)]) is None
    actions = run_plan(out(versioned=True, keepVersions=1), {"k": "v"}, existing)
    assert [(a.verb, a.name) for a in actions] == [
        ("create", "result-v11"),
        ("delete", "result-v9"),
        ("delete", "result-v10"),
    ]


def test_long_target_label_value() -> None:
    target = "a" * 60 + "-" + "b" * 100
    value = label_value(target)
    assert len(value) <= 63 and LABEL_VALUE.fullmatch(value)
    assert value == label_value(target) != label_value(target + "c")
    assert label_selector("short") == f"{LABEL_OUTPUT_OF}=short"


def test_versioned_target_name_leaves_room_for_suffix() -> None:
    long_name = "r" * 250
    pods = [pod("p", [terminated("main", "x")])]
    got = collect(out(versioned=True, outputMap={"main": {"out": long_name}}), pods)
    assert got.targets == {}
    assert "is longer than 242 characters" in got.errors[0]
    assert collect(out(outputMap={"main": {"out": long_name}}), pods).targets == {long_name: {"out": "x"}}


@settings(max_examples=150, deadline=None)
@given(
    outputs=st.lists(st.sampled_from([{"k": "1"}, {"k": "2"}, {"k": "1", "j": "2"}, {}]), max_size=15),
    keep=st.integers(min_value=1, max_value=4),
    kind=st.sampled_from(["Secret", "ConfigMap"]),
)
def test_versioning_property(outputs: list[dict[str, str]], keep: int, kind: str) -> None:
    output = out(versioned=True, keepVersions=keep, kind=kind)
    store = Store()
    created: list[int] = []
    previous: dict[str, str] | None = None
    for data in outputs:
        actions = run_plan(output, data, store.existing("result"))
        creates = [a for a in actions if a.verb == "create"]
        if data == previous:
            assert creates == []
        else:
            assert len(creates) == 1
        store.apply(actions)
        created += [int(a.name.rsplit("-v", 1)[1]) for a in creates]
        assert len(store.objects) <= keep
        newest = newest_version(store.existing("result"))
        assert newest is not None and newest == f"result-v{created[-1]}"
        body = store.objects[newest]
        assert (secret_data(body) if kind == "Secret" else body["data"]) == data
        previous = data
    assert created == sorted(set(created))
