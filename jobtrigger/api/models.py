"""The JobTrigger API (``jobtrigger.dev/v1alpha1``) as pydantic models.

These models are the single source of truth: ``jobtrigger.api.crd`` turns them into the CRD's OpenAPI schema
(``crds/jobtrigger.dev_jobtriggers.yaml``), the controller parses objects with them, and ``docs/api.md`` documents
them. Constraints that a structural schema can express (enums, minimums, patterns) live here as ``Field`` arguments
and therefore in the CRD; checks that need code (JMESPath syntax, cron syntax, name XOR selector, kinds known to the
cluster) are in :func:`jobtrigger.api.validation.validate_spec`, whose errors name the field.

Field names are camelCase on the wire (aliases), snake_case in Python.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from jobtrigger.api.cel import (
    CEL,
    DEFAULT_KEEP_VERSIONS,
    MAX_DURATION_GO,
    MAX_EXPRESSIONS,
    MAX_WATCH,
    cel,
)

GROUP = "jobtrigger.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "JobTrigger"
PLURAL = "jobtriggers"
SINGULAR = "jobtrigger"
SHORT_NAMES = ["jt"]

#: Go-style duration: ``90s``, ``5m``, ``1h30m``, ``0s``.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: `v1`, `apps/v1`, `example.com/v1beta2`: a DNS subdomain group and a version (no path segments)
API_VERSION_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$"
)
KIND_PATTERN = r"^[A-Z][A-Za-z0-9]*$"


class Model(BaseModel):
    """Base: camelCase aliases, unknown fields ignored (the API server prunes them anyway).

    A subclass adds CEL rules with ``model_config = ConfigDict(json_schema_extra={CEL: [cel(...)]})``.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# --------------------------------------------------------------------------------------------- selectors


class LabelSelectorRequirement(Model):
    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
                    "operator In/NotIn needs at least one value",
                    ".values",
                    "FieldValueRequired",
                ),
                cel(
                    "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
                    "operator Exists/DoesNotExist takes no values",
                    ".values",
                    "FieldValueForbidden",
                ),
            ]
        }
    )

    key: str = Field(description="The label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="How the key relates to the values.")
    values: list[str] | None = Field(
        default=None, description="Values for In/NotIn; must be empty for Exists/DoesNotExist."
    )


class LabelSelector(Model):
    """A standard Kubernetes label selector; all requirements must match (AND)."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    "(has(self.matchLabels) && size(self.matchLabels) > 0)"
                    " || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
                    "an empty selector would match every object; name the labels to match",
                    reason="FieldValueRequired",
                )
            ]
        }
    )

    match_labels: dict[str, str] | None = Field(default=None, description="Labels that must be equal.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=MAX_EXPRESSIONS, description="Set-based requirements."
    )


# --------------------------------------------------------------------------------------------- triggers


class Mount(Model):
    """Mount the watched Secret/ConfigMap into every container of the Job (cert-watch style)."""

    volume_name: str = Field(
        default="certs", pattern=DNS_LABEL_PATTERN, max_length=63, description="Name of the added volume."
    )
    mount_path: str = Field(
        default="/workspace", min_length=1, description="Where the volume is mounted in every container."
    )
    read_only: bool = Field(default=True, description="Mount read-only.")


class WatchedResource(Model):
    """One object (by ``name``) or a set of objects (by ``selector``) of any apiVersion/kind."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel("has(self.name) != has(self.selector)", "set exactly one of name and selector"),
                cel(
                    "!has(self.mount) || (self.apiVersion == 'v1' && self.kind in ['Secret', 'ConfigMap'])",
                    "only a v1 Secret or ConfigMap can be mounted",
                    ".mount",
                    "FieldValueForbidden",
                ),
                cel("!has(self.mount) || has(self.name)", "mount needs a watched object by name", ".mount"),
            ]
        }
    )

    api_version: str = Field(
        min_length=1,
        pattern=API_VERSION_PATTERN,
        description="apiVersion of the watched kind, e.g. `v1`, `apps/v1`.",
    )
    kind: str = Field(
        min_length=1, pattern=KIND_PATTERN, description="Kind, e.g. `ConfigMap`, `Deployment`, `Node`, a CRD's kind."
    )
    name: str | None = Field(default=None, description="Object name. Exactly one of `name`/`selector`.")
    selector: LabelSelector | None = Field(
        default=None, description="Label selector. Exactly one of `name`/`selector`."
    )
    namespace: str | None = Field(
        default=None,
        description="Namespace of a namespaced kind; defaults to the JobTrigger's namespace. "
        "Must be empty for cluster-scoped kinds.",
    )
    fields: list[str] | None = Field(
        default=None,
        description="JMESPath expressions; only these parts of the object count as a change. Omitted or "
        '`["*"]`: the whole object except metadata noise (resourceVersion, managedFields, status, ...).',
    )
    mount: Mount | None = Field(
        default=None, description="Secret/ConfigMap only: mount the object into every container of the Job."
    )


