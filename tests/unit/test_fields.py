"""Tests for jobtrigger.triggers.fields: path normalization and per-path hashing of watched objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobtrigger.triggers.fields import (
    WHOLE_OBJECT,
    InvalidPath,
    compile_path,
    hash_paths,
    hash_value,
    normalize_paths,
)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "cfg",
            "namespace": "default",
            "uid": "0b5e9a3c-0000-0000-0000-000000000001",
            "resourceVersion": "100",
            "generation": 1,
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            "labels": {"app": "web"},
            "annotations": {"team": "a", LAST_APPLIED: '{"data":{"key":"v1"}}'},
        },
        "data": {"key": "v1", "other": "o1", "app.conf": "x=1"},
    }


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7", "generation": 3},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1.25", "args": ["--a"]},
                        {"name": "sidecar", "image": "envoy:1.0"},
                    ]
                },
            },
        },
        "status": {"readyReplicas": 2, "observedGeneration": 3},
    }


def whole(obj: dict[str, Any]) -> str:
    return hash_paths(obj, [WHOLE_OBJECT])[WHOLE_OBJECT]


# ---------------------------------------------------------------------- normalize_paths


@pytest.mark.parametrize("fields", [None, [], [""], ["  ", ""]])
def test_normalize_empty_means_whole_object(fields: list[str] | None) -> None:
    assert normalize_paths(fields) == ("*",)


@pytest.mark.parametrize("fields", [["*"], ["data", "*"], [" * ", "spec.replicas"]])
def test_normalize_star_wins_over_other_paths(fields: list[str]) -> None:
    assert normalize_paths(fields) == ("*",)


def test_normalize_sorts_strips_and_deduplicates() -> None:
    assert normalize_paths(["spec.replicas", "data", " data ", "data", "", "binaryData"]) == (
        "binaryData",
        "data",
        "spec.replicas",
    )


def test_normalize_is_order_independent() -> None:
    assert normalize_paths(["b", "a", "c"]) == normalize_paths(["c", "b", "a"]) == ("a", "b", "c")


# ---------------------------------------------------------------------- compile_path


def test_compile_path_valid_expressions() -> None:
    obj = configmap()
    assert compile_path("data.key").search(obj) == "v1"
    assert compile_path('data."app.conf"').search(obj) == "x=1"
    assert compile_path("spec.template.spec.containers[*].image").search(deployment()) == ["nginx:1.25", "envoy:1.0"]


@pytest.mark.parametrize("bad", ["data.[", "a..b", "data.app.conf[", "foo(", ""])
def test_compile_path_error_names_the_expression(bad: str) -> None:
    with pytest.raises(InvalidPath) as info:
        compile_path(bad)
    msg = str(info.value)
    assert msg.startswith(f"invalid JMESPath expression {bad!r}: ")
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------- hash_paths: "*"


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda o: o["metadata"].update(resourceVersion="101"), id="resourceVersion"),
        pytest.param(lambda o: o["metadata"]["managedFields"].append({"manager": "x"}), id="managedFields"),
        pytest.param(lambda o: o["metadata"].update(generation=2), id="generation"),
        pytest.param(lambda o: o["metadata"].update(uid="other-uid"), id="uid"),
        pytest.param(lambda o: o["metadata"].update(creationTimestamp="2025-01-01T00:00:00Z"), id="creationTimestamp"),
        pytest.param(lambda o: o.update(status={"phase": "whatever"}), id="status-added"),
        pytest.param(lambda o: o["metadata"]["annotations"].update({LAST_APPLIED: "{}"}), id="last-applied-changed"),
        pytest.param(lambda o: o["metadata"]["annotations"].pop(LAST_APPLIED), id="last-applied-removed"),
        pytest.param(lambda o: o["metadata"].pop("managedFields"), id="managedFields-removed"),
    ],
)
def test_whole_object_ignores_metadata_noise(mutate: Any) -> None:
    before = configmap()
    after = copy.deepcopy(before)
    mutate(after)
    assert after != before  # the mutation did something
    assert whole(after) == whole(before)


def test_whole_object_ignores_status_of_a_deployment() -> None:
    before = deployment()
    after = copy.deepcopy(before)
    after["status"] = {"readyReplicas": 0, "observedGeneration": 4}
    after["metadata"]["generation"] = 4
    assert whole(after) == whole(before)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda o: o["metadata"]["labels"].update(app="api"), id="label-changed"),
        pytest.param(lambda o: o["metadata"]["labels"].update(new="1"), id="label-added"),
        pytest.param(lambda o: o["metadata"].pop("labels"), id="labels-removed"),
        pytest.param(lambda o: o["metadata"]["annotations"].update(team="b"), id="annotation-changed"),
        pytest.param(lambda o: o["metadata"]["annotations"].pop("team"), id="annotation-removed"),
        pytest.param(lambda o: o["data"].update(key="v2"), id="data-value"),
        pytest.param(lambda o: o["data"].update(extra="e"), id="data-key-added"),
        pytest.param(lambda o: o.update(binaryData={"b": "AA=="}), id="binaryData-added"),
        pytest.param(lambda o: o.update(immutable=True), id="top-level-field"),
    ],
)
def test_whole_object_sees_real_changes(mutate: Any) -> None:
    before = configmap()
    after = copy.deepcopy(before)
    mutate(after)
    assert whole(after) != whole(before)


def test_whole_object_absent_and_empty_labels_annotations_are_equal() -> None:
    a = configmap()
    a["metadata"]["labels"] = {}
    a["metadata"]["annotations"] = {LAST_APPLIED: "{}"}
    b = copy.deepcopy(a)
    b["metadata"].pop("labels")
    b["metadata"].pop("annotations")
    assert whole(a) == whole(b)


def test_whole_object_is_key_order_independent() -> None:
    a = configmap()
    b = {k: a[k] for k in reversed(list(a))}
    b["data"] = {k: a["data"][k] for k in reversed(list(a["data"]))}
    b["metadata"] = {k: a["metadata"][k] for k in reversed(list(a["metadata"]))}
    assert list(b) != list(a)
    assert whole(a) == whole(b)


def test_hash_paths_does_not_mutate_the_object() -> None:
    obj = deployment()
    snapshot = copy.deepcopy(obj)
    hash_paths(obj, ["*", "spec.replicas", "spec.template.spec.containers[*].image"])
    assert obj == snapshot


# ---------------------------------------------------------------------- hash_paths: JMESPath


def test_hash_paths_returns_one_hash_per_path() -> None:
    paths = ["*", "data", "data.key", 'data."app.conf"']
    hashes = hash_paths(configmap(), paths)
    assert list(hashes) == paths
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes.values())
    assert len(set(hashes.values())) == len(paths)


def test_data_path_sees_only_data() -> None:
    before = configmap()
    after = copy.deepcopy(before)
    after["metadata"]["labels"]["app"] = "api"  # not part of `data`
    assert hash_paths(after, ["data"]) == hash_paths(before, ["data"])
    after["data"]["other"] = "o2"
    assert hash_paths(after, ["data"]) != hash_paths(before, ["data"])


def test_data_key_path_ignores_sibling_keys() -> None:
    before = configmap()
    after = copy.deepcopy(before)
    after["data"]["other"] = "o2"
    assert hash_paths(after, ["data.key"]) == hash_paths(before, ["data.key"])
    after["data"]["key"] = "v2"
    assert hash_paths(after, ["data.key"]) != hash_paths(before, ["data.key"])


def test_quoted_key_with_dots() -> None:
    path = 'data."app.conf"'
    before = configmap()
    after = copy.deepcopy(before)
    after["data"]["key"] = "changed"
    assert hash_paths(after, [path]) == hash_paths(before, [path])
    after["data"]["app.conf"] = "x=2"
    assert hash_paths(after, [path]) != hash_paths(before, [path])
    # unquoted, the dots are path separators: data.app.conf does not exist -> null
    assert hash_paths(before, ["data.app.conf"])["data.app.conf"] == hash_value(None)


def test_container_images_path() -> None:
    path = "spec.template.spec.containers[*].image"
    before = deployment()
    base = hash_paths(before, [path])

    other_field = copy.deepcopy(before)
    other_field["spec"]["template"]["spec"]["containers"][0]["args"] = ["--b"]
    other_field["spec"]["replicas"] = 5
    other_field["spec"]["template"]["spec"]["containers"][1]["env"] = [{"name": "X", "value": "1"}]
    assert hash_paths(other_field, [path]) == base

    image = copy.deepcopy(before)
    image["spec"]["template"]["spec"]["containers"][1]["image"] = "envoy:1.1"
    assert hash_paths(image, [path]) != base


def test_missing_path_hashes_like_null() -> None:
    null = hash_value(None)
    assert hash_paths({}, ["data.key"])["data.key"] == null
    assert hash_paths(configmap(), ["data.missing"])["data.missing"] == null
    assert hash_paths({"data": {"key": None}}, ["data.key"])["data.key"] == null
    assert hash_paths(configmap(), ["data.key"])["data.key"] != null


def test_path_appearing_and_disappearing_is_a_change() -> None:
    with_key = {"data": {"key": "v"}}
    without_key: dict[str, Any] = {"data": {}}
    assert hash_paths(with_key, ["data.key"]) != hash_paths(without_key, ["data.key"])


def test_path_hash_is_key_order_independent() -> None:
    a = {"data": {"x": "1", "y": {"p": 1, "q": [1, 2]}}}
    b = {"data": {"y": {"q": [1, 2], "p": 1}, "x": "1"}}
    assert hash_paths(a, ["data"]) == hash_paths(b, ["data"])
    # list order still matters
    c = {"data": {"x": "1", "y": {"p": 1, "q": [2, 1]}}}
    assert hash_paths(a, ["data"]) != hash_paths(c, ["data"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_hash_value_ignores_dict_insertion_order(d: dict[str, Any]) -> None:
    reordered = dict(reversed(list(d.items())))
    assert hash_value(d) == hash_value(reordered)


@given(json_values, json_values)
def test_hash_value_distinguishes_distinct_values(a: Any, b: Any) -> None:
    # bool/int are distinct JSON values even though True == 1 in Python
    if a == b and repr(a) == repr(b):
        assert hash_value(a) == hash_value(b)
    elif a != b:
        assert hash_value(a) != hash_value(b)


def test_jmespath_runtime_error_is_hashed_not_raised() -> None:
    # length() of a number is a JMESPath type error at search time, not at compile time
    a = hash_paths({"data": {"n": 1}}, ["length(data.n)"])
    b = hash_paths({"data": {"n": 2}}, ["length(data.n)"])
    ok = hash_paths({"data": {"n": "xy"}}, ["length(data.n)"])
    assert a == b  # same error, same hash: no spurious change
    assert a != ok
