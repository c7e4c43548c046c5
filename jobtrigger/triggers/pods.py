"""Pod-state trigger logic: ``(old summary, new summary) -> transitions``. No I/O.

The pod watch keeps a small :class:`PodSummary` per pod (never the pod) and reports ``(old, new)`` pairs; the
functions here turn them into :class:`Transition` s, one per pod and per *occurrence* of a state. The controller
derives the Job name from ``Transition.occurrence``, so a Job runs once per occurrence as long as the same event
always yields the same key, whichever way it was observed.

Occurrence keys (``pods/<uid>/<State>[/<detail>]``) are built only from what the pod itself records, never from
counters kept by the controller:

- ``Created`` and ``Deleted``: the uid alone (each happens once per pod).
- ``Succeeded`` / ``Failed``: the uid alone (terminal phases).
- ``Ready`` / ``NotReady``: the Ready condition's ``lastTransitionTime``, which changes on every flip, so every
  ready/not-ready cycle is a new occurrence. Two flips within the same second (the API's resolution) share a key
  and run once.
- ``OOMKilled``: container name + the killed container's ``containerID`` (the same kill shows up first in
  ``state`` and later in ``lastState``; its id does not change, while ``restartCount`` does).
- ``CrashLoopBackOff``: container name + ``restartCount`` while waiting (stable for the whole back-off).
- ``Restarted``: the total restart count reached (one occurrence per observed increase).

Restart safety. After a controller restart the watch cache is rebuilt from a LIST, so ``old`` is None for every
pod and a live diff is impossible. For those pods the controller calls :func:`existing` with ``since``, the time
its watch was last known good (persisted in status): it returns what the pod's *current* state shows happened at
or after ``since`` (creationTimestamp, the Ready condition's lastTransitionTime, container start/finish times),
with the very same keys :func:`transitions` would have produced live. An event seen both live and again after the
restart therefore maps to one Job name; the overlap is harmless (the Job exists: AlreadyExists), a gap loses a
Job, so the filter errs on the inclusive side: an occurrence without a usable timestamp is always returned, and
``skew`` widens the window against node clock drift. A LIST shows only the latest of each: a pod that became
ready and not ready again while the controller was down yields only ``NotReady``; several restarts collapse into
one ``Restarted``. ``NotReady`` is inferred only when a container started before the Ready condition went False
(so a pod that was never ready does not count). A back-off has no timestamp of its own: it is dated by the crash
that caused it, which the kubelet reports moments earlier (``skew`` covers the difference).

Deletions during downtime leave nothing to LIST: the caller persists the uids it knew and :func:`vanished` tells
which are gone; :func:`deleted` builds their ``Deleted`` transition (same key as the live one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from jobtrigger.api.models import PodState

#: every pod state, in the order transitions are reported (the API's PodState enum)
STATES: tuple[str, ...] = get_args(PodState)
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
#: default tolerance for node/controller clock drift in :func:`existing` (overlap is cheap, a gap loses a Job)
CLOCK_SKEW = timedelta(seconds=30)

#: (namespace or "", name), as the watcher keys objects
PodKey = tuple[str, str]


@dataclass(frozen=True, order=True)
class OomKill:
    """One OOM-killed container instance."""

    container: str
    #: the killed instance's containerID (``#<attempt>`` or its finish time when the runtime gave none)
    instance: str
    finished_at: str = ""


@dataclass(frozen=True, order=True)
class BackOff:
    """A container waiting in CrashLoopBackOff."""

    container: str
    #: restartCount while waiting: the same for the whole back-off, different for the next one
    restart_count: int
    #: when the crash that caused it ended ("" unknown)
    since: str = ""


@dataclass(frozen=True)
class PodSummary:
    """What the pod trigger needs of a pod; compared for equality on every watch event, so keep it small."""

    uid: str
    labels: tuple[tuple[str, str], ...] = ()
    node_name: str = ""
    pod_ip: str = ""
    phase: str = ""
    #: the Ready condition is True
    ready: bool = False
    #: the Ready condition's lastTransitionTime ("" without one)
    ready_since: str = ""
    #: sum of restartCount over (init) containers
    restarts: int = 0
    #: start of the newest restarted container instance ("" none or unknown)
    restarted_at: str = ""
    oom_kills: tuple[OomKill, ...] = ()
    crashloops: tuple[BackOff, ...] = ()
    #: earliest container start visible in the status: evidence that a not-ready pod had been ready
    first_started: str = ""
    #: terminal phase only: latest container finish ("" unknown)
    finished_at: str = ""
    creation_timestamp: str = ""

    @property
    def crashloop(self) -> bool:
        return bool(self.crashloops)


@dataclass(frozen=True)
class Transition:
    """One occurrence of a pod state; a pure function of the summary it was read from, so recomputable."""

    state: str
    #: unique per pod and occurrence, identical when recomputed (live or after a restart): names the Job
    occurrence: str
    name: str
    namespace: str
    uid: str
    node: str
    ip: str
    reason: str
    #: when it happened as recorded by the pod ("" unknown)
    at: str = ""


# --------------------------------------------------------------------------------------------- summarize


def summarize(pod: Mapping[str, Any]) -> PodSummary:
    """Reduce a pod (as the API returns it) to what transitions are computed from."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "")
    ready, ready_since = False, ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
            ready_since = str(cond.get("lastTransitionTime") or "")
    containers = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]

    restarts = 0
    restart_times: list[str] = []
    ooms: set[OomKill] = set()
    backoffs: list[BackOff] = []
    starts: list[str] = []
    finishes: list[str] = []
    for cs in containers:
        name = str(cs.get("name") or "")
        count = int(cs.get("restartCount") or 0)
        restarts += count
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        running = state.get("running") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        # the newest instance: running or terminated; while waiting to restart, lastState holds it
        newest = last if waiting else running or terminated
        if count > 0:
            restart_times.append(str(newest.get("startedAt") or ""))
        for t in (running, terminated, last):
            if t.get("startedAt"):
                starts.append(str(t["startedAt"]))
        if terminated.get("finishedAt"):
            finishes.append(str(terminated["finishedAt"]))
        # attempt numbers: state is attempt `count`; lastState is `count` while waiting, `count - 1` otherwise
        for term, attempt in ((terminated, count), (last, count if waiting else count - 1)):
            if term.get("reason") == "OOMKilled":
                ooms.add(OomKill(name, _instance(term, attempt), str(term.get("finishedAt") or "")))
        if waiting.get("reason") == "CrashLoopBackOff":
            backoffs.append(BackOff(name, count, str(last.get("finishedAt") or "")))

    return PodSummary(
        uid=str(meta.get("uid") or ""),
        labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
        node_name=str(spec.get("nodeName") or ""),
        pod_ip=str(status.get("podIP") or ""),
        phase=phase,
        ready=ready,
        ready_since=ready_since,
        restarts=restarts,
        restarted_at="" if "" in restart_times else _latest(restart_times),
        oom_kills=tuple(sorted(ooms)),
        crashloops=tuple(sorted(backoffs)),
        first_started=_earliest(starts),
        finished_at=_latest(finishes) if phase in TERMINAL_PHASES else "",
        creation_timestamp=str(meta.get("creationTimestamp") or ""),
    )


