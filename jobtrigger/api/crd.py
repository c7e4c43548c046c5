"""Generate the JobTrigger CustomResourceDefinition from the pydantic models.

The models in :mod:`jobtrigger.api.models` are the single source of truth for the API: the controller parses
objects with them, and this module derives the CRD's ``openAPIV3Schema`` from
``JobTrigger.model_json_schema()``, so the constraints the API server enforces (enums, minimums, patterns,
required fields, defaults) can never drift from the ones the controller assumes. ``jobtrigger crd`` prints
:func:`crd_yaml`; the result is committed as ``crds/jobtrigger.dev_jobtriggers.yaml`` and a unit test fails
when the two differ.

Pydantic emits JSON Schema (draft 2020-12), but ``apiextensions.k8s.io/v1`` only accepts a *structural schema*
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema),
so the pydantic output is rewritten node by node:

* ``$ref``/``$defs`` are inlined (references are not allowed); sibling keywords of a ``$ref`` (the field's
  ``description``/``default``) win over the referenced model's own.
* ``title`` is dropped (noise; the property name says it).
* ``anyOf: [X, {type: null}]`` (an ``Optional`` field) becomes ``X`` plus ``nullable: true``, and ``default:
  null`` is dropped; the API server treats a missing field like ``None`` anyway. ``default: ""`` is dropped too:
  the model fills it in, and kube-apiserver 1.20 built with a current Go (our envtest) takes an empty string
  for null in its type check and rejects the whole CRD ("default: Invalid value: null"). Exception: an optional
  *enum* (``Literal[...] | None``) is emitted without ``nullable``. The API server checks ``enum`` even for a
  null value and rejects it (nullable does not help), while a null in a non-nullable field is pruned before
  validation, which is what ``None`` means here.
* ``const`` becomes a one-value ``enum``; every ``enum`` gets the ``type`` of its values.
* ``dict[str, Any]`` and fields marked ``json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}``
  become ``type: object`` + ``x-kubernetes-preserve-unknown-fields: true`` with no ``additionalProperties``
  (the API server would prune their content otherwise). ``properties``/``required`` given explicitly in
  ``json_schema_extra`` stay (the known part of ``jobTemplate.spec`` is checked, the rest kept as written).
* ``dict[str, str]`` stays ``type: object`` with ``additionalProperties: {type: string}`` (recursively for
  nested dicts); ``additionalProperties`` never appears next to ``properties``.
* Every node ends up with a ``type``; ``oneOf``/``anyOf``/``allOf``/``not`` and keywords Kubernetes does not
  know raise :class:`SchemaError` so an unsupported model change fails loudly at generation time instead of
  being rejected by (or, worse, silently accepted differently by) the API server.
* At the top level ``apiVersion``/``kind`` are plain strings and ``metadata`` is ``type: object`` with only
  ``name`` constrained (``maxLength: 63``): the API server owns those and forbids constraining ``metadata``
  beyond name/generateName.

Kept as is: ``description``, non-null ``default``, ``minimum``/``maximum`` (from ``ge``/``le``),
``minLength``/``maxLength``, ``minItems``/``maxItems``, ``pattern``, ``enum``, ``format``, ``required``, and
``x-kubernetes-validations`` (CEL rules from ``model_config``/``Field`` ``json_schema_extra``; checked for shape:
``rule``, a ``message``, a known ``reason``, a ``fieldPath`` starting with ``.``). API servers before 1.25 (CEL)
ignore the keyword when decoding the CRD, so the CRD still installs there; the controller repeats every check.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from jobtrigger.api.models import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, JobTrigger

__all__ = ["CRD_NAME", "HEADER", "SchemaError", "crd", "crd_yaml", "openapi_schema", "structural_schema"]

CRD_NAME = f"{PLURAL}.{GROUP}"
HEADER = "# Generated from jobtrigger/api/models.py by `jobtrigger crd`; do not edit.\n"

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_VALIDATIONS = "x-kubernetes-validations"
#: JobTrigger names become a label value (``jobtrigger.dev/owner``) on every Job: 63 characters at most
MAX_NAME = 63
_NAME_DESCRIPTION = "At most 63 characters: the name is a label value on every Job."
_TOP_DESCRIPTION = "JobTrigger runs a Kubernetes Job when something happens in the cluster."

#: Output key order, for a readable YAML file.
_KEY_ORDER = (
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
    _PRESERVE,
    _VALIDATIONS,
)
#: JSON Schema keywords copied unchanged (after their children are converted).
_PASSTHROUGH = frozenset(
    {
        "description",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
    }
)
_DROPPED = frozenset({"title", "examples", "$defs"})

_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is a subclass of int
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


class SchemaError(ValueError):
    """The pydantic schema uses a construct that has no structural-schema equivalent."""


def _json_type(value: Any, where: str) -> str:
    for py_type, name in _JSON_TYPES:
        if isinstance(value, py_type):
            return name
    raise SchemaError(f"{where}: cannot derive a type for enum/const value {value!r}")


def _resolve(ref: str, defs: dict[str, Any], where: str) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
        raise SchemaError(f"{where}: unresolvable $ref {ref!r}")
    target: dict[str, Any] = defs[ref[len(prefix) :]]
    return target


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: node[key] for key in _KEY_ORDER if key in node}
    return {**ordered, **{key: value for key, value in node.items() if key not in ordered}}


def _convert(node: dict[str, Any], defs: dict[str, Any], where: str, stack: tuple[str, ...]) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node (and its children) into a structural-schema node."""
    node = dict(node)

    if "$ref" in node:
        ref = node.pop("$ref")
        if ref in stack:
            raise SchemaError(f"{where}: recursive model {ref!r} cannot be expressed in a structural schema")
        target = _convert(_resolve(ref, defs, where), defs, where, (*stack, ref))
        # The referencing field's own keywords (description, default) override the model's.
        return _convert({**target, **node}, defs, where, stack) if node else target

    for combinator in ("oneOf", "allOf", "not"):
        if combinator in node:
            raise SchemaError(f"{where}: {combinator!r} is not supported in a structural schema")

    nullable = False
    if "anyOf" in node:
        branches: list[dict[str, Any]] = node.pop("anyOf")
        non_null = [branch for branch in branches if branch.get("type") != "null"]
        if len(non_null) != 1:
            raise SchemaError(f"{where}: only `X | None` unions are supported, got {len(non_null)} alternatives")
        nullable = len(non_null) != len(branches)
        inner = _convert(non_null[0], defs, where, stack)
        if node.get("default", ...) is None:
            del node["default"]
        node = {**inner, **{key: value for key, value in node.items() if key not in _DROPPED}}

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in _PASSTHROUGH or key in ("type", "nullable", "required", "enum"):
            out[key] = copy.deepcopy(value)
        elif key == "const":
            out["enum"] = [copy.deepcopy(value)]
        elif key == "default":
            # null: "no default". "": the model supplies it anyway, and the type check of kube-apiserver 1.20 built
            # with a current Go (our envtest) mistakes "" for null, so that API server would reject the CRD.
            if value is not None and value != "":
                out["default"] = copy.deepcopy(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020-12 carries the bound; OpenAPI v3.0 (Kubernetes) a flag next to minimum/maximum.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "items":
            out["items"] = _convert(value, defs, f"{where}[]", stack)
        elif key == "properties":
            out["properties"] = {name: _convert(child, defs, f"{where}.{name}", stack) for name, child in value.items()}
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out["additionalProperties"] = _convert(value, defs, f"{where}.*", stack)
            elif value is not True:
                raise SchemaError(f"{where}: additionalProperties {value!r} is not supported")
        elif key == _PRESERVE:
            out[_PRESERVE] = bool(value)
        elif key == _VALIDATIONS:
            out[_VALIDATIONS] = _validations(value, where)
        elif key == "uniqueItems":
            raise SchemaError(f"{where}: uniqueItems is forbidden; use x-kubernetes-list-type: set")
        else:
            raise SchemaError(f"{where}: unsupported JSON-schema keyword {key!r}")

    if "enum" in out and "type" not in out:
        types = {_json_type(value, where) for value in out["enum"]}
        if len(types) != 1:
            raise SchemaError(f"{where}: enum mixes types {sorted(types)}")
        out["type"] = types.pop()

    is_open_object = (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
        and node.get("additionalProperties", True) is True
    )
    if out.get(_PRESERVE) or is_open_object:
        # dict[str, Any] or an explicitly opaque field: keep whatever the client sends. Properties it names
        # explicitly (the shape of jobTemplate.spec) are checked; everything else is kept as written.
        out.pop("additionalProperties", None)
        out["type"] = "object"
        out[_PRESERVE] = True
    else:
        out.pop(_PRESERVE, None)

    if "properties" in out:
        out.pop("additionalProperties", None)
        out.setdefault("type", "object")
    if "type" not in out:
        raise SchemaError(f"{where}: no type could be derived")
    if isinstance(out["type"], list):
        raise SchemaError(f"{where}: multi-type {out['type']!r} is not supported")

    if nullable and "enum" not in out:
        out["nullable"] = True
    elif "enum" in out:
        # See the module docstring: the API server rejects null against an enum even when nullable.
        out.pop("nullable", None)
    if not out.get("required"):
        out.pop("required", None)
    return _ordered(out)


_RULE_KEYS = frozenset({"rule", "message", "messageExpression", "fieldPath", "reason", "optionalOldSelf"})
_REASONS = frozenset({"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"})


def _validations(value: Any, where: str) -> list[dict[str, Any]]:
    """``x-kubernetes-validations`` (CEL rules), checked for the shape the API server accepts."""
    if not isinstance(value, list) or not value:
        raise SchemaError(f"{where}: x-kubernetes-validations must be a non-empty list")
    rules: list[dict[str, Any]] = []
    for rule in value:
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str) or not rule["rule"].strip():
            raise SchemaError(f"{where}: a CEL rule needs a non-empty 'rule'")
        if unknown := set(rule) - _RULE_KEYS:
            raise SchemaError(f"{where}: unknown keys {sorted(unknown)} in a CEL rule")
        if not rule.get("message") and not rule.get("messageExpression"):
            raise SchemaError(f"{where}: CEL rule {rule['rule']!r} has no message")
        if "reason" in rule and rule["reason"] not in _REASONS:
            raise SchemaError(f"{where}: reason {rule['reason']!r} is not one of {sorted(_REASONS)}")
        if "fieldPath" in rule and not str(rule["fieldPath"]).startswith("."):
            raise SchemaError(f"{where}: fieldPath {rule['fieldPath']!r} must start with '.'")
        ordered = {
            key: rule[key] for key in ("rule", "message", "messageExpression", "fieldPath", "reason") if key in rule
        }
        rules.append(copy.deepcopy({**ordered, **rule}))
    return rules


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Any pydantic model as a Kubernetes structural schema (wire names, i.e. aliases).

    ``mode="validation"`` describes what the model accepts, which is what the API server should accept; for
    these models it equals the serialization schema (no computed fields, no serializers changing types).

    :raises SchemaError: the model uses a construct a structural schema cannot express.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = raw.get("$defs", {})
    return _convert(raw, defs, model.__name__, ())


