"""Persist what a Job produced into Secrets or ConfigMaps (``spec.output``). No I/O.

Replaces cf-operator ExtendedJob "persisted output" and QuarksJob output / versioned secrets, without their
sidecar: the QuarksJob sidecar waited for output files and could keep a Job running forever. Here the data travels
in each container's *termination message*, which the kubelet copies into the pod status
(``status.containerStatuses[].state.terminated.message``), readable through the API and never blocking. The price
is size: the kubelet keeps the *last* 4096 bytes a container wrote, then the *first* 12 KiB / (containers + init
containers) of that (:func:`message_budget`); a cut JSON document is reported as invalid JSON. Larger output needs
``source: Logs``.

The controller calls, in this order:

1. :func:`prepare_pod_spec` on the Job's pod template (termination message path, policy, env var);
2. when the Job finished: :func:`log_requests` (source ``Logs`` only) to know which logs to read, then
   :func:`collect` with the Job's pods and those logs;
3. per collected target: list the target's existing objects with :func:`label_selector`, then :func:`plan`, and
   apply the actions in order, stopping at the first failure (so old versions are deleted only after the new one
   exists). Objects are only ever found by that label: an unlabelled object of the same name is never replaced
   (its ``create`` fails with AlreadyExists, which the caller reports).

Data model (what ``output.name`` = ``N`` becomes):

* ``TerminationMessage`` / ``Logs``: one object ``N``, one data key per terminated container (the container
  name), the value is the container's message / log, verbatim. ``outputMap`` (container -> data key -> target)
  instead routes each listed container to the given keys and objects; unlisted containers are ignored.
* ``Files``: every container may write a JSON object ``{"<file>": <object or JSON text of an object>, ...}`` to
  ``$JOBTRIGGER_OUTPUT_FILE`` (``/var/run/jobtrigger/output.json``, its termination message path). Each file
  becomes one object whose data keys are the file's top-level keys; values that are not strings are stored
  JSON-encoded (QuarksJob ``outputType: json``). The object is ``N-<container>-<file without .json>``, or what
  ``outputMap`` (container -> file -> target, QuarksJob style) names; with ``outputMap`` only listed files count.
* Several contributions to one object are merged; a data key written twice with different values is an error.
* Any error touching a target (missing container or file, invalid JSON, invalid name or key, over ``maxBytes``)
  drops that whole target: half an output must not replace a complete one.
* Every written object: label ``jobtrigger.dev/output-of=<target>``, ``output.labels``, the annotations
  ``jobtrigger.dev/output-hash`` (sha256 of the data, decides "identical") and ``jobtrigger.dev/output-source``
  (JSON: job, jobTrigger, source), and the JobTrigger as owner, so outputs are garbage collected with it.
* ``versioned``: immutable ``<target>-v<N>`` objects, ``N`` = highest existing version + 1, labelled
  ``jobtrigger.dev/output-version=<N>``; identical output is not re-versioned; versions beyond ``keepVersions`` are
  deleted oldest first. ``overwrite`` only concerns unversioned targets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from jobtrigger.api.models import OutputSpec

LABEL_OUTPUT_OF = "jobtrigger.dev/output-of"
LABEL_OUTPUT_VERSION = "jobtrigger.dev/output-version"
ANNOTATION_OUTPUT_SOURCE = "jobtrigger.dev/output-source"
ANNOTATION_OUTPUT_HASH = "jobtrigger.dev/output-hash"
ENV_OUTPUT_FILE = "JOBTRIGGER_OUTPUT_FILE"
OUTPUT_FILE = "/var/run/jobtrigger/output.json"
MAX_CONTAINER_MESSAGE = 4 * 1024  # kubelet MaxContainerTerminationMessageLength
MAX_POD_MESSAGE = 12 * 1024  # kubelet MaxPodTerminationMessageLogLength, split evenly over all containers
MAX_NAME = 253
VERSION_SUFFIX_RESERVE = 11  # "-v" + up to 9 digits
MAX_LABEL_VALUE = 63

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

Verb = Literal["create", "replace", "delete", "skip"]


@dataclass(frozen=True)
class Collected:
    """What one finished Job produced: target object name -> data, plus what could not be persisted."""

    targets: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    pod: str | None = None  # the pod the output was taken from


@dataclass(frozen=True)
class Action:
    """One API call for the caller to make; ``body`` is the full object for create/replace."""

    verb: Verb
    name: str
    body: dict[str, Any] | None
    reason: str
    error: bool = False  # a skip the caller should report as a problem (Warning event / status)


# --------------------------------------------------------------------------------------------- the pod template


def prepare_pod_spec(pod_spec: dict[str, Any], output: OutputSpec) -> None:
    """Make every container deliver its output through its termination message (mutates ``pod_spec``).

    ``terminationMessagePolicy: File`` for all sources but ``Logs``: ``FallbackToLogsOnError`` would turn the log
    tail of a failed container into its "output". ``Files`` also gets the fixed path and ``$JOBTRIGGER_OUTPUT_FILE``
    so scripts need not know it. Init containers are setup steps and are left alone.
    """
    if output.source == "Logs":
        return
    for container in pod_spec.get("containers") or []:
        container["terminationMessagePolicy"] = "File"
        if output.source == "Files":
            container["terminationMessagePath"] = OUTPUT_FILE
            env = [e for e in container.get("env") or [] if e.get("name") != ENV_OUTPUT_FILE]
            container["env"] = [*env, {"name": ENV_OUTPUT_FILE, "value": OUTPUT_FILE}]


def message_budget(pod_spec: dict[str, Any]) -> int:
    """Bytes of termination message per container that reach the pod status."""
    n = len(pod_spec.get("containers") or []) + len(pod_spec.get("initContainers") or [])
    return min(MAX_CONTAINER_MESSAGE, MAX_POD_MESSAGE // n) if n else MAX_CONTAINER_MESSAGE


# --------------------------------------------------------------------------------------------- collecting


def _timestamp(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return -math.inf
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return -math.inf


def terminated(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Container name -> ``state.terminated`` of the containers whose *current* state is terminated."""
    out: dict[str, dict[str, Any]] = {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (status.get("state") or {}).get("terminated")
        if isinstance(term, dict) and status.get("name"):
            out[status["name"]] = term
    return out


def newest_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod whose containers terminated last (a Job with retries leaves several); None if none terminated."""
    best: dict[str, Any] | None = None
    best_key: tuple[float, float, str] | None = None
    for pod in pods:
        term = terminated(pod)
        if not term:
            continue
        meta = pod.get("metadata") or {}
        key = (
            max(_timestamp(t.get("finishedAt")) for t in term.values()),
            _timestamp(meta.get("creationTimestamp")),
            str(meta.get("name", "")),
        )
        if best_key is None or key > best_key:
            best, best_key = pod, key
    return best


def log_requests(output: OutputSpec, pods: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(pod, container)`` pairs whose logs :func:`collect` needs; empty unless ``source: Logs``.

    Read them with ``limitBytes = maxBytes + 1``: longer logs are refused anyway.
    """
    pod = newest_pod(pods) if output.source == "Logs" else None
    if pod is None:
        return []
    name = str((pod.get("metadata") or {}).get("name", ""))
    return [(name, c) for c in terminated(pod) if output.output_map is None or c in output.output_map]


class _Targets:
    """Accumulates target data; a target with any error is dropped, whatever else contributed to it."""

    def __init__(self, output: OutputSpec) -> None:
        self.output = output
        self.data: dict[str, dict[str, str]] = {}
        self.errors: list[str] = []
        self.poisoned: set[str] = set()

    def fail(self, message: str, *targets: str) -> None:
        self.errors.append(message)
        self.poisoned.update(targets)

    def touch(self, target: str, origin: str) -> dict[str, str] | None:
        """The target's data so far (created empty); None if the name is unusable."""
        if (problem := name_problem(target, versioned=self.output.versioned)) is not None:
            self.fail(f"{origin}: target {target!r} {problem}", target)
            return None
        return self.data.setdefault(target, {})

    def add(self, target: str, key: str, value: str, origin: str) -> None:
        if (data := self.touch(target, origin)) is None:
            return
        if not _DATA_KEY.fullmatch(key) or len(key) > MAX_NAME:
            self.fail(f"{origin}: {key!r} is not a valid data key (letters, digits, '-', '_', '.')", target)
            return
        if key in data and data[key] != value:
            self.fail(f"{origin}: data key {key!r} of {target!r} is written twice with different values", target)
            return
        data[key] = value

    def result(self, pod: str | None) -> Collected:
        targets: dict[str, dict[str, str]] = {}
        for target, data in self.data.items():
            if target in self.poisoned:
                continue
            if (size := data_size(data)) > self.output.max_bytes:
                self.errors.append(f"output for {target!r} is {size} bytes > maxBytes {self.output.max_bytes}")
                continue
            targets[target] = data
        return Collected(targets=targets, errors=self.errors, pod=pod)


def collect(
    output: OutputSpec, pods: list[dict[str, Any]], logs: dict[tuple[str, str], str] | None = None
) -> Collected:
    """The output of a finished Job from its pods (as the API returns them) and, for ``Logs``, the logs read
    for :func:`log_requests` (keyed ``(pod, container)``). Only the newest terminated pod counts, and in it only
    containers whose current state is terminated."""
    acc = _Targets(output)
    pod = newest_pod(pods)
    if pod is None:
        acc.fail("no pod of the Job has a terminated container")
        return acc.result(None)
    pod_name = str((pod.get("metadata") or {}).get("name", ""))
    term = terminated(pod)

    raw: dict[str, str] = {}  # container -> its output, for the containers that count
    wanted = list(term) if output.output_map is None else list(output.output_map)
    for c in wanted:
        targets = _mapped_targets(output, c)
        if c not in term:
            acc.fail(f"container {c!r} (outputMap) has not terminated in pod {pod_name}", *targets)
        elif output.source == "Logs":
            text = (logs or {}).get((pod_name, c))
            if text is None:
                acc.fail(f"no logs of container {c!r} in pod {pod_name}", *targets)
            else:
                raw[c] = text
        else:
            raw[c] = str(term[c].get("message") or "")
        if c in raw and (size := len(raw[c].encode())) > output.max_bytes:
            acc.fail(f"output of container {c!r} is {size} bytes > maxBytes {output.max_bytes}", *targets)
            del raw[c]

    if output.source == "Files":
        budget = message_budget(pod.get("spec") or {})
        for c, message in raw.items():
            _collect_files(acc, output, c, message, budget)
    else:
        for c, text in raw.items():
            if output.output_map is None:
                acc.add(output.name, c, text, f"container {c!r}")
            else:
                for key, target in output.output_map[c].items():
                    acc.add(target, key, text, f"container {c!r}")
    return acc.result(pod_name)


def _mapped_targets(output: OutputSpec, container: str) -> list[str]:
    """The targets a container's output goes to, as far as known before parsing it."""
    if output.output_map is not None:
        return list(output.output_map.get(container, {}).values())
    return [] if output.source == "Files" else [output.name]


def _collect_files(acc: _Targets, output: OutputSpec, c: str, message: str, budget: int) -> None:
    mapped = _mapped_targets(output, c)
    if not message.strip():
        if output.output_map is not None:  # without a map, a container that wrote nothing is fine (sidecars)
            acc.fail(f"container {c!r} wrote no output to ${ENV_OUTPUT_FILE}", *mapped)
        return
    try:
        files = json.loads(message)
    except ValueError as e:
        hint = ""
        if len(message.encode()) >= budget:
            hint = f" (it is {len(message.encode())} bytes: probably cut at the kubelet's limit of {budget})"
        acc.fail(f"container {c!r}: output is not valid JSON: {e}{hint}", *mapped)
        return
    if not isinstance(files, dict):
        acc.fail(f"container {c!r}: output must be a JSON object of files, got {type(files).__name__}", *mapped)
        return
    if output.output_map is not None:
        wanted = output.output_map[c]
    else:
        wanted = {f: _default_target(output, c, f) for f in files}
    for file, target in wanted.items():
        origin = f"container {c!r} file {file!r}"
        if file not in files:
            acc.fail(f"{origin}: missing from the output", target)
            continue
        content = files[file]
        if isinstance(content, str):
            try:
                content = json.loads(content)
            except ValueError as e:
                acc.fail(f"{origin}: not valid JSON: {e}", target)
                continue
        if not isinstance(content, dict):
            acc.fail(f"{origin}: must be a JSON object, got {type(content).__name__}", target)
            continue
        if acc.touch(target, origin) is None:  # an empty file still makes an (empty) object
            continue
        for key, value in content.items():
            acc.add(target, key, value if isinstance(value, str) else _json(value), origin)


def _default_target(output: OutputSpec, container: str, file: str) -> str:
    return f"{output.name}-{container}-{file.removesuffix('.json')}"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def name_problem(name: str, *, versioned: bool) -> str | None:
    """Why ``name`` cannot be a target (DNS subdomain, room for ``-v<N>``), or None."""
    limit = MAX_NAME - VERSION_SUFFIX_RESERVE if versioned else MAX_NAME
    if len(name) > limit:
        return f"is longer than {limit} characters"
    if not _DNS_SUBDOMAIN.fullmatch(name):
        return "is not a valid object name (lowercase letters, digits, '-', '.'; use outputMap to rename)"
    return None


# --------------------------------------------------------------------------------------------- writing


def data_size(data: dict[str, str]) -> int:
    """Bytes of keys and values (what counts against ``maxBytes``; the API limit is on decoded data)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


def output_hash(data: dict[str, str]) -> str:
    """sha256 of the data in canonical form: same data, same hash, whatever the key order."""
    return hashlib.sha256(_json(data).encode()).hexdigest()


def label_value(target: str) -> str:
    """The ``output-of`` label value: the target, or a stable shortened form when it exceeds 63 characters."""
    if len(target) <= MAX_LABEL_VALUE:
        return target
    digest = hashlib.sha256(target.encode()).hexdigest()[:10]
    return f"{target[: MAX_LABEL_VALUE - 11].rstrip('-.')}-{digest}"


def label_selector(target: str) -> str:
    """Selects the objects :func:`plan` needs as ``existing`` for ``target`` (metadata-only lists suffice)."""
    return f"{LABEL_OUTPUT_OF}={label_value(target)}"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def version_of(obj: dict[str, Any]) -> int | None:
    """The ``output-version`` label as a number; None for an unversioned (or foreign) object."""
    value = (_meta(obj).get("labels") or {}).get(LABEL_OUTPUT_VERSION)
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None


def newest_version(existing: list[dict[str, Any]]) -> str | None:
    """Name of the highest version among ``existing`` (what a Job referencing the versioned output gets)."""
    versions = [(v, str(_meta(o).get("name", ""))) for o in existing if (v := version_of(o)) is not None]
    return max(versions)[1] if versions else None


def plan(
    output: OutputSpec,
    *,
    target: str,
    data: dict[str, str],
    existing: list[dict[str, Any]],
    owner_ref: dict[str, Any],
    job_name: str,
    trigger_name: str,
    succeeded: bool,
) -> list[Action]:
    """The API calls that persist ``data`` as ``target``; ``existing`` are the objects :func:`label_selector`
    finds. Apply in order and stop at the first failure."""
    if not succeeded and not output.write_on_failure:
        return [Action("skip", target, None, "the Job failed and writeOnFailure is false")]
    if (size := data_size(data)) > output.max_bytes:
        return [Action("skip", target, None, f"output is {size} bytes > maxBytes {output.max_bytes}", error=True)]
    digest = output_hash(data)
    source = json.dumps({"job": job_name, "jobTrigger": trigger_name, "source": output.source}, separators=(",", ":"))

    def body(name: str, version: int | None, resource_version: str | None = None) -> dict[str, Any]:
        labels = {**(output.labels or {}), LABEL_OUTPUT_OF: label_value(target)}
        if version is not None:
            labels[LABEL_OUTPUT_VERSION] = str(version)
        metadata: dict[str, Any] = {
            "name": name,
            "labels": labels,
            "annotations": {ANNOTATION_OUTPUT_SOURCE: source, ANNOTATION_OUTPUT_HASH: digest},
            "ownerReferences": [dict(owner_ref)],
        }
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": output.kind, "metadata": metadata}
        if output.kind == "Secret":
            obj["type"] = "Opaque"
            obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        else:
            obj["data"] = dict(data)
        if version is not None:
            obj["immutable"] = True
        return obj

    def same(obj: dict[str, Any]) -> bool:
        return (_meta(obj).get("annotations") or {}).get(ANNOTATION_OUTPUT_HASH) == digest

    if not output.versioned:
        current = next((o for o in existing if _meta(o).get("name") == target), None)
        if current is None:
            return [Action("create", target, body(target, None), "new output")]
        if not output.overwrite:
            return [Action("skip", target, None, f"{output.kind} {target} exists and overwrite is false")]
        if same(current):
            return [Action("skip", target, None, "output unchanged")]
        resource_version = _meta(current).get("resourceVersion")
        rv = str(resource_version) if resource_version is not None else None
        return [Action("replace", target, body(target, None, rv), "output changed")]

    versions = sorted(
        ((v, str(_meta(o).get("name", "")), o) for o in existing if (v := version_of(o)) is not None),
        key=lambda t: (t[0], t[1]),
    )
    actions: list[Action] = []
    kept = [name for _, name, _ in versions]
    if versions and same(versions[-1][2]):
        actions.append(Action("skip", target, None, f"output identical to {versions[-1][1]}"))
    else:
        n = versions[-1][0] + 1 if versions else 1
        name = f"{target}-v{n}"
        actions.append(Action("create", name, body(name, n), f"version {n} of {target}"))
        kept.append(name)
    for name in kept[: max(0, len(kept) - output.keep_versions)]:
        actions.append(Action("delete", name, None, f"older than the newest {output.keep_versions} versions"))
    return actions
