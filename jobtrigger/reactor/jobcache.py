"""What the controller keeps of a Job: a small summary per Job in the Job watch's cache (never the Job itself).

The ``jobtrigger.dev/owner`` label is the index (one server-side-filtered watch for all JobTriggers); the controller
ownerReference's uid decides which *incarnation* of that name a Job belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobtrigger.jobs.builder import (
    ANNOTATION_BASELINE,
    ANNOTATION_CREATED,
    ANNOTATION_OCCURRENCE,
    ANNOTATION_OUTPUT,
    LABEL_OWNER,
)
from jobtrigger.kube.client import JSON

JOBS_PATH = "/apis/batch/v1"
DEFAULT_HISTORY = 5


@dataclass(frozen=True)
class JobSummary:
    owner: str
    uid: str
    created: str
    state: str  # Active | Succeeded | Failed
    output: str = ""  # jobtrigger.dev/output annotation: "" (not handled yet), written, skipped, failed
    #: uid of the controlling JobTrigger (ownerReference): the label names the owner, the uid says which
    #: incarnation of that name; a JobTrigger deleted and re-created under the same name owns none of the old Jobs
    owner_uid: str = ""
    occurrence: str = ""  # jobtrigger.dev/occurrence: the occurrence key (resources/<run>/<digest>, ...)
    baseline: str = ""  # jobtrigger.dev/baseline (resource and config runs): the baseline it ran for, as JSON


def _controller_uid(meta: JSON) -> str:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "JobTrigger":
            return str(ref.get("uid") or "")
    return ""


def summarize_job(obj: JSON) -> JobSummary | None:
    meta = obj.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(LABEL_OWNER)
    if not owner:
        return None
    state = "Active"
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            state = "Succeeded" if c["type"] == "Complete" else "Failed"
    annotations = meta.get("annotations") or {}
    created = annotations.get(ANNOTATION_CREATED) or meta.get("creationTimestamp", "")
    return JobSummary(
        owner,
        meta.get("uid", ""),
        created,
        state,
        annotations.get(ANNOTATION_OUTPUT, ""),
        _controller_uid(meta),
        annotations.get(ANNOTATION_OCCURRENCE, ""),
        annotations.get(ANNOTATION_BASELINE, ""),
    )
