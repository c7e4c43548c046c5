"""Parsing and validation are total (issue 15): any JSON the API server may store under a free-form or loosely typed
part of a JobTrigger ends in a valid model or in field-named errors, never in an exception.

The API server keeps whatever is written under ``x-kubernetes-preserve-unknown-fields`` (``jobTemplate.spec`` apart
from the few fields the schema names), and objects stored under an older, looser CRD never met the current schema,
so the controller's pure steps must cope with every JSON value. Hypothesis generates arbitrary JSON into each of
those subtrees of an otherwise valid JobTrigger, and into any node of it, and checks what ``Sync.run`` does with the
spec before and around the API server's dry run: ``parse_jobtrigger`` (models + ``validate_spec``), then, for a spec
that passed, the status summary, the watched paths and selectors, the mounts, ``build_job`` (the Job that is
dry-run and later created, with mounts and versioned-output renames) and ``config_references``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobtrigger.api.validation import SpecError, parse_jobtrigger
from jobtrigger.jobs.builder import Occurrence, build_job, config_references, rename_references
from jobtrigger.reactor.sync.conditions import summary as _summary
from jobtrigger.reactor.sync.gate import mounts as _mounts
from jobtrigger.triggers.fields import normalize_paths
from jobtrigger.triggers.selectors import to_query

Path = tuple[str | int, ...]

#: keys the controller or the API server give a meaning to, so generated objects hit the interesting branches
KEYS = [
    "template",
    "metadata",
    "labels",
    "annotations",
    "spec",
    "containers",
    "initContainers",
    "name",
    "image",
    "env",
    "valueFrom",
    "configMapKeyRef",
    "secretKeyRef",
    "envFrom",
    "configMapRef",
    "secretRef",
    "volumeMounts",
    "volumes",
    "configMap",
    "secret",
    "secretName",
    "projected",
    "sources",
    "restartPolicy",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "main", "In", "Exists", "v1", "ConfigMap", "Never", "a,b", "*", "@daily", "5m"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
#: values a JSON object field must not have
non_objects = json_values.filter(lambda v: v is not None and not isinstance(v, dict))

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def base() -> dict[str, Any]:
    """A valid JobTrigger using every part of the API whose content the controller reads."""
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
    }
    container = {
        "name": "main",
        "image": "busybox",
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "b"}}},
            {"name": "C", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "c"}}},
        ],
        "envFrom": [{"secretRef": {"name": "creds"}}, {"configMapRef": {"name": "cfg"}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return {
        "apiVersion": "jobtrigger.dev/v1alpha1",
        "kind": "JobTrigger",
        "metadata": {"name": "jt", "namespace": "default", "uid": "0000"},
        "spec": {
            "triggers": {
                "resources": {
                    "watch": [
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "name": "cfg",
                            "fields": ["data", "*"],
                            "mount": {"volumeName": "cfg", "mountPath": "/cfg"},
                        },
                        {"apiVersion": "apps/v1", "kind": "Deployment", "selector": copy.deepcopy(selector)},
                    ],
                    "cooldown": "30s",
                },
                "pods": {"selector": copy.deepcopy(selector), "when": ["Failed"]},
                "schedule": {"cron": "@daily", "timeZone": "Europe/Berlin"},
                "manual": {"strategy": "manual"},
            },
            "jobTemplate": {
                "metadata": {"labels": {"team": "x"}, "annotations": {"note": "y"}},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": {"app": "job"}},
                        "spec": {
                            "restartPolicy": "Never",
                            "initContainers": [{"name": "init", "image": "busybox", "env": [{"name": "I"}]}],
                            "containers": [container],
                            "volumes": [
                                {"name": "data", "configMap": {"name": "cfg"}},
                                {"name": "s", "secret": {"secretName": "creds"}},
                                {
                                    "name": "p",
                                    "projected": {
                                        "sources": [{"configMap": {"name": "cfg"}}, {"secret": {"name": "creds"}}]
                                    },
                                },
                            ],
                        },
                    },
                },
            },
            "rerunOnConfigChange": True,
            "output": {
                "source": "Files",
                "name": "out",
                "outputMap": {"main": {"result.json": "result"}},
                "labels": {"team": "x"},
                "versioned": True,
                "keepVersions": 3,
            },
        },
    }


TEMPLATE: Path = ("spec", "jobTemplate", "spec", "template")
POD: Path = (*TEMPLATE, "spec")
CONTAINER: Path = (*POD, "containers", 0)
WATCH: Path = ("spec", "triggers", "resources", "watch")
SELECTORS: list[Path] = [(*WATCH, 1, "selector"), ("spec", "triggers", "pods", "selector")]

#: every free-form or loosely typed subtree (and the typed fields around them)
SUBTREES: list[Path] = [
    ("spec", "jobTemplate"),
    ("spec", "jobTemplate", "metadata"),
    ("spec", "jobTemplate", "metadata", "labels"),
    ("spec", "jobTemplate", "metadata", "labels", "team"),
    ("spec", "jobTemplate", "metadata", "annotations"),
    ("spec", "jobTemplate", "metadata", "annotations", "note"),
    ("spec", "jobTemplate", "spec"),
    ("spec", "jobTemplate", "spec", "extra"),
    TEMPLATE,
    (*TEMPLATE, "metadata"),
    (*TEMPLATE, "metadata", "labels"),
    (*TEMPLATE, "metadata", "labels", "app"),
    POD,
    (*POD, "restartPolicy"),
    (*POD, "containers"),
    CONTAINER,
    (*CONTAINER, "name"),
    (*CONTAINER, "env"),
    (*CONTAINER, "env", 0),
    (*CONTAINER, "env", 1, "name"),
    (*CONTAINER, "env", 1, "valueFrom"),
    (*CONTAINER, "env", 1, "valueFrom", "configMapKeyRef"),
    (*CONTAINER, "env", 2, "valueFrom", "secretKeyRef", "name"),
    (*CONTAINER, "envFrom"),
    (*CONTAINER, "envFrom", 0),
    (*CONTAINER, "envFrom", 0, "secretRef"),
    (*CONTAINER, "envFrom", 1, "configMapRef", "name"),
    (*CONTAINER, "volumeMounts"),
    (*CONTAINER, "volumeMounts", 0),
    (*POD, "initContainers"),
    (*POD, "initContainers", 0),
    (*POD, "initContainers", 0, "env"),
    (*POD, "volumes"),
    (*POD, "volumes", 0),
    (*POD, "volumes", 0, "configMap"),
    (*POD, "volumes", 1, "secret", "secretName"),
    (*POD, "volumes", 2, "projected"),
    (*POD, "volumes", 2, "projected", "sources"),
    (*POD, "volumes", 2, "projected", "sources", 0),
    (*POD, "volumes", 2, "projected", "sources", 1, "secret"),
    ("spec", "output"),
    ("spec", "output", "outputMap"),
    ("spec", "output", "outputMap", "main"),
    ("spec", "output", "outputMap", "main", "result.json"),
    ("spec", "output", "labels"),
    ("spec", "output", "labels", "team"),
    ("spec", "output", "name"),
    *[s for sel in SELECTORS for s in [sel, (*sel, "matchLabels"), (*sel, "matchLabels", "app")]],
    *[(*sel, "matchExpressions", *rest) for sel in SELECTORS for rest in [(), (0,), (0, "values"), (0, "key")]],
    (*WATCH, 0, "fields"),
    (*WATCH, 0, "fields", 0),
    (*WATCH, 0, "name"),
    (*WATCH, 0, "namespace"),
    (*WATCH, 0, "mount"),
    ("spec", "triggers", "resources", "cooldown"),
    ("spec", "triggers", "schedule", "cron"),
    ("spec", "triggers", "schedule", "timeZone"),
    ("spec", "triggers", "pods", "when"),
]

#: where the controller relies on an object (or a list of objects): any other non-null value is an error there
OBJECT_FIELDS: list[Path] = [
    TEMPLATE,
    (*TEMPLATE, "metadata"),
    (*TEMPLATE, "metadata", "labels"),
    POD,
    CONTAINER,
    (*CONTAINER, "env", 0),
    (*CONTAINER, "env", 1, "valueFrom"),
    (*CONTAINER, "envFrom", 0),
    (*CONTAINER, "volumeMounts", 0),
    (*POD, "initContainers", 0),
    (*POD, "volumes", 0),
    (*POD, "volumes", 2, "projected"),
    (*POD, "volumes", 2, "projected", "sources", 0),
]


def field_name(path: Path) -> str:
    """``spec.jobTemplate.spec.template.spec.containers[0].env`` for a path of keys and indexes."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def with_value(path: Path, value: Any) -> dict[str, Any]:
    obj = base()
    target: Any = obj
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return obj


