"""Tests for jobtrigger.triggers.selectors (label selector matching and query strings, apimachinery semantics)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobtrigger.api.models import LabelSelector
from jobtrigger.triggers.selectors import matches, to_query


def sel(match_labels: dict[str, str] | None = None, *exprs: dict[str, Any]) -> LabelSelector:
    return LabelSelector.model_validate(
        {"matchLabels": match_labels, "matchExpressions": list(exprs) if exprs else None}
    )


def req(key: str, operator: str, *values: str) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        out["values"] = list(values)
    return out


# ---------------------------------------------------------------------- matches


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "web", "tier": "fe"}, True),
        ({"app": "web", "tier": "fe", "extra": "x"}, True),
        ({"app": "web"}, False),
        ({"app": "api", "tier": "fe"}, False),
        ({}, False),
    ],
)
def test_match_labels(labels: dict[str, str], expected: bool) -> None:
    assert matches(sel({"app": "web", "tier": "fe"}), labels) is expected


def test_match_labels_empty_value_needs_the_key() -> None:
    s = sel({"flag": ""})
    assert matches(s, {"flag": ""})
    assert not matches(s, {})
    assert not matches(s, {"flag": "x"})


def test_empty_selector_matches_everything() -> None:
    assert matches(LabelSelector(), {})
    assert matches(LabelSelector(), {"a": "b"})
    assert matches(sel({}), {"a": "b"})


@pytest.mark.parametrize(
    ("labels", "expected"),
    [({"env": "prod"}, True), ({"env": "dev"}, True), ({"env": "test"}, False), ({}, False), ({"x": "prod"}, False)],
)
def test_in(labels: dict[str, str], expected: bool) -> None:
    assert matches(sel(None, req("env", "In", "prod", "dev")), labels) is expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"env": "prod"}, False),
        ({"env": "dev"}, False),
        ({"env": "test"}, True),
        ({}, True),  # absent key matches NotIn, as in Kubernetes
        ({"other": "prod"}, True),
    ],
)
def test_not_in(labels: dict[str, str], expected: bool) -> None:
    assert matches(sel(None, req("env", "NotIn", "prod", "dev")), labels) is expected


@pytest.mark.parametrize(
    ("labels", "expected"), [({"gpu": ""}, True), ({"gpu": "a100"}, True), ({}, False), ({"cpu": "x"}, False)]
)
def test_exists(labels: dict[str, str], expected: bool) -> None:
    assert matches(sel(None, req("gpu", "Exists")), labels) is expected


@pytest.mark.parametrize(
    ("labels", "expected"), [({"legacy": ""}, False), ({"legacy": "yes"}, False), ({}, True), ({"x": "y"}, True)]
)
def test_does_not_exist(labels: dict[str, str], expected: bool) -> None:
    assert matches(sel(None, req("legacy", "DoesNotExist")), labels) is expected


def test_all_requirements_are_anded() -> None:
    s = sel(
        {"app": "web"},
        req("env", "In", "prod"),
        req("tier", "NotIn", "db"),
        req("team", "Exists"),
        req("legacy", "DoesNotExist"),
    )
    ok = {"app": "web", "env": "prod", "tier": "fe", "team": "a"}
    assert matches(s, ok)
    for breaker in ({"app": "api"}, {"env": "dev"}, {"tier": "db"}, {"legacy": "1"}):
        assert not matches(s, {**ok, **breaker}), breaker
    assert not matches(s, {k: v for k, v in ok.items() if k != "team"})


# ---------------------------------------------------------------------- to_query


def test_to_query_all_operators() -> None:
    s = sel(
        {"a": "b"},
        req("k", "In", "y", "x"),
        req("k2", "NotIn", "z"),
        req("k3", "Exists"),
        req("k4", "DoesNotExist"),
    )
    assert to_query(s) == "a=b,k in (x,y),k2 notin (z),k3,!k4"


def test_to_query_match_labels_sorted() -> None:
    assert to_query(sel({"z": "1", "a": "2", "app.kubernetes.io/name": "web"})) == (
        "a=2,app.kubernetes.io/name=web,z=1"
    )


def test_to_query_keeps_expression_order() -> None:
    s = sel(None, req("b", "Exists"), req("a", "DoesNotExist"))
    assert to_query(s) == "b,!a"


def test_to_query_empty_selector() -> None:
    assert to_query(LabelSelector()) == ""


# ---------------------------------------------------------------------- property: reference implementation

KEYS = ["app", "env", "tier"]
VALUES = ["", "a", "b", "c"]


def reference_matches(selector: dict[str, Any], labels: Mapping[str, str]) -> bool:
    """k8s.io/apimachinery/pkg/labels semantics, written from the docs."""
    requirements: list[tuple[str, str, set[str]]] = [
        (k, "In", {v}) for k, v in (selector.get("matchLabels") or {}).items()
    ]
    requirements += [
        (e["key"], e["operator"], set(e.get("values") or [])) for e in selector.get("matchExpressions") or []
    ]
    for key, op, values in requirements:
        has = key in labels
        if op == "In":
            ok = has and labels[key] in values
        elif op == "NotIn":
            ok = not has or labels[key] not in values
        elif op == "Exists":
            ok = has
        else:
            ok = not has
        if not ok:
            return False
    return True


expression = st.one_of(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(KEYS),
            "operator": st.sampled_from(["In", "NotIn"]),
            "values": st.lists(st.sampled_from(VALUES), min_size=1, max_size=3),
        }
    ),
    st.fixed_dictionaries({"key": st.sampled_from(KEYS), "operator": st.sampled_from(["Exists", "DoesNotExist"])}),
)
selector_dicts = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2),
        "matchExpressions": st.lists(expression, max_size=3),
    },
)
label_sets = st.dictionaries(st.sampled_from([*KEYS, "other"]), st.sampled_from(VALUES), max_size=4)


@settings(max_examples=200, deadline=None)
@given(selector_dicts, label_sets)
def test_matches_agrees_with_reference(selector: dict[str, Any], labels: dict[str, str]) -> None:
    assert matches(LabelSelector.model_validate(selector), labels) == reference_matches(selector, labels)


@settings(max_examples=100, deadline=None)
@given(selector_dicts)
def test_to_query_mentions_every_requirement(selector: dict[str, Any]) -> None:
    query = to_query(LabelSelector.model_validate(selector))
    n = len(selector.get("matchLabels") or {}) + len(selector.get("matchExpressions") or [])
    # one comma-separated term per requirement; commas inside "(...)" separate values
    depth, terms = 0, 1 if query else 0
    for ch in query:
        depth += ch == "("
        depth -= ch == ")"
        terms += ch == "," and depth == 0
    assert terms == n