class ResourceTrigger(Model):
    """Run a Job when watched objects change (kube-changejob, cert-watch)."""

    watch: list[WatchedResource] = Field(min_length=1, max_length=MAX_WATCH, description="The objects to watch.")
    condition: Literal["Any", "All"] = Field(
        default="Any",
        description="`Any`: a change of any watched resource runs the Job. `All`: every listed resource "
        "must have changed since the last run.",
    )
    cooldown: str = Field(
        default="60s",
        pattern=DURATION_PATTERN,
        max_length=64,
        json_schema_extra={
            CEL: [
                cel(
                    # guarded by the pattern: a value the pattern refuses gets that error alone, not a conversion error
                    f"!self.matches(r'{DURATION_PATTERN}') || duration(self) <= duration('{MAX_DURATION_GO}')",
                    f"duration is longer than the maximum of {MAX_DURATION_GO}",
                )
            ]
        },
        description="Minimum time between two runs. A change inside the window is deferred to its end, never dropped.",
    )


PodState = Literal[
    "Created",
    "Ready",
    "NotReady",
    "Deleted",
    "Succeeded",
    "Failed",
    "OOMKilled",
    "CrashLoopBackOff",
    "Restarted",
]


class PodTrigger(Model):
    """Run one Job per pod and state transition (cf-operator ExtendedJob)."""

    selector: LabelSelector = Field(description="Pods to watch; evaluated server-side.")
    namespace: str | None = Field(default=None, description="Defaults to the JobTrigger's namespace.")
    when: list[PodState] = Field(min_length=1, description="Transitions that run a Job.")
    include_existing: bool = Field(
        default=False,
        description="Also run for pods already in a `when` state when the JobTrigger is created.",
    )


class ScheduleTrigger(Model):
    """Run on a cron schedule or once (PlanescapeJob, CronJob)."""

    cron: str = Field(
        min_length=1,
        description="Cron expression (5 fields, or 6 with a trailing seconds field), an alias "
        "(`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`) or `@once`.",
    )
    time_zone: str | None = Field(default=None, description="IANA time zone, e.g. `Europe/Berlin`. Default UTC.")
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        le=31_622_400,
        description="A missed run later than this many seconds is skipped and counted.",
    )


class ManualTrigger(Model):
    """Errand runs on demand.

    The GitOps-safe way is the annotation ``jobtrigger.dev/run-requested: <token>`` (each new token runs once);
    it works on every JobTrigger. ``strategy`` is the ExtendedJob/QuarksJob errand flow: set it to ``now`` and the
    controller runs the Job and resets it to ``manual``.
    """

    strategy: Literal["manual", "now"] = Field(
        default="manual", description="`now` runs once, then the controller sets it back to `manual`."
    )


