"""Tests for jobtrigger.api.validation: durations, parse errors and spec checks naming the offending field."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from jobtrigger.api.models import JobTriggerSpec
from jobtrigger.api.validation import SpecError, parse_duration, parse_jobtrigger, validate_spec

WATCH0 = "spec.triggers.resources.watch[0]"


def job_template() -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}


def spec_dict(triggers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "triggers": triggers
        if triggers is not None
        else {"resources": {"watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]}},
        "jobTemplate": job_template(),
    }


def obj(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "jobtrigger.dev/v1alpha1",
        "kind": "JobTrigger",
        "metadata": {"name": "jt", "namespace": "default"},
        "spec": spec if spec is not None else spec_dict(),
    }


def errors_for(spec: dict[str, Any]) -> list[SpecError]:
    return validate_spec(JobTriggerSpec.model_validate(spec))


def fields_of(errors: list[SpecError]) -> list[str]:
    return [e.field for e in errors]


def watch(**kw: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", **kw}


def resources(*watches: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"resources": {"watch": list(watches), **kw}}


# ---------------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1m30s", timedelta(seconds=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("1s500ms", timedelta(seconds=1.5)),
        ("1.5h", timedelta(minutes=90)),
        ("2h0m0s", timedelta(hours=2)),
        (" 30s ", timedelta(seconds=30)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "abc", "10", "5x", "1h 30m", "1h30", "s", "-5s", "1.s", "h1", "5m!"])
def test_parse_duration_errors(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# ---------------------------------------------------------------------- parse_jobtrigger


def test_parse_valid_object() -> None:
    jt, errors = parse_jobtrigger(obj())
    assert errors == []
    assert jt is not None
    assert jt.spec.triggers.resources is not None
    assert jt.spec.triggers.resources.watch[0].name == "cfg"


def test_parse_wrong_type_names_the_camel_case_field() -> None:
    spec = spec_dict()
    spec["history"] = "x"
    jt, errors = parse_jobtrigger(obj(spec))
    assert jt is None
    assert fields_of(errors) == ["spec.history"]


def test_parse_missing_job_template() -> None:
    spec = spec_dict()
    del spec["jobTemplate"]
    jt, errors = parse_jobtrigger(obj(spec))
    assert jt is None
    assert fields_of(errors) == ["spec.jobTemplate"]


def test_parse_error_inside_a_list_uses_brackets() -> None:
    spec = spec_dict(resources(watch(name="a"), watch(name="b", fields=["data", 3])))
    jt, errors = parse_jobtrigger(obj(spec))
    assert jt is None
    assert fields_of(errors) == ["spec.triggers.resources.watch[1].fields[1]"]


def test_parse_bad_enum_in_selector() -> None:
    spec = spec_dict(resources(watch(selector={"matchExpressions": [{"key": "a", "operator": "Bad"}]})))
    _, errors = parse_jobtrigger(obj(spec))
    assert fields_of(errors) == [f"{WATCH0}.selector.matchExpressions[0].operator"]


def test_parse_reports_every_error() -> None:
    spec = spec_dict()
    spec["history"] = 0
    spec["concurrencyPolicy"] = "Sometimes"
    _, errors = parse_jobtrigger(obj(spec))
    assert sorted(fields_of(errors)) == ["spec.concurrencyPolicy", "spec.history"]


def test_parse_missing_spec() -> None:
    o = obj()
    del o["spec"]
    jt, errors = parse_jobtrigger(o)
    assert jt is None
    assert fields_of(errors) == ["spec"]


def test_parse_runs_validate_spec() -> None:
    jt, errors = parse_jobtrigger(obj(spec_dict({})))
    assert jt is not None
    assert fields_of(errors) == ["spec.triggers"]


def test_spec_error_str() -> None:
    assert str(SpecError("spec.x", "broken")) == "spec.x: broken"


# ---------------------------------------------------------------------- validate_spec


def test_valid_spec_has_no_errors() -> None:
    assert errors_for(spec_dict()) == []


def test_no_triggers() -> None:
    errors = errors_for(spec_dict({}))
    assert fields_of(errors) == ["spec.triggers"]
    assert "at least one" in errors[0].message


def test_manual_alone_is_a_trigger() -> None:
    assert errors_for(spec_dict({"manual": {}})) == []


def test_name_and_selector_both() -> None:
    errors = errors_for(spec_dict(resources(watch(name="a", selector={"matchLabels": {"app": "x"}}))))
    assert fields_of(errors) == [WATCH0]
    assert "exactly one of name and selector" in errors[0].message


def test_name_and_selector_neither() -> None:
    errors = errors_for(spec_dict(resources(watch(name="a"), watch())))
    assert fields_of(errors) == ["spec.triggers.resources.watch[1]"]


def test_bad_jmespath_names_the_field_index() -> None:
    errors = errors_for(spec_dict(resources(watch(name="a", fields=["data", "data.[", "*"]))))
    assert fields_of(errors) == [f"{WATCH0}.fields[1]"]
    assert "data.[" in errors[0].message


def test_good_jmespath_and_star_accepted() -> None:
    paths = ["*", " * ", "data", 'data."app.conf"', "spec.template.spec.containers[*].image"]
    assert errors_for(spec_dict(resources(watch(name="a", fields=paths)))) == []


def test_bad_cooldown() -> None:
    # the CRD pattern normally rejects this; validation must not rely on it
    spec = spec_dict(resources(watch(name="a")))
    jts = JobTriggerSpec.model_validate(spec)
    assert jts.triggers.resources is not None
    jts.triggers.resources.cooldown = "5x"
    assert fields_of(validate_spec(jts)) == ["spec.triggers.resources.cooldown"]


def test_mount_on_a_deployment() -> None:
    w = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "mount": {}}
    errors = errors_for(spec_dict(resources(w)))
    assert fields_of(errors) == [f"{WATCH0}.mount"]
    assert "Secret or ConfigMap" in errors[0].message


@pytest.mark.parametrize("kind", ["Secret", "ConfigMap"])
def test_mount_on_secret_or_configmap_by_name(kind: str) -> None:
    w = {"apiVersion": "v1", "kind": kind, "name": "tls", "mount": {"volumeName": "tls", "mountPath": "/tls"}}
    assert errors_for(spec_dict(resources(w))) == []


def test_mount_on_wrong_api_version() -> None:
    w = {"apiVersion": "example.com/v1", "kind": "Secret", "name": "tls", "mount": {}}
    assert fields_of(errors_for(spec_dict(resources(w)))) == [f"{WATCH0}.mount"]


def test_mount_with_a_selector() -> None:
    w = {"apiVersion": "v1", "kind": "Secret", "selector": {"matchLabels": {"a": "b"}}, "mount": {}}
    errors = errors_for(spec_dict(resources(w)))
    assert fields_of(errors) == [f"{WATCH0}.mount"]
    assert "by name" in errors[0].message


def test_in_without_values() -> None:
    w = watch(selector={"matchExpressions": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "In"}]})
    errors = errors_for(spec_dict(resources(w)))
    assert fields_of(errors) == [f"{WATCH0}.selector.matchExpressions[1].values"]


def test_not_in_with_empty_values() -> None:
    w = watch(selector={"matchExpressions": [{"key": "b", "operator": "NotIn", "values": []}]})
    assert fields_of(errors_for(spec_dict(resources(w)))) == [f"{WATCH0}.selector.matchExpressions[0].values"]


def test_exists_with_values() -> None:
    w = watch(selector={"matchExpressions": [{"key": "b", "operator": "DoesNotExist", "values": ["x"]}]})
    assert fields_of(errors_for(spec_dict(resources(w)))) == [f"{WATCH0}.selector.matchExpressions[0].values"]


@pytest.mark.parametrize("selector", [{}, {"matchLabels": {}}, {"matchExpressions": []}])
def test_empty_selector(selector: dict[str, Any]) -> None:
    errors = errors_for(spec_dict(resources(watch(selector=selector))))
    assert fields_of(errors) == [f"{WATCH0}.selector"]
    assert "empty selector" in errors[0].message


def test_empty_pod_selector() -> None:
    errors = errors_for(spec_dict({"pods": {"selector": {}, "when": ["Failed"]}}))
    assert fields_of(errors) == ["spec.triggers.pods.selector"]


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * *", "not a cron", "@reboot", "@every 5m"])
def test_bad_cron(cron: str) -> None:
    errors = errors_for(spec_dict({"schedule": {"cron": cron}}))
    assert fields_of(errors) == ["spec.triggers.schedule.cron"]
    assert repr(cron) in errors[0].message


@pytest.mark.parametrize(
    "cron", ["@hourly", "@once", " @once ", "@daily", "*/5 * * * *", "0 3 * * 1-5", "0 0 * * * 30"]
)
def test_good_cron(cron: str) -> None:
    assert errors_for(spec_dict({"schedule": {"cron": cron}})) == []


@pytest.mark.parametrize("tz", ["Mars/Olympus", "../etc/passwd", "Europe/Berlin/"])
def test_bad_time_zone(tz: str) -> None:
    errors = errors_for(spec_dict({"schedule": {"cron": "@daily", "timeZone": tz}}))
    assert fields_of(errors) == ["spec.triggers.schedule.timeZone"]


# regression: ZoneInfo raises OSError (IsADirectoryError, ENAMETOOLONG) for these, not ZoneInfoNotFoundError
@pytest.mark.parametrize("tz", ["Europe", "America", "x" * 300])
def test_time_zone_that_names_a_directory_is_an_error_not_an_exception(tz: str) -> None:
    # zoneinfo falls back to the tzdata package (installed via python-dateutil) for keys not found as files
    # on TZPATH; that fallback raises OSError for directories and over-long names
    errors = errors_for(spec_dict({"schedule": {"cron": "@daily", "timeZone": tz}}))
    assert fields_of(errors) == ["spec.triggers.schedule.timeZone"]


@pytest.mark.parametrize("tz", ["Europe/Berlin", "UTC", "America/New_York"])
def test_good_time_zone(tz: str) -> None:
    assert errors_for(spec_dict({"schedule": {"cron": "@daily", "timeZone": tz}})) == []


@pytest.mark.parametrize(
    "job_spec",
    [
        {},
        {"template": {}},
        {"template": {"spec": {}}},
        {"template": {"spec": {"containers": []}}},
        {"template": {"spec": {"initContainers": [{"name": "i", "image": "x"}]}}},
    ],
)
def test_no_containers(job_spec: dict[str, Any]) -> None:
    spec = spec_dict()
    spec["jobTemplate"] = {"spec": job_spec}
    errors = errors_for(spec)
    assert fields_of(errors) == ["spec.jobTemplate.spec.template.spec.containers"]


def test_several_errors_are_all_reported_in_order() -> None:
    spec = spec_dict(
        {
            **resources(
                watch(name="a", selector={"matchLabels": {"x": "y"}}),
                watch(name="b", fields=["ok", "bad["]),
                cooldown="1h",
            ),
            "schedule": {"cron": "nope", "timeZone": "Nowhere/Land"},
        }
    )
    spec["jobTemplate"] = {"spec": {"template": {"spec": {"containers": []}}}}
    errors = errors_for(spec)
    assert fields_of(errors) == [
        WATCH0,
        "spec.triggers.resources.watch[1].fields[1]",
        "spec.triggers.schedule.cron",
        "spec.triggers.schedule.timeZone",
        "spec.jobTemplate.spec.template.spec.containers",
    ]


def test_validate_spec_does_not_mutate() -> None:
    spec = spec_dict(resources(watch(name="a", fields=["data"])))
    jts = JobTriggerSpec.model_validate(spec)
    before = copy.deepcopy(jts.model_dump())
    validate_spec(jts)
    assert jts.model_dump() == before


# ---------------------------------------------------------------------- the Job template's shape (issue 15)

TEMPLATE = "spec.jobTemplate.spec.template"
C0 = f"{TEMPLATE}.spec.containers[0]"


@pytest.mark.parametrize("template", [-1, "aaaa", [None], True, 1.5, []])
def test_template_that_is_not_an_object(template: Any) -> None:
    """The issue-15 reproducers: an error naming the field instead of an AttributeError out of the sync."""
    errors = errors_for(
        {"triggers": {"manual": {"strategy": "manual"}}, "jobTemplate": {"spec": {"template": template}}}
    )
    assert fields_of(errors) == [TEMPLATE]
    assert errors[0].message.startswith("must be an object, not ")


def container(**kw: Any) -> dict[str, Any]:
    return {"name": "main", "image": "busybox", **kw}


@pytest.mark.parametrize(
    ("template", "fields"),
    [
        ({"spec": "x"}, [f"{TEMPLATE}.spec"]),
        ({"metadata": "x", "spec": {"containers": [container()]}}, [f"{TEMPLATE}.metadata"]),
        ({"metadata": {"labels": ["a"]}, "spec": {"containers": [container()]}}, [f"{TEMPLATE}.metadata.labels"]),
        ({"spec": {"containers": "main"}}, [f"{TEMPLATE}.spec.containers"]),
        ({"spec": {"containers": {"name": "main"}}}, [f"{TEMPLATE}.spec.containers"]),
        ({"spec": {"containers": [container(), "busybox"]}}, [f"{TEMPLATE}.spec.containers[1]"]),
        ({"spec": {"containers": [{"image": "busybox"}]}}, [f"{C0}.name"]),
        ({"spec": {"containers": [container(name=7)]}}, [f"{C0}.name"]),
        ({"spec": {"containers": [container(env="A=1")]}}, [f"{C0}.env"]),
        ({"spec": {"containers": [container(env=[{"name": "A"}, "B=1"])]}}, [f"{C0}.env[1]"]),
        ({"spec": {"containers": [container(env=[{"name": ["A"]}])]}}, [f"{C0}.env[0].name"]),
        ({"spec": {"containers": [container(env=[{"name": "A", "valueFrom": "cfg"}])]}}, [f"{C0}.env[0].valueFrom"]),
        ({"spec": {"containers": [container(envFrom={"configMapRef": {}})]}}, [f"{C0}.envFrom"]),
        ({"spec": {"containers": [container(volumeMounts=[1])]}}, [f"{C0}.volumeMounts[0]"]),
        (
            {"spec": {"containers": [container()], "initContainers": [{"name": "i", "env": True}]}},
            [f"{TEMPLATE}.spec.initContainers[0].env"],
        ),
        ({"spec": {"containers": [container()], "volumes": {"a": 1}}}, [f"{TEMPLATE}.spec.volumes"]),
        (
            {"spec": {"containers": [container()], "volumes": [{"name": "p", "projected": {"sources": [3]}}]}},
            [f"{TEMPLATE}.spec.volumes[0].projected.sources[0]"],
        ),
    ],
)
def test_template_shape_errors_name_the_field(template: dict[str, Any], fields: list[str]) -> None:
    spec = spec_dict()
    spec["jobTemplate"] = {"spec": {"template": template}}
    assert fields_of(errors_for(spec)) == fields


@pytest.mark.parametrize(
    "template",
    [
        {"metadata": None, "spec": {"containers": [container()]}},
        {"metadata": {"labels": None}, "spec": {"containers": [container(env=None, envFrom=None)]}},
        {"spec": {"containers": [container()], "initContainers": None, "volumes": None}},
    ],
)
def test_null_is_absent(template: dict[str, Any]) -> None:
    spec = spec_dict()
    spec["jobTemplate"] = {"spec": {"template": template}}
    assert errors_for(spec) == []


def test_long_values_are_cut_in_the_message() -> None:
    spec = spec_dict()
    spec["jobTemplate"] = {"spec": {"template": "x" * 10_000}}
    (error,) = errors_for(spec)
    assert len(error.message) < 80 and error.message.endswith("…')")


def test_jmespath_nested_too_deeply_is_an_error() -> None:
    deep = "(" * 3000 + "a" + ")" * 3000
    errors = errors_for(spec_dict(resources(watch(name="a", fields=[deep]))))
    assert fields_of(errors) == [f"{WATCH0}.fields[0]"]
    assert "nested too deeply" in errors[0].message
