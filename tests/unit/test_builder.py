"""Tests for jobtrigger.jobs.builder: deterministic Job names and the Job manifest built from a template."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobtrigger.api.models import JobTriggerSpec
from jobtrigger.jobs.builder import (
    ANNOTATION_CREATED,
    ANNOTATION_OBJECTS,
    ANNOTATION_OCCURRENCE,
    ANNOTATION_REASON,
    LABEL_OWNER,
    LABEL_TRIGGER,
    Mounted,
    Occurrence,
    build_job,
    job_name,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
UID = "6f1c2a4e-1111-2222-3333-444455556666"
OBJ = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "apps", "name": "cfg", "change": "updated", "paths": ["*"]}


def spec(
    pod_spec: dict[str, Any] | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    job_spec_extra: dict[str, Any] | None = None,
    pod_metadata: dict[str, Any] | None = None,
) -> JobTriggerSpec:
    template: dict[str, Any] = {
        "spec": pod_spec if pod_spec is not None else {"containers": [{"name": "main", "image": "busybox"}]}
    }
    if pod_metadata is not None:
        template["metadata"] = pod_metadata
    jt: dict[str, Any] = {
        "triggers": {"manual": {}},
        "jobTemplate": {"spec": {"template": template, **(job_spec_extra or {})}},
    }
    if metadata is not None:
        jt["jobTemplate"]["metadata"] = metadata
    return JobTriggerSpec.model_validate(jt)


def occurrence(**kw: Any) -> Occurrence:
    base: dict[str, Any] = {"trigger": "resources", "key": "resources/1/abc", "reason": "ConfigMap/apps/cfg updated"}
    return Occurrence(**{**base, **kw})


def build(s: JobTriggerSpec | None = None, occ: Occurrence | None = None, **kw: Any) -> dict[str, Any]:
    return build_job(
        trigger_name=kw.pop("trigger_name", "nightly"),
        namespace=kw.pop("namespace", "apps"),
        trigger_uid=kw.pop("trigger_uid", UID),
        spec=s if s is not None else spec(),
        occurrence=occ if occ is not None else occurrence(),
        **kw,
    )


def pod_spec_of(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]["spec"]
    return result


def env_of(container: dict[str, Any]) -> dict[str, str]:
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), f"duplicate env vars: {names}"
    return {e["name"]: e.get("value", "") for e in container["env"]}


# ---------------------------------------------------------------------- job_name


def test_job_name_is_deterministic() -> None:
    assert job_name("nightly", UID, "schedule/2024-01-01T00:00:00Z") == job_name(
        "nightly", UID, "schedule/2024-01-01T00:00:00Z"
    )


def test_job_name_format() -> None:
    name = job_name("nightly", UID, "k")
    assert re.fullmatch(r"nightly-[0-9a-f]{10}", name)


def test_job_name_differs_by_uid_and_key() -> None:
    a = job_name("nightly", UID, "k1")
    assert job_name("nightly", UID, "k2") != a
    assert job_name("nightly", "other-uid", "k1") != a
    # the name alone does not make it unique: a recreated JobTrigger (new uid) gets new Job names
    assert job_name("nightly", UID, "k1").split("-")[-1] == job_name("other", UID, "k1").split("-")[-1]


@pytest.mark.parametrize(
    "trigger_name",
    [
        "a" * 63,
        "a" * 62 + "b",
        "a" * 51 + "-" + "b" * 11,  # truncation lands right after a '-'
        "a" * 50 + "--" + "b" * 11,
        "ab-" * 21,  # 63 chars ending in '-'
        "x" * 253,
        "a" * 52,
        "a" * 53,
    ],
)
def test_job_name_long_trigger_names_stay_valid(trigger_name: str) -> None:
    name = job_name(trigger_name, UID, "k")
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert name.endswith("-" + job_name("x", UID, "k")[-10:])
    prefix = name[:-11]
    assert trigger_name.startswith(prefix)
    assert not prefix.endswith("-"), name  # no "--" where the name was cut


def test_job_name_cut_after_a_dot_stays_a_dns_subdomain() -> None:
    # JobTrigger names are DNS subdomains and may contain dots; "x.-<hash>" would be invalid
    name = job_name("a" * 51 + "." + "b" * 11, UID, "k")
    assert len(name) <= 63
    assert all(DNS_LABEL.match(part) for part in name.split(".")), name
    assert name == "a" * 51 + "-" + job_name("x", UID, "k")[-10:]


def test_job_name_short_names_are_kept_whole() -> None:
    assert job_name("a" * 52, UID, "k")[:-11] == "a" * 52
    assert len(job_name("a" * 52, UID, "k")) == 63


@given(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True),
    st.text(min_size=1, max_size=40),
)
def test_job_name_always_a_dns_label(trigger_name: str, key: str) -> None:
    name = job_name(trigger_name, UID, key)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name


# ---------------------------------------------------------------------- build_job: metadata


def test_job_identity_and_owner_reference() -> None:
    job = build(trigger_name="nightly", namespace="apps", trigger_uid=UID)
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    meta = job["metadata"]
    assert meta["name"] == job_name("nightly", UID, "resources/1/abc")
    assert meta["namespace"] == "apps"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "jobtrigger.dev/v1alpha1",
            "kind": "JobTrigger",
            "name": "nightly",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_labels_merge_template_and_owner_labels() -> None:
    s = spec(metadata={"labels": {"team": "data", LABEL_OWNER: "spoofed", LABEL_TRIGGER: "spoofed"}})
    job = build(s, occurrence(trigger="schedule"), trigger_name="nightly")
    assert job["metadata"]["labels"] == {"team": "data", LABEL_OWNER: "nightly", LABEL_TRIGGER: "schedule"}


def test_labels_without_template_metadata() -> None:
    job = build(spec(), occurrence(trigger="manual"), trigger_name="errand")
    assert job["metadata"]["labels"] == {LABEL_OWNER: "errand", LABEL_TRIGGER: "manual"}


def test_annotations() -> None:
    s = spec(metadata={"annotations": {"owner": "me"}})
    occ = occurrence(reason="ConfigMap/apps/cfg updated", key="resources/3/ff", objects=(OBJ,))
    job = build(s, occ, created="2024-05-01T12:00:00.123Z")
    ann = job["metadata"]["annotations"]
    assert ann["owner"] == "me"
    assert ann[ANNOTATION_REASON] == "ConfigMap/apps/cfg updated"
    assert ann[ANNOTATION_OCCURRENCE] == "resources/3/ff"
    assert ann[ANNOTATION_CREATED] == "2024-05-01T12:00:00.123Z"
    assert json.loads(ann[ANNOTATION_OBJECTS]) == [OBJ]
    assert set(ann) == {"owner", ANNOTATION_REASON, ANNOTATION_OCCURRENCE, ANNOTATION_CREATED, ANNOTATION_OBJECTS}


def test_optional_annotations_absent() -> None:
    ann = build(spec(), occurrence(objects=()))["metadata"]["annotations"]
    assert ANNOTATION_CREATED not in ann
    assert ANNOTATION_OBJECTS not in ann
    assert set(ann) == {ANNOTATION_REASON, ANNOTATION_OCCURRENCE}


# ---------------------------------------------------------------------- build_job: spec


def test_restart_policy_defaults_to_never() -> None:
    assert pod_spec_of(build())["restartPolicy"] == "Never"


def test_restart_policy_kept_when_set() -> None:
    s = spec({"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]})
    assert pod_spec_of(build(s))["restartPolicy"] == "OnFailure"


def test_job_spec_fields_pass_through() -> None:
    s = spec(job_spec_extra={"backoffLimit": 2, "ttlSecondsAfterFinished": 600, "activeDeadlineSeconds": 30})
    job_spec = build(s)["spec"]
    assert job_spec["backoffLimit"] == 2
    assert job_spec["ttlSecondsAfterFinished"] == 600
    assert job_spec["activeDeadlineSeconds"] == 30


def test_pod_template_metadata_untouched() -> None:
    pod_meta = {
        "labels": {"app": "migrate"},
        "annotations": {
            "vault.hashicorp.com/agent-inject": "true",
            "vault.hashicorp.com/role": "migrate",
            "vault.hashicorp.com/agent-inject-secret-db": "database/creds/app",
        },
    }
    job = build(spec(pod_metadata=copy.deepcopy(pod_meta)))
    got = job["spec"]["template"]["metadata"]
    # everything the user wrote is kept; only the owner label is added so pods are findable by label
    assert got["annotations"] == pod_meta["annotations"]
    assert got["labels"] == {
        **pod_meta["labels"],
        "jobtrigger.dev/owner": job["metadata"]["labels"]["jobtrigger.dev/owner"],
    }


def test_env_added_to_containers_and_init_containers() -> None:
    s = spec(
        {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [
                {"name": "a", "image": "i"},
                {"name": "b", "image": "i", "env": [{"name": "X", "value": "1"}]},
            ],
        }
    )
    occ = occurrence(
        trigger="resources", key="resources/2/d", reason="why", objects=(OBJ,), env=(("JOBTRIGGER_EXTRA", "e"),)
    )
    job = build(s, occ, trigger_name="nightly", namespace="apps")
    pod = pod_spec_of(job)
    expected = {
        "JOBTRIGGER_NAME": "nightly",
        "JOBTRIGGER_NAMESPACE": "apps",
        "JOBTRIGGER_TRIGGER": "resources",
        "JOBTRIGGER_REASON": "why",
        "JOBTRIGGER_OCCURRENCE": "resources/2/d",
        "JOBTRIGGER_OBJECT_API_VERSION": "v1",
        "JOBTRIGGER_OBJECT_KIND": "ConfigMap",
        "JOBTRIGGER_OBJECT_NAMESPACE": "apps",
        "JOBTRIGGER_OBJECT_NAME": "cfg",
        "JOBTRIGGER_CHANGED_PATHS": "*",
        "JOBTRIGGER_EXTRA": "e",
    }
    for c in [*pod["initContainers"], *pod["containers"]]:
        env = env_of(c)
        assert {k: env[k] for k in expected} == expected, c["name"]
        assert json.loads(env["JOBTRIGGER_OBJECTS"]) == [OBJ]
    assert env_of(pod["containers"][1])["X"] == "1"
    assert pod["containers"][1]["env"][0] == {"name": "X", "value": "1"}  # user's vars first


def test_env_without_objects_has_only_the_basic_variables() -> None:
    job = build(spec(), occurrence(trigger="manual", objects=()))
    assert set(env_of(pod_spec_of(job)["containers"][0])) == {
        "JOBTRIGGER_NAME",
        "JOBTRIGGER_NAMESPACE",
        "JOBTRIGGER_TRIGGER",
        "JOBTRIGGER_REASON",
        "JOBTRIGGER_OCCURRENCE",
    }


def test_user_env_var_of_the_same_name_wins() -> None:
    user_var = {"name": "JOBTRIGGER_REASON", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    s = spec(
        {"containers": [{"name": "c", "image": "i", "env": [user_var, {"name": "JOBTRIGGER_NAME", "value": "mine"}]}]}
    )
    env = pod_spec_of(build(s))["containers"][0]["env"]
    reason = [e for e in env if e["name"] == "JOBTRIGGER_REASON"]
    assert reason == [user_var]
    assert [e for e in env if e["name"] == "JOBTRIGGER_NAME"] == [{"name": "JOBTRIGGER_NAME", "value": "mine"}]
    assert any(e["name"] == "JOBTRIGGER_OCCURRENCE" for e in env)


def test_changed_paths_union_sorted() -> None:
    objs = (
        {**OBJ, "paths": ["data", "*"]},
        {**OBJ, "name": "other", "paths": ["data", "spec.replicas"]},
    )
    env = env_of(pod_spec_of(build(spec(), occurrence(objects=objs)))["containers"][0])
    assert env["JOBTRIGGER_CHANGED_PATHS"] == "*,data,spec.replicas"
    assert env["JOBTRIGGER_OBJECT_NAME"] == "cfg"  # the first object


def test_template_is_not_mutated() -> None:
    s = spec(
        {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "c", "image": "i", "env": [{"name": "X", "value": "1"}]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
        pod_metadata={"annotations": {"a": "b"}},
    )
    before = copy.deepcopy(s.job_template.spec)
    occ = occurrence(objects=(OBJ,), mounts=(Mounted("Secret", "tls", "certs", "/certs"),))
    job1 = build(s, occ)
    assert s.job_template.spec == before
    job2 = build(s, occ)
    assert job1 == job2
    job1["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    assert s.job_template.spec == before


def test_template_without_pod_spec_gets_one() -> None:
    s = JobTriggerSpec.model_validate({"triggers": {"manual": {}}, "jobTemplate": {"spec": {}}})
    job = build(s)
    assert job["spec"]["template"]["spec"] == {"restartPolicy": "Never"}
    assert s.job_template.spec == {}


# ---------------------------------------------------------------------- build_job: mounts


@pytest.mark.parametrize(
    ("kind", "source"),
    [("Secret", {"secret": {"secretName": "tls"}}), ("ConfigMap", {"configMap": {"name": "tls"}})],
)
def test_mount_adds_one_volume_and_a_mount_per_container(kind: str, source: dict[str, Any]) -> None:
    s = spec(
        {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [
                {"name": "a", "image": "i"},
                {"name": "b", "image": "i", "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}]},
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        }
    )
    occ = occurrence(mounts=(Mounted(kind, "tls", "certs", "/workspace", read_only=False),))
    pod = pod_spec_of(build(s, occ))
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {}}, {"name": "certs", **source}]
    mount = {"name": "certs", "mountPath": "/workspace", "readOnly": False}
    assert pod["initContainers"][0]["volumeMounts"] == [mount]
    assert pod["containers"][0]["volumeMounts"] == [mount]
    assert pod["containers"][1]["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}, mount]


def test_mount_read_only_by_default() -> None:
    pod = pod_spec_of(build(spec(), occurrence(mounts=(Mounted("Secret", "tls", "certs", "/certs"),))))
    assert pod["containers"][0]["volumeMounts"] == [{"name": "certs", "mountPath": "/certs", "readOnly": True}]


def test_mount_no_duplicate_volume_when_the_name_exists() -> None:
    s = spec(
        {
            "containers": [{"name": "a", "image": "i", "volumeMounts": [{"name": "certs", "mountPath": "/mine"}]}],
            "volumes": [{"name": "certs", "secret": {"secretName": "user-provided"}}],
        }
    )
    pod = pod_spec_of(build(s, occurrence(mounts=(Mounted("Secret", "tls", "certs", "/workspace"),))))
    assert pod["volumes"] == [{"name": "certs", "secret": {"secretName": "user-provided"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "certs", "mountPath": "/mine"}]


def test_two_mounts() -> None:
    mounts = (Mounted("Secret", "tls", "certs", "/certs"), Mounted("ConfigMap", "cfg", "config", "/config"))
    pod = pod_spec_of(build(spec(), occurrence(mounts=mounts)))
    assert [v["name"] for v in pod["volumes"]] == ["certs", "config"]
    assert [m["name"] for m in pod["containers"][0]["volumeMounts"]] == ["certs", "config"]


def test_no_mounts_no_volumes_key() -> None:
    pod = pod_spec_of(build())
    assert "volumes" not in pod
    assert "volumeMounts" not in pod["containers"][0]


def test_objects_annotation_is_capped() -> None:
    from jobtrigger.jobs.builder import MAX_OBJECTS, objects_json

    many = tuple({"kind": "ConfigMap", "name": f"c{i}"} for i in range(MAX_OBJECTS + 7))
    listed = json.loads(objects_json(many))
    assert len(listed) == MAX_OBJECTS + 1
    assert listed[-1] == {"truncated": 7}
    assert json.loads(objects_json(many[:3])) == list(many[:3])