class Triggers(Model):
    """When to run. Several trigger types may be combined; each occurrence of any of them runs the Job."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    "has(self.resources) || has(self.pods) || has(self.schedule) || has(self.manual)",
                    "set at least one of resources, pods, schedule, manual",
                    reason="FieldValueRequired",
                )
            ]
        }
    )

    resources: ResourceTrigger | None = Field(default=None, description="Resource-change trigger.")
    pods: PodTrigger | None = Field(default=None, description="Pod-state trigger.")
    schedule: ScheduleTrigger | None = Field(default=None, description="Cron or `@once` schedule.")
    manual: ManualTrigger | None = Field(default=None, description="Errand (run on demand).")


# --------------------------------------------------------------------------------------------- output


class OutputSpec(Model):
    """Persist what the Job produced into a Secret or ConfigMap (ExtendedJob, QuarksJob)."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                cel(
                    f"(has(self.versioned) && self.versioned) || !has(self.keepVersions)"
                    f" || self.keepVersions == {DEFAULT_KEEP_VERSIONS}",
                    "keepVersions applies to versioned outputs only: set versioned: true or remove keepVersions",
                    ".keepVersions",
                    "FieldValueForbidden",
                )
            ]
        }
    )

    source: Literal["TerminationMessage", "Logs", "Files"] = Field(
        default="TerminationMessage",
        description="`TerminationMessage`: each container's termination message; `Logs`: container logs; "
        "`Files`: JSON files the Job writes to its output folder.",
    )
    kind: Literal["Secret", "ConfigMap"] = Field(default="Secret", description="Kind of the target object.")
    name: str = Field(min_length=1, max_length=200, description="Target name; `<name>-<container>` per container.")
    output_map: dict[str, dict[str, str]] | None = Field(
        default=None, description="Files source: container -> file -> target object name."
    )
    labels: dict[str, str] | None = Field(default=None, description="Labels set on every target object.")
    overwrite: bool = Field(default=True, description="Replace the previous output.")
    write_on_failure: bool = Field(default=False, description="Also persist output of failed Jobs.")
    versioned: bool = Field(default=False, description="Write immutable `<name>-v<N>` objects instead of overwriting.")
    keep_versions: int = Field(
        default=DEFAULT_KEEP_VERSIONS, ge=1, description="Versioned: how many versions are kept."
    )
    max_bytes: int = Field(
        default=512 * 1024, ge=1, le=1024 * 1024, description="Larger output is refused with a status error."
    )


# --------------------------------------------------------------------------------------------- the Job


class JobTemplateMetadata(Model):
    labels: dict[str, str] | None = Field(default=None, description="Labels added to every Job.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations added to every Job.")


def _open_object(description: str, **schema: Any) -> dict[str, Any]:
    return {"description": description, "type": "object", "x-kubernetes-preserve-unknown-fields": True, **schema}


#: What the CRD says about ``jobTemplate.spec`` beyond "an object": the shape the controller relies on (a pod
#: template object with a pod spec object holding a non-empty list of named containers), never the whole PodSpec.
#: Everything else is kept as written and checked by the API server's dry run of the Job.
JOB_SPEC_SCHEMA: dict[str, Any] = {
    "x-kubernetes-preserve-unknown-fields": True,
    "required": ["template"],
    "properties": {
        "template": _open_object(
            "The pod template (metadata and spec) of the Job.",
            required=["spec"],
            properties={
                "metadata": _open_object("Pod labels and annotations; jobtrigger adds jobtrigger.dev/owner."),
                "spec": _open_object(
                    "A core/v1 PodSpec.",
                    required=["containers"],
                    properties={
                        "containers": {
                            "description": "The containers of the pod; at least one, each with a name.",
                            "type": "array",
                            "minItems": 1,
                            "items": _open_object(
                                "A core/v1 Container.",
                                required=["name"],
                                properties={"name": {"description": "Container name.", "type": "string"}},
                            ),
                        }
                    },
                ),
            },
        )
    },
}


class JobTemplate(Model):
    """A ``batch/v1`` Job template, as in a CronJob. ``spec`` is passed through untouched (pod template
    metadata included) apart from the trigger context jobtrigger adds."""

    metadata: JobTemplateMetadata | None = Field(default=None, description="Labels and annotations of the Job.")
    spec: dict[str, Any] = Field(
        json_schema_extra=JOB_SPEC_SCHEMA,
        description="A batch/v1 JobSpec. Validated by the API server (dry run) when the JobTrigger changes.",
    )


class JobTriggerSpec(Model):
    triggers: Triggers = Field(description="When to run.")
    job_template: JobTemplate = Field(description="What to run.")
    suspend: bool = Field(default=False, description="Stop creating Jobs; changes seen meanwhile are kept.")
    concurrency_policy: Literal["Allow", "Forbid", "Replace", "Queue"] = Field(
        default="Allow",
        description="What to do when a run is due while one is active: `Allow` runs both, `Forbid` skips "
        "the new one, `Replace` deletes the active one, `Queue` runs exactly one more after it finishes.",
    )
    history: int | None = Field(
        default=None,
        ge=1,
        description="kube-changejob style: how many Jobs to keep (both successful and failed) unless the "
        "specific limits below are set. Default 5.",
    )
    successful_jobs_history_limit: int | None = Field(
        default=None, ge=0, description="Successful Jobs kept; 0 deletes a Job once it succeeded."
    )
    failed_jobs_history_limit: int | None = Field(default=None, ge=0, description="Failed Jobs kept.")
    rerun_on_config_change: bool = Field(
        default=False,
        description="Run again when a ConfigMap/Secret referenced by the Job template changes.",
    )
    output: OutputSpec | None = Field(default=None, description="Persist the Job's output.")