def _instance(term: Mapping[str, Any], attempt: int) -> str:
    """Identity of a terminated container instance that does not depend on where the status shows it."""
    cid = str(term.get("containerID") or "")
    if cid:
        return cid.split("://", 1)[-1]
    if term.get("finishedAt"):
        return f"@{term['finishedAt']}"
    return f"#{attempt}"


# --------------------------------------------------------------------------------------------- transitions


def transitions(
    old: PodSummary | None, new: PodSummary | None, *, key: PodKey, when: frozenset[str]
) -> list[Transition]:
    """The states ``old -> new`` entered, restricted to ``when``.

    ``old`` None means the pod is new to a running watch (ADDED, or appeared in a relist after ``410 Gone``): its
    whole visible history is reported, so states it passed through between two observations are not lost (their
    keys match what a finer observation would have given). Pods first seen in the controller's *initial* LIST
    are not new: use :func:`existing` for them. A different uid under the same name (a StatefulSet pod
    recreated while the watch was away) is a deletion and a creation.
    """
    if new is None:
        return [] if old is None else _pick([_deleted(key, old.uid, old.node_name, old.pod_ip)], when)
    if old is None:
        return _pick(_implied(key, new), when)
    if old.uid != new.uid:
        return _pick([_deleted(key, old.uid, old.node_name, old.pod_ip), *_implied(key, new)], when)

    out: list[Transition] = []
    if new.ready and (not old.ready or old.ready_since != new.ready_since):
        out.append(_ready(key, new))
    # both not ready with a new transition time: it was ready in between (events coalesced)
    flipped = bool(old.ready_since and new.ready_since) and old.ready_since != new.ready_since
    if not new.ready and (old.ready or flipped):
        out.append(_not_ready(key, new))
    if new.phase in TERMINAL_PHASES and old.phase != new.phase:
        out.append(_phase(key, new))
    out.extend(_oom(key, new, k) for k in new.oom_kills if k not in old.oom_kills)
    out.extend(_backoff(key, new, b) for b in new.crashloops if b not in old.crashloops)
    if new.restarts > old.restarts:
        out.append(_restarted(key, new))
    return _pick(out, when)