def openapi_schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the ``JobTrigger`` kind, derived from :class:`JobTrigger`."""
    schema = structural_schema(JobTrigger)

    properties: dict[str, Any] = schema["properties"]
    for name in ("apiVersion", "kind"):
        properties[name] = {"type": "string"}
    # the one constraint a CRD may put on metadata (besides generateName): the name is a label value on every Job
    properties["metadata"] = {
        "type": "object",
        "properties": {"name": {"description": _NAME_DESCRIPTION, "type": "string", "maxLength": MAX_NAME}},
    }
    status = properties.get("status")
    if not isinstance(status, dict) or status.get("type") != "object" or "properties" not in status:
        raise SchemaError("JobTrigger.status must be an object schema")
    status.pop("nullable", None)
    if "spec" not in schema.get("required", []):
        raise SchemaError("JobTrigger.spec must be required")
    schema.setdefault("description", _TOP_DESCRIPTION)
    return _ordered(schema)


def _printer_columns() -> list[dict[str, Any]]:
    return [
        {
            "name": "Triggers",
            "type": "string",
            "jsonPath": ".status.triggers",
            "description": "The configured triggers.",
        },
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "description": "Whether the spec is valid and its watches run.",
        },
        {
            "name": "Last Job",
            "type": "string",
            "jsonPath": ".status.lastJobName",
            "description": "Newest Job.",
        },
        {
            "name": "Last Status",
            "type": "string",
            "jsonPath": ".status.lastJobStatus",
            "description": "State of the newest Job.",
        },
        {
            "name": "Active",
            "type": "string",
            "jsonPath": ".status.active[*].name",
            "description": "Jobs still running.",
            "priority": 1,
        },
        {
            "name": "Last Triggered",
            "type": "date",
            "jsonPath": ".status.lastTriggeredTime",
            "description": "When a Job was last started.",
        },
        {
            "name": "Next Run",
            "type": "string",  # a "date" column prints a future time as <invalid>
            "jsonPath": ".status.nextScheduleTime",
            "description": "When the schedule runs next.",
        },
        {
            "name": "Pending",
            "type": "string",
            "priority": 1,
            "jsonPath": ".status.pending",
            "description": "A change seen but not yet run, and why it waits.",
        },
        {
            "name": "Shard",
            "type": "string",
            "jsonPath": ".status.shard",
            "description": "With sharding: the replica that works on it.",
            "priority": 1,
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd() -> dict[str, Any]:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of ``jobtriggers.jobtrigger.dev``."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/name": "jobtrigger"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["jobtrigger"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """:func:`crd` as YAML with a do-not-edit header (``crds/jobtrigger.dev_jobtriggers.yaml``)."""
    body = yaml.safe_dump(crd(), sort_keys=False, default_flow_style=False, allow_unicode=True, width=110)
    return HEADER + body