# --------------------------------------------------------------------------------------------- status


class Condition(Model):
    type: str = Field(description="`Ready`.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="Human-readable detail; names the offending field.")
    last_transition_time: str | None = Field(default=None, description="RFC 3339.")
    observed_generation: int | None = None


class FieldHash(Model):
    path: str = Field(description="The JMESPath expression (or `*`).")
    hash: str = Field(description="Hash of the value at the last run.")


class ResourceHash(Model):
    """What an object looked like when the last Job ran (the baseline a change is measured against)."""

    api_version: str
    kind: str
    namespace: str | None = None
    name: str
    watch: list[int] = Field(description="Indexes of the `spec.triggers.resources.watch` entries it matched.")
    fields: list[FieldHash]


class JobRef(Model):
    name: str
    uid: str | None = None


class SkippedRun(Model):
    time: str
    reason: str


class JobTriggerStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    triggers: str | None = Field(default=None, description="Summary of the configured triggers (printer column).")
    shard: str | None = Field(
        default=None, description="With sharding (--shards): the replica that works on this JobTrigger."
    )
    last_triggered_time: str | None = None
    last_resource_trigger_time: str | None = Field(
        default=None, description="When the resource trigger last ran a Job (cooldown start)."
    )
    last_trigger_reason: str | None = Field(default=None, description="Why the last Job ran.")
    last_job_name: str | None = None
    last_job_status: Literal["Active", "Succeeded", "Failed"] | None = None
    active: list[JobRef] | None = None
    resource_runs: int | None = Field(
        default=None, description="Jobs started by the resource trigger so far; part of their names."
    )
    resource_spec_hash: str | None = Field(
        default=None, description="Hash of spec.triggers.resources the baseline was taken for."
    )
    resource_hashes: list[ResourceHash] | None = None
    config_spec_hash: str | None = Field(default=None, description="rerunOnConfigChange: the references hashed.")
    config_hashes: list[ResourceHash] | None = Field(
        default=None,
        description="rerunOnConfigChange: data hashes of the referenced ConfigMaps/Secrets at the last run.",
    )
    config_runs: int | None = Field(default=None, description="Jobs started because referenced config changed.")
    pending: str | None = Field(default=None, description="A change seen but not yet run, and why it waits.")
    last_schedule_time: str | None = Field(default=None, description="The last slot run (or skipped as too late).")
    next_schedule_time: str | None = Field(default=None, description="When the schedule runs next.")
    missed_schedules: int | None = Field(
        default=None, description="Slots that never ran: older ones after downtime, or past the starting deadline."
    )
    last_run_request: str | None = Field(default=None, description="Last manual request token served.")
    last_output_error: str | None = Field(default=None, description="Why the last Job's output was not written.")
    pod_watermark: str | None = Field(
        default=None, description="Pod trigger: every transition seen before this time has run."
    )
    pod_uids: list[str] | None = Field(
        default=None,
        alias="podUIDs",
        description="Pod trigger with Deleted: pods known at the watermark (deletions while down).",
    )
    hash_key_id: str | None = Field(
        default=None,
        alias="hashKeyID",
        description="Id of the key the field hashes in resourceHashes/configHashes are keyed with (absent: unkeyed).",
    )
    pod_handled: list[str] | None = Field(
        default=None,
        description="Pod trigger: occurrences already run or skipped that a restart could still see (never rerun).",
    )
    last_skipped: SkippedRun | None = Field(
        default=None, description="The last run skipped by concurrencyPolicy Forbid, and why."
    )


class JobTrigger(Model):
    api_version: Literal["jobtrigger.dev/v1alpha1"] = "jobtrigger.dev/v1alpha1"
    kind: Literal["JobTrigger"] = "JobTrigger"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: JobTriggerSpec
    status: JobTriggerStatus | None = None