def existing(
    new: PodSummary,
    *,
    key: PodKey,
    when: frozenset[str],
    since: str | None,
    include_existing: bool = False,
    skew: timedelta = CLOCK_SKEW,
) -> list[Transition]:
    """Transitions of a pod first seen in the controller's initial LIST (``old`` is unknown after a restart).

    ``since`` is when the JobTrigger's watch was last known good: occurrences at or after ``since - skew`` (or
    without a usable timestamp) are returned, with the keys :func:`transitions` gives live, so one seen before
    the restart maps to the same Job. ``since`` None means the JobTrigger has never watched: nothing happened
    "during" anything, so ``[]``, unless ``include_existing``, which reports the states the pod is in now (every
    existing pod is Created; a pod not ready now is NotReady). ``include_existing`` is ignored once ``since`` is
    known. An unparsable ``since`` filters nothing (a duplicate key is cheap, a lost Job is not).
    """
    if since is None:
        if not include_existing:
            return []
        # "in a state" rather than "went through it": any pod not ready now counts as NotReady
        implied = _implied(key, new)
        if not new.ready and not _was_ready(new):
            implied.insert(1, _not_ready(key, new))
        return _pick(implied, when)
    bound = _parse(since)
    implied = _implied(key, new)
    if bound is None:
        return _pick(implied, when)
    cutoff = bound - skew
    return _pick([t for t in implied if (at := _parse(t.at)) is None or at >= cutoff], when)


def replayable(
    current: Mapping[PodKey, PodSummary],
    *,
    when: frozenset[str],
    since: str | None,
    include_existing: bool = False,
    skew: timedelta = CLOCK_SKEW,
) -> set[str]:
    """Occurrence keys a first look with watermark ``since`` would return for these pods (see :func:`existing`).

    A handled occurrence outside this set can never come back, so this bounds what must be remembered as handled:
    at most every state of every current pod, whatever the age of the watermark."""
    return {
        t.occurrence
        for k, s in current.items()
        for t in existing(s, key=k, when=when, since=since, include_existing=include_existing, skew=skew)
    }


def vanished(previous_uids: Iterable[str], current: Mapping[PodKey, PodSummary]) -> set[str]:
    """Uids known before that no current pod has: deleted while nobody watched (a LIST cannot show them)."""
    return set(previous_uids) - {s.uid for s in current.values()}


def deleted(
    uid: str, *, when: frozenset[str], key: PodKey = ("", ""), node: str = "", ip: str = ""
) -> list[Transition]:
    """The ``Deleted`` transition of a vanished pod; same occurrence as the live one, whatever identity is known."""
    return _pick([_deleted(key, uid, node, ip)], when)