def all_paths(value: Any, prefix: Path = ()) -> list[Path]:
    out: list[Path] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += all_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += all_paths(child, (*prefix, i))
    return out


def check_total(obj: dict[str, Any]) -> list[SpecError]:
    """What the sync does with the object before creating Jobs, pure parts only: never an exception."""
    before = copy.deepcopy(obj)
    jt, errors = parse_jobtrigger(obj)
    assert isinstance(errors, list)
    for e in errors:
        assert isinstance(e, SpecError)
        assert isinstance(e.field, str) and e.field.startswith(("spec", "metadata", "apiVersion", "kind")), e
        assert isinstance(e.message, str) and e.message, e
        str(e)
    assert obj == before, "parsing changed the object"
    if jt is None:
        assert errors, "no model and no error"
        return errors
    if errors:
        return errors
    # the spec passed: everything Sync.run computes from it must work
    _summary(jt)
    rt, pt = jt.spec.triggers.resources, jt.spec.triggers.pods
    for w in rt.watch if rt else []:
        normalize_paths(w.fields)
        if w.selector is not None:
            to_query(w.selector)
    if pt is not None:
        to_query(pt.selector)
    spec_before = jt.spec.model_dump()
    occurrence = Occurrence(
        "resources",
        "resources/1",
        "ConfigMap default/cfg changed",
        objects=({"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "cfg", "paths": ["data"]},),
        env=(("JOBTRIGGER_EXTRA", "1"),),
        labels=(("jobtrigger.dev/affected-pod", "p"),),
        mounts=_mounts(jt),
    )
    renames = {("ConfigMap", "cfg"): "cfg-v2", ("Secret", "creds"): "creds-v7"}
    for kwargs in ({}, {"renames": renames, "created": "2026-01-01T00:00:00.000Z"}):
        job = build_job(
            trigger_name="jt", namespace="default", trigger_uid="0000", spec=jt.spec, occurrence=occurrence, **kwargs
        )
        json.dumps(job)
        assert job["spec"]["template"]["metadata"]["labels"]["jobtrigger.dev/owner"] == "jt"
    refs = config_references(jt.spec.job_template.spec)
    assert all(isinstance(name, str) and name for _, name in refs)
    rename_references(copy.deepcopy(jt.spec.job_template.spec), renames)
    assert jt.spec.model_dump() == spec_before, "building the Job changed the parsed spec"
    return errors


# --------------------------------------------------------------------------------------------- the reproducers


def test_the_base_object_is_valid() -> None:
    assert check_total(base()) == []


@pytest.mark.parametrize("template", [-1, "a" * 300, [None], True])
def test_issue_15_reproducers_are_errors_naming_the_template(template: Any) -> None:
    obj = {
        "apiVersion": "jobtrigger.dev/v1alpha1",
        "kind": "JobTrigger",
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {"triggers": {"manual": {"strategy": "manual"}}, "jobTemplate": {"spec": {"template": template}}},
    }
    jt, errors = parse_jobtrigger(obj)
    assert jt is not None
    assert [e.field for e in errors] == ["spec.jobTemplate.spec.template"]
    assert errors[0].message.startswith("must be an object, not ")
    assert len(str(errors[0])) < 120  # a long value is cut, the message stays readable


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ((*TEMPLATE, "metadata"), None),  # YAML `metadata:` with nothing under it
        ((*TEMPLATE, "metadata", "labels"), None),
        ((*POD, "volumes"), None),
        ((*CONTAINER, "volumeMounts"), None),
        ((*CONTAINER, "env"), None),
        ((*POD, "initContainers"), None),
    ],
)
def test_null_counts_as_absent(path: Path, value: Any) -> None:
    """A null where an object or list may be is valid, and the Job is still built (mounts and labels added)."""
    assert check_total(with_value(path, value)) == []


