"""The CRD generated from the models: up to date, structural, a valid CRD object, and it accepts/rejects objects
the same way the pydantic model does. No API server needed."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import kubernetes_validate
import pydantic
import pytest
import yaml
from pydantic import BaseModel, Field

from jobtrigger.api.crd import SchemaError, crd, crd_yaml, openapi_schema, structural_schema
from jobtrigger.api.models import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, JobTrigger
from jobtrigger.api.validation import parse_jobtrigger

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "jobtrigger.dev_jobtriggers.yaml"

#: Keywords a structural schema may use (apiextensions.k8s.io/v1 JSONSchemaProps that we generate).
ALLOWED_KEYWORDS = {
    "description",
    "type",
    "format",
    "nullable",
    "enum",
    "default",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "items",
    "required",
    "properties",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
}
FORBIDDEN_KEYWORDS = {"$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "const", "title"}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
PRESERVE = "x-kubernetes-preserve-unknown-fields"
CEL = "x-kubernetes-validations"


# --------------------------------------------------------------------------------------------- helpers


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with a readable path."""
    yield path or ".", node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def to_draft7(node: dict[str, Any]) -> dict[str, Any]:
    """The structural schema as plain JSON Schema, as strict as the API server's pruning would make it.

    ``nullable: true`` becomes ``type: [X, "null"]``; objects with ``properties`` are closed (the API server
    prunes unknown fields, so an unknown field in an example is a mistake we want to see); objects marked
    ``x-kubernetes-preserve-unknown-fields`` and property-less objects stay open.
    """
    out = {key: value for key, value in node.items() if key not in ("nullable", PRESERVE, CEL)}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    if "properties" in node:
        out["properties"] = {name: to_draft7(child) for name, child in node["properties"].items()}
        if not node.get(PRESERVE):
            out["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        out["items"] = to_draft7(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_draft7(node["additionalProperties"])
    return out


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = to_draft7(openapi_schema())
    schema["properties"]["metadata"].pop("additionalProperties")  # the API server owns metadata; only name is ours
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def valid_example() -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(
        """
apiVersion: jobtrigger.dev/v1alpha1
kind: JobTrigger
metadata:
  name: reload-on-config
  namespace: default
  labels: {team: platform}
spec:
  triggers:
    resources:
      watch:
        - apiVersion: v1
          kind: ConfigMap
          name: app-config
          fields: ["data"]
      cooldown: 0s
  jobTemplate:
    metadata:
      labels: {app: reload}
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: reload
              image: busybox:1.36
              command: [sh, -c, "echo config changed"]
"""
    )
    return obj


def errors_of(validator: jsonschema.Draft7Validator, obj: dict[str, Any]) -> list[tuple[list[Any], str]]:
    return sorted(((list(error.absolute_path), str(error.validator)) for error in validator.iter_errors(obj)), key=repr)


def _set(obj: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


def _delete(obj: dict[str, Any], path: list[str]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return obj


Mutation = Callable[[dict[str, Any]], dict[str, Any]]

#: name -> (how to break the valid example, the path of the one error, the JSON-schema keyword that fails)
INVALID: dict[str, tuple[Mutation, list[str], str]] = {
    "cooldown-pattern": (
        lambda o: _set(o, ["spec", "triggers", "resources", "cooldown"], "abc"),
        ["spec", "triggers", "resources", "cooldown"],
        "pattern",
    ),
    "concurrency-enum": (
        lambda o: _set(o, ["spec", "concurrencyPolicy"], "Sometimes"),
        ["spec", "concurrencyPolicy"],
        "enum",
    ),
    "history-minimum": (lambda o: _set(o, ["spec", "history"], 0), ["spec", "history"], "minimum"),
    "jobtemplate-required": (lambda o: _delete(o, ["spec", "jobTemplate"]), ["spec"], "required"),
    "template-not-an-object": (
        lambda o: _set(o, ["spec", "jobTemplate", "spec", "template"], -1),
        ["spec", "jobTemplate", "spec", "template"],
        "type",
    ),
    "template-spec-not-an-object": (
        lambda o: _set(o, ["spec", "jobTemplate", "spec", "template", "spec"], "x"),
        ["spec", "jobTemplate", "spec", "template", "spec"],
        "type",
    ),
    "containers-minitems": (
        lambda o: _set(o, ["spec", "jobTemplate", "spec", "template", "spec", "containers"], []),
        ["spec", "jobTemplate", "spec", "template", "spec", "containers"],
        "minItems",
    ),
    "container-not-an-object": (
        lambda o: _set(o, ["spec", "jobTemplate", "spec", "template", "spec", "containers"], ["busybox"]),
        ["spec", "jobTemplate", "spec", "template", "spec", "containers", 0],
        "type",
    ),
    "container-name-required": (
        lambda o: _delete(o, ["spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "name"]),
        ["spec", "jobTemplate", "spec", "template", "spec", "containers", 0],
        "required",
    ),
    "watch-minitems": (
        lambda o: _set(o, ["spec", "triggers", "resources", "watch"], []),
        ["spec", "triggers", "resources", "watch"],
        "minItems",
    ),
}


# --------------------------------------------------------------------------------------------- the file


def test_committed_crd_is_up_to_date() -> None:
    assert CRD_FILE.is_file(), f"{CRD_FILE} is missing: run `jobtrigger crd > crds/jobtrigger.dev_jobtriggers.yaml`"
    assert CRD_FILE.read_text() == crd_yaml(), (
        "crds/jobtrigger.dev_jobtriggers.yaml is out of date with jobtrigger/api/models.py: "
        "run `jobtrigger crd > crds/jobtrigger.dev_jobtriggers.yaml`"
    )


def test_yaml_round_trips_and_has_header() -> None:
    text = crd_yaml()
    assert text.startswith("# Generated from jobtrigger/api/models.py by `jobtrigger crd`; do not edit.\n")
    assert yaml.safe_load(text) == crd()


# --------------------------------------------------------------------------------------------- the CRD object


def test_crd_metadata_and_names() -> None:
    obj = crd()
    assert obj["apiVersion"] == "apiextensions.k8s.io/v1"
    assert obj["kind"] == "CustomResourceDefinition"
    assert obj["metadata"]["name"] == "jobtriggers.jobtrigger.dev" == f"{PLURAL}.{GROUP}"
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/name": "jobtrigger"}
    spec = obj["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (KIND, PLURAL, SINGULAR)
    assert names["shortNames"] == SHORT_NAMES
    assert names["categories"] == ["jobtrigger"]
    [version] = spec["versions"]
    assert version["name"] == VERSION == "v1alpha1"
    assert version["served"] is True and version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    [version] = crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Triggers",
        "Ready",
        "Last Job",
        "Last Status",
        "Active",
        "Last Triggered",
        "Next Run",
        "Pending",
        "Shard",
        "Age",
    ]
    assert columns["Shard"]["jsonPath"] == ".status.shard" and columns["Shard"]["priority"] == 1
    assert columns["Active"]["jsonPath"] == ".status.active[*].name" and columns["Active"]["priority"] == 1
    assert columns["Next Run"]["jsonPath"] == ".status.nextScheduleTime" and columns["Next Run"]["type"] == "string"
    assert columns["Triggers"]["jsonPath"] == ".status.triggers"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Last Job"]["jsonPath"] == ".status.lastJobName"
    assert columns["Last Status"]["jsonPath"] == ".status.lastJobStatus"
    assert columns["Last Triggered"]["jsonPath"] == ".status.lastTriggeredTime"
    assert columns["Last Triggered"]["type"] == "date"
    assert columns["Pending"]["jsonPath"] == ".status.pending" and columns["Pending"]["priority"] == 1
    assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    # every column points at a field the schema declares (a typo would silently show <none>)
    status_props = openapi_schema()["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".status."):
            assert re.match(r"\.status\.(\w+)", path)[1] in status_props, path  # type: ignore[index]


@pytest.mark.parametrize("k8s_version", ["1.30.0", kubernetes_validate.utils.latest_version()])
def test_crd_is_a_valid_crd_object(k8s_version: str) -> None:
    kubernetes_validate.validate(crd(), k8s_version, strict=True)


# --------------------------------------------------------------------------------------------- the schema


def test_top_level_shape() -> None:
    schema = openapi_schema()
    props = schema["properties"]
    assert schema["type"] == "object"
    assert set(props) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert props["apiVersion"] == {"type": "string"}
    assert props["kind"] == {"type": "string"}
    assert props["metadata"] == {
        "type": "object",
        "properties": {
            "name": {
                "description": "At most 63 characters: the name is a label value on every Job.",
                "type": "string",
                "maxLength": 63,
            }
        },
    }
    assert schema["required"] == ["spec"]
    assert props["spec"]["type"] == "object" and props["spec"]["properties"]
    assert props["status"]["type"] == "object" and props["status"]["properties"]
    assert "nullable" not in props["status"]


def test_schema_is_structural() -> None:
    """The rules the API server checks for a structural schema, applied to every node."""
    problems: list[str] = []
    for path, node in walk(openapi_schema()):
        if unknown := set(node) - ALLOWED_KEYWORDS:
            problems.append(f"{path}: keywords {sorted(unknown | (set(node) & FORBIDDEN_KEYWORDS))}")
        if node.get("type") not in TYPES and not node.get(PRESERVE):
            problems.append(f"{path}: no type (got {node.get('type')!r})")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: additionalProperties next to properties")
        if node.get(PRESERVE) and "additionalProperties" in node:
            problems.append(f"{path}: preserve-unknown-fields together with additionalProperties")
        for rule in node.get(CEL, []):
            if not rule.get("message"):
                problems.append(f"{path}: CEL rule {rule.get('rule')!r} without a message")
            field = rule.get("fieldPath", ".")[1:].split(".")[0]
            if field and field not in node.get("properties", {}):
                problems.append(f"{path}: CEL fieldPath {rule['fieldPath']!r} is not a property")
        if "additionalProperties" in node and not isinstance(node["additionalProperties"], dict):
            problems.append(f"{path}: additionalProperties must be a schema")
        if "nullable" in node and ("type" not in node or node["nullable"] is not True):
            problems.append(f"{path}: nullable without a type")
        if node.get("nullable") and "enum" in node:
            # the API server checks enum even for null, so a nullable enum cannot hold null anyway
            problems.append(f"{path}: nullable enum")
        if "enum" in node:
            jsonschema.Draft7Validator({"type": node["type"]}).validate(node["enum"][0])
            if not all(isinstance(value, type(node["enum"][0])) for value in node["enum"]):
                problems.append(f"{path}: enum values of different types")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{path}: array without items")
        for name in node.get("required", []):
            if name not in node.get("properties", {}):
                problems.append(f"{path}: required {name!r} is not a property")
        if "pattern" in node:
            re.compile(node["pattern"])
        if "default" in node:
            # the API server rejects a CRD whose defaults do not validate against their own schema
            errors = list(jsonschema.Draft7Validator(to_draft7(node)).iter_errors(node["default"]))
            if errors:
                problems.append(f"{path}: default {node['default']!r} is invalid: {errors[0].message}")
            if node["default"] is None or node["default"] == "":
                # "": kube-apiserver 1.20 built with a current Go (our envtest) takes it for null, rejects the CRD
                problems.append(f"{path}: default {node['default']!r}")
    assert problems == []


def test_no_forbidden_keywords_anywhere() -> None:
    """Belt and braces: also look inside values the walker does not descend into."""

    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, child in value.items():
                yield key
                yield from keys(child)
        elif isinstance(value, list):
            for child in value:
                yield from keys(child)

    found = {key for key in keys(openapi_schema()) if key in FORBIDDEN_KEYWORDS}
    # "title" may legitimately be a *property name*; the schema has none, so any hit is a keyword.
    assert found == set()


def test_field_shapes() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    job_spec = spec["jobTemplate"]["properties"]["spec"]
    assert job_spec["type"] == "object" and job_spec[PRESERVE] is True
    assert "additionalProperties" not in job_spec
    # what the controller relies on, and nothing of the PodSpec beyond it: everything else is kept as written
    template = job_spec["properties"]["template"]
    assert job_spec["required"] == ["template"] and set(job_spec["properties"]) == {"template"}
    assert template["type"] == "object" and template[PRESERVE] is True and template["required"] == ["spec"]
    assert template["properties"]["metadata"] == {
        "description": "Pod labels and annotations; jobtrigger adds jobtrigger.dev/owner.",
        "type": "object",
        PRESERVE: True,
    }
    pod = template["properties"]["spec"]
    assert pod["type"] == "object" and pod[PRESERVE] is True and pod["required"] == ["containers"]
    assert set(pod["properties"]) == {"containers"}
    containers = pod["properties"]["containers"]
    assert containers["type"] == "array" and containers["minItems"] == 1
    assert containers["items"]["type"] == "object" and containers["items"][PRESERVE] is True
    assert containers["items"]["required"] == ["name"]
    assert set(containers["items"]["properties"]) == {"name"}
    labels = spec["jobTemplate"]["properties"]["metadata"]["properties"]["labels"]
    assert labels == {
        "description": "Labels added to every Job.",
        "type": "object",
        "nullable": True,
        "additionalProperties": {"type": "string"},
    }
    output_map = spec["output"]["properties"]["outputMap"]
    assert output_map["additionalProperties"] == {"type": "object", "additionalProperties": {"type": "string"}}
    resources = spec["triggers"]["properties"]["resources"]["properties"]
    assert resources["cooldown"]["default"] == "60s" and "pattern" in resources["cooldown"]
    assert resources["watch"]["minItems"] == 1
    assert spec["history"]["minimum"] == 1 and spec["history"]["nullable"] is True
    assert spec["output"]["properties"]["maxBytes"]["maximum"] == 1024 * 1024
    assert spec["concurrencyPolicy"]["enum"] == ["Allow", "Forbid", "Replace", "Queue"]
    assert spec["concurrencyPolicy"]["type"] == "string"
    # field description wins over the referenced model's docstring
    assert spec["triggers"]["description"] == "When to run."


# --------------------------------------------------------------------------------------------- examples


def test_valid_example(validator: jsonschema.Draft7Validator) -> None:
    obj = valid_example()
    assert errors_of(validator, obj) == []
    parsed = JobTrigger.model_validate(obj)
    assert parsed.spec.triggers.resources is not None
    assert parsed.spec.triggers.resources.cooldown == "0s"
    assert parsed.spec.triggers.resources.watch[0].fields == ["data"]


def test_valid_example_with_status(validator: jsonschema.Draft7Validator) -> None:
    obj = valid_example()
    obj["status"] = {
        "observedGeneration": 2,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Watching", "lastTransitionTime": None}],
        "lastJobName": "reload-on-config-1",
        "lastJobStatus": "Succeeded",
        "pending": None,
    }
    assert errors_of(validator, obj) == []
    JobTrigger.model_validate(obj)


def test_model_dump_validates(validator: jsonschema.Draft7Validator) -> None:
    """What the controller writes back (defaults filled in) is accepted by the schema too."""
    dumped = JobTrigger.model_validate(valid_example()).model_dump(by_alias=True, exclude_none=True)
    assert errors_of(validator, dumped) == []


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_examples(validator: jsonschema.Draft7Validator, case: str) -> None:
    mutate, path, keyword = INVALID[case]
    obj = mutate(valid_example())
    assert errors_of(validator, obj) == [(path, keyword)]
    # the controller agrees with the CRD: the model for typed fields, validation for the Job template's shape
    if path[:3] == ["spec", "jobTemplate", "spec"]:
        jt, errors = parse_jobtrigger(obj)
        assert jt is not None and errors
        wanted = _field_name(path)
        assert all(e.field.startswith(wanted) for e in errors), (wanted, errors)
    else:
        with pytest.raises(pydantic.ValidationError):
            JobTrigger.model_validate(obj)


def _field_name(path: list[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


# --------------------------------------------------------------------------------------------- CEL rules


def rules() -> dict[str, list[dict[str, str]]]:
    """Schema path -> its CEL rules."""
    return {path: node[CEL] for path, node in walk(openapi_schema()) if CEL in node}


#: every rule generated into the CRD (path in the schema -> the rules' messages); docs/api.md lists the same
EXPECTED_RULES = {
    ".spec.triggers": ["set at least one of resources, pods, schedule, manual"],
    ".spec.triggers.resources.watch[]": [
        "set exactly one of name and selector",
        "only a v1 Secret or ConfigMap can be mounted",
        "mount needs a watched object by name",
    ],
    ".spec.triggers.resources.cooldown": ["duration is longer than the maximum of 8784h"],
    **{
        f"{selector}": ["an empty selector would match every object; name the labels to match"]
        for selector in (".spec.triggers.resources.watch[].selector", ".spec.triggers.pods.selector")
    },
    **{
        f"{selector}.matchExpressions[]": [
            "operator In/NotIn needs at least one value",
            "operator Exists/DoesNotExist takes no values",
        ]
        for selector in (".spec.triggers.resources.watch[].selector", ".spec.triggers.pods.selector")
    },
    ".spec.output": ["keepVersions applies to versioned outputs only: set versioned: true or remove keepVersions"],
}


def test_cel_rules() -> None:
    assert {path: [r["message"] for r in found] for path, found in rules().items()} == EXPECTED_RULES
    for found in rules().values():
        for rule in found:
            assert set(rule) <= {"rule", "message", "fieldPath", "reason"}
            assert rule.get("reason", "FieldValueInvalid") in {
                "FieldValueInvalid",
                "FieldValueForbidden",
                "FieldValueRequired",
            }


def test_lists_around_cel_rules_are_bounded() -> None:
    """The API server estimates a rule's cost times the number of times it can run, i.e. the product of the
    maxItems of every list around it (unbounded: millions); nested unbounded lists make it refuse the CRD."""
    schema = openapi_schema()
    for path in rules():
        node, unbounded = schema, []
        for step in re.findall(r"\.(\w+)|(\[\])", path):
            if step[1]:
                if "maxItems" not in node:
                    unbounded.append(path)
                node = node["items"]
            else:
                node = node["properties"][step[0]]
        assert len(unbounded) <= 1, f"{path}: nested lists without maxItems"


def test_cel_rules_are_dropped_by_servers_that_do_not_know_them() -> None:
    """Kubernetes < 1.25 does not know x-kubernetes-validations; without it the CRD is the same schema (the
    1.20 integration suite installs it, which proves the API server accepts the CRD with the unknown keyword)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != CEL}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    stripped = strip(crd())
    assert CEL not in yaml.safe_dump(stripped)
    kubernetes_validate.validate(stripped, "1.30.0", strict=True)


# --------------------------------------------------------------------------------------------- the converter


class _Inner(BaseModel):
    """Inner docstring."""

    n: int = Field(default=3, ge=1, le=9)


class _Sample(BaseModel):
    choice: Literal["a", "b"] | None = None
    fixed: Literal["x"] = "x"
    inner: _Inner | None = Field(default=None, description="Field text.")
    anything: dict[str, Any]
    nested: dict[str, dict[str, str]] = Field(default_factory=dict)
    tags: list[str] = Field(min_length=1)
    note: str = ""


def test_converter_on_a_sample_model() -> None:
    schema = structural_schema(_Sample)
    props = schema["properties"]
    assert props["choice"] == {"type": "string", "enum": ["a", "b"]}  # no nullable on enums, see crd.py
    assert props["fixed"] == {"type": "string", "enum": ["x"], "default": "x"}
    assert props["inner"] == {
        "description": "Field text.",
        "type": "object",
        "nullable": True,
        "properties": {"n": {"type": "integer", "default": 3, "minimum": 1, "maximum": 9}},
    }
    assert props["anything"] == {"type": "object", PRESERVE: True}
    assert props["nested"] == {
        "type": "object",
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    assert props["tags"] == {"type": "array", "minItems": 1, "items": {"type": "string"}}
    assert props["note"] == {"type": "string"}  # default "" dropped, see crd.py
    assert schema["required"] == ["anything", "tags"]


class _Union(BaseModel):
    value: int | str


class _Unique(BaseModel):
    value: set[str]


@pytest.mark.parametrize("model", [_Union, _Unique])
def test_converter_rejects_what_a_structural_schema_cannot_express(model: type[BaseModel]) -> None:
    with pytest.raises(SchemaError):
        structural_schema(model)