def pod_env(t: Transition) -> list[tuple[str, str]]:
    """Environment variables that tell the Job which pod and state it runs for."""
    return [
        ("JOBTRIGGER_POD_NAME", t.name),
        ("JOBTRIGGER_POD_NAMESPACE", t.namespace),
        ("JOBTRIGGER_POD_UID", t.uid),
        ("JOBTRIGGER_POD_NODE", t.node),
        ("JOBTRIGGER_POD_IP", t.ip),
        ("JOBTRIGGER_POD_STATE", t.state),
    ]


# --------------------------------------------------------------------------------------------- builders
# Each builder depends only on the summary it is given, so the live and the relist path build equal Transitions.


def _implied(key: PodKey, s: PodSummary) -> list[Transition]:
    """Everything the pod's current state shows has happened to it (latest occurrence of each)."""
    out = [_make(key, s, "Created", "", "pod created", s.creation_timestamp)]
    if s.ready:
        out.append(_ready(key, s))
    elif _was_ready(s):
        out.append(_not_ready(key, s))
    if s.phase in TERMINAL_PHASES:
        out.append(_phase(key, s))
    out.extend(_oom(key, s, k) for k in s.oom_kills)
    out.extend(_backoff(key, s, b) for b in s.crashloops)
    if s.restarts > 0:
        out.append(_restarted(key, s))
    return out


def _was_ready(s: PodSummary) -> bool:
    """A not-ready pod was ready before if a container started before Ready went False.

    A pod that was never ready got Ready=False from the kubelet's first status, before any container started.
    """
    went_false, started = _parse(s.ready_since), _parse(s.first_started)
    return went_false is not None and started is not None and started < went_false


def _make(key: PodKey, s: PodSummary, state: str, detail: str, reason: str, at: str) -> Transition:
    occurrence = f"pods/{s.uid}/{state}" + (f"/{detail}" if detail else "")
    return Transition(state, occurrence, key[1], key[0], s.uid, s.node_name, s.pod_ip, reason, at)


def _ready(key: PodKey, s: PodSummary) -> Transition:
    return _make(key, s, "Ready", s.ready_since or "-", f"pod became ready at {s.ready_since or '?'}", s.ready_since)


def _not_ready(key: PodKey, s: PodSummary) -> Transition:
    since = s.ready_since
    return _make(key, s, "NotReady", since or "-", f"pod became not ready at {since or '?'}", since)


def _phase(key: PodKey, s: PodSummary) -> Transition:
    return _make(key, s, s.phase, "", f"pod phase {s.phase}", s.finished_at)


def _oom(key: PodKey, s: PodSummary, k: OomKill) -> Transition:
    reason = f"container {k.container} was OOM-killed at {k.finished_at or '?'}"
    return _make(key, s, "OOMKilled", f"{k.container}/{k.instance}", reason, k.finished_at)


def _backoff(key: PodKey, s: PodSummary, b: BackOff) -> Transition:
    reason = f"container {b.container} in CrashLoopBackOff after {b.restart_count} restarts"
    return _make(key, s, "CrashLoopBackOff", f"{b.container}/{b.restart_count}", reason, b.since)


def _restarted(key: PodKey, s: PodSummary) -> Transition:
    return _make(key, s, "Restarted", str(s.restarts), f"restart count reached {s.restarts}", s.restarted_at)


def _deleted(key: PodKey, uid: str, node: str, ip: str) -> Transition:
    return Transition("Deleted", f"pods/{uid}/Deleted", key[1], key[0], uid, node, ip, "pod deleted")


def _pick(ts: list[Transition], when: frozenset[str]) -> list[Transition]:
    return [t for t in ts if t.state in when]


# --------------------------------------------------------------------------------------------- timestamps


def _parse(ts: str) -> datetime | None:
    """RFC 3339 (``Z`` or offset, optional fraction) -> aware datetime; None when empty or malformed."""
    if not ts:
        return None
    try:
        dt = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _latest(ts: Iterable[str]) -> str:
    parsed = [(d, t) for t in ts if (d := _parse(t)) is not None]
    return max(parsed)[1] if parsed else ""


def _earliest(ts: Iterable[str]) -> str:
    parsed = [(d, t) for t in ts if (d := _parse(t)) is not None]
    return min(parsed)[1] if parsed else ""