# --------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("path", SUBTREES, ids=field_name)
@SETTINGS
@given(value=json_values)
def test_any_json_in_a_subtree_gives_errors_not_exceptions(path: Path, value: Any) -> None:
    check_total(with_value(path, value))


@pytest.mark.parametrize("path", OBJECT_FIELDS, ids=field_name)
@SETTINGS
@given(value=non_objects)
def test_a_non_object_where_an_object_belongs_is_named(path: Path, value: Any) -> None:
    errors = check_total(with_value(path, value))
    assert field_name(path) in [e.field for e in errors]


@SETTINGS
@given(data=st.data())
def test_any_json_anywhere_gives_errors_not_exceptions(data: st.DataObject) -> None:
    """Replace any node of the valid object (typed or not) by arbitrary JSON, or add a key to any object."""
    obj = base()
    path = data.draw(st.sampled_from(all_paths(obj)), label="path")
    value = data.draw(json_values, label="value")
    target: Any = obj
    for part in path[:-1]:
        target = target[part]
    if isinstance(target[path[-1]], dict) and data.draw(st.booleans(), label="add a key"):
        target[path[-1]][data.draw(st.sampled_from(KEYS), label="key")] = value
    else:
        target[path[-1]] = value
    check_total(obj)


@SETTINGS
@given(spec=json_values)
def test_any_json_as_the_whole_spec(spec: Any) -> None:
    obj = base()
    obj["spec"] = spec
    check_total(obj)
