"""Tests for jobtrigger.triggers.pods: pod summaries, transitions and their occurrence keys.

The core property is exactly-once across controller restarts: an event observed live by ``transitions()`` and the
same event reconstructed after a restart by ``existing()`` must give the same occurrence (the Job name).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobtrigger.triggers.pods import (
    STATES,
    BackOff,
    OomKill,
    PodSummary,
    Transition,
    deleted,
    existing,
    pod_env,
    summarize,
    transitions,
    vanished,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ALL = frozenset(STATES)
KEY = ("prod", "web-0")
UID = "7d3c1f0e-5b2a-4c8e-9f61-0a1b2c3d4e5f"
JSON = dict[str, Any]


def ts(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cid(n: int) -> str:
    return f"containerd://{n:064x}"


def term(reason: str, started: int, finished: int, n: int, exit_code: int | None = None) -> JSON:
    code = exit_code if exit_code is not None else {"OOMKilled": 137, "Completed": 0}.get(reason, 1)
    return {
        "exitCode": code,
        "reason": reason,
        "startedAt": ts(started),
        "finishedAt": ts(finished),
        "containerID": cid(n),
    }


def cstatus(
    name: str = "app",
    *,
    restarts: int = 0,
    running: int | None = None,
    waiting: str | None = None,
    terminated: JSON | None = None,
    last: JSON | None = None,
    n: int = 1,
    ready: bool = False,
) -> JSON:
    """A containerStatuses[] entry as the kubelet reports it."""
    state: JSON
    if running is not None:
        state = {"running": {"startedAt": ts(running)}}
    elif terminated is not None:
        state = {"terminated": terminated}
    else:
        state = {"waiting": {"reason": waiting or "ContainerCreating"}}
    out: JSON = {
        "name": name,
        "state": state,
        "lastState": {"terminated": last} if last else {},
        "ready": ready,
        "restartCount": restarts,
        "image": "registry.example.com/web:1.4.2",
        "imageID": "registry.example.com/web@sha256:" + "ab" * 32,
        "started": running is not None,
    }
    if waiting is None or last is not None:
        out["containerID"] = cid(n)
    return out


def pod(
    *,
    uid: str = UID,
    phase: str = "Running",
    ready: bool | None = False,
    ready_since: int = 2,
    containers: list[JSON] | None = None,
    init: list[JSON] | None = None,
    labels: dict[str, str] | None = None,
    node: str = "node-a",
    ip: str = "10.244.1.17",
    created: int = 0,
) -> JSON:
    """A pod as the API returns it (trimmed of fields the trigger ignores, e.g. most of spec)."""
    conditions: list[JSON] = [
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts(created + 1)},
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts(created + 1)},
    ]
    if ready is not None:
        s = "True" if ready else "False"
        conditions.append({"type": "ContainersReady", "status": s, "lastTransitionTime": ts(ready_since)})
        cond: JSON = {"type": "Ready", "status": s, "lastProbeTime": None, "lastTransitionTime": ts(ready_since)}
        if not ready:
            cond["reason"] = "ContainersNotReady"
        conditions.append(cond)
    status: JSON = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": "192.168.10.4",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": ts(created + 1),
        "qosClass": "Burstable",
        "containerStatuses": containers if containers is not None else [cstatus(running=3)],
    }
    if init is not None:
        status["initContainerStatuses"] = init
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": KEY[1],
            "namespace": KEY[0],
            "uid": uid,
            "resourceVersion": "48213",
            "creationTimestamp": ts(created),
            "labels": labels if labels is not None else {"app": "web", "pod-template-hash": "5d9f7c8b6"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9f7c8b6"}],
        },
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.example.com/web:1.4.2"}]},
        "status": status,
    }


def pending() -> JSON:
    p = pod(phase="Pending", containers=[cstatus(waiting="ContainerCreating")], ip="")
    del p["status"]["podIP"], p["status"]["podIPs"]
    return p


def live(old: JSON | None, new: JSON | None, when: frozenset[str] = ALL) -> list[Transition]:
    return transitions(
        summarize(old) if old is not None else None, summarize(new) if new is not None else None, key=KEY, when=when
    )


def states(ts_: list[Transition]) -> list[str]:
    return [t.state for t in ts_]


def after_restart(new: JSON, since: int | None, *, include_existing: bool = False) -> list[Transition]:
    return existing(
        summarize(new),
        key=KEY,
        when=ALL,
        since=ts(since) if since is not None else None,
        include_existing=include_existing,
        skew=timedelta(0),
    )


# --------------------------------------------------------------------------------------------- summarize


def test_summarize_realistic_pod() -> None:
    p = pod(
        ready=True,
        ready_since=20,
        containers=[
            cstatus("app", restarts=2, running=18, last=term("OOMKilled", 10, 17, 2), n=3, ready=True),
            cstatus("sidecar", running=3, n=4, ready=True),
        ],
        init=[cstatus("migrate", terminated=term("Completed", 1, 2, 9))],
    )
    s = summarize(p)
    assert s == PodSummary(
        uid=UID,
        labels=(("app", "web"), ("pod-template-hash", "5d9f7c8b6")),
        node_name="node-a",
        pod_ip="10.244.1.17",
        phase="Running",
        ready=True,
        ready_since=ts(20),
        restarts=2,
        restarted_at=ts(18),
        oom_kills=(OomKill("app", f"{2:064x}", ts(17)),),
        crashloops=(),
        first_started=ts(1),
        finished_at="",
        creation_timestamp=ts(0),
    )
    assert not s.crashloop


def test_summarize_tolerates_a_bare_pod() -> None:
    s = summarize({"metadata": {"uid": "u"}})
    assert s == PodSummary(uid="u")
    assert transitions(None, s, key=KEY, when=ALL) == [
        Transition("Created", "pods/u/Created", KEY[1], KEY[0], "u", "", "", "pod created", "")
    ]


def test_crashloop_summary() -> None:
    s = summarize(pod(containers=[cstatus(restarts=3, waiting="CrashLoopBackOff", last=term("Error", 40, 41, 4))]))
    assert s.crashloop
    assert s.crashloops == (BackOff("app", 3, ts(41)),)
    assert s.restarted_at == ts(40)  # the newest instance is in lastState while waiting


# --------------------------------------------------------------------------------------------- each state


def test_created_only_when_new() -> None:
    t = live(None, pending())
    assert states(t) == ["Created"]
    assert t[0].occurrence == f"pods/{UID}/Created"
    assert t[0].at == ts(0)
    assert live(pending(), pod()) == []  # scheduled and started: no state of interest


def test_ready_and_not_ready() -> None:
    starting = pod(ready=False, ready_since=2)
    up = pod(ready=True, ready_since=10)
    down = pod(ready=False, ready_since=50)
    [r] = live(starting, up)
    assert (r.state, r.occurrence, r.at) == ("Ready", f"pods/{UID}/Ready/{ts(10)}", ts(10))
    assert (r.name, r.namespace, r.uid, r.node, r.ip) == ("web-0", "prod", UID, "node-a", "10.244.1.17")
    [n] = live(up, down)
    assert (n.state, n.occurrence) == ("NotReady", f"pods/{UID}/NotReady/{ts(50)}")
    [r2] = live(down, pod(ready=True, ready_since=70))
    assert r2.occurrence != r.occurrence


def test_ready_unknown_is_not_ready() -> None:
    up = pod(ready=True, ready_since=10)
    unknown = pod(ready=True, ready_since=90)
    unknown["status"]["conditions"][-1]["status"] = "Unknown"
    assert states(live(up, unknown)) == ["NotReady"]


def test_coalesced_flips_are_not_lost() -> None:
    """A relist after 410 may skip the middle of ready -> not ready -> ready; the transition time shows it."""
    assert states(live(pod(ready=True, ready_since=10), pod(ready=True, ready_since=30))) == ["Ready"]
    assert states(live(pod(ready=False, ready_since=10), pod(ready=False, ready_since=30))) == ["NotReady"]


def test_deleted() -> None:
    [d] = live(pod(ready=True), None)
    assert (d.state, d.occurrence, d.node, d.ip) == ("Deleted", f"pods/{UID}/Deleted", "node-a", "10.244.1.17")
    assert live(None, None) == []


def test_recreated_under_the_same_name() -> None:
    """StatefulSet pod replaced while the watch was away: the watcher reports one change for the key."""
    other = "0f9e8d7c-0000-4000-8000-000000000001"
    t = live(pod(ready=True, ready_since=10), pod(uid=other, phase="Pending", ready=False, created=100))
    assert [(x.state, x.uid) for x in t] == [("Deleted", UID), ("Created", other)]


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_terminal_phase(phase: str) -> None:
    reason, code = ("Completed", 0) if phase == "Succeeded" else ("Error", 2)
    running = pod(ready=True, ready_since=5, containers=[cstatus(running=3, ready=True)])
    done = pod(phase=phase, ready=False, ready_since=60, containers=[cstatus(terminated=term(reason, 3, 60, 1, code))])
    t = live(running, done)
    assert states(t) == ["NotReady", phase]
    assert t[1].occurrence == f"pods/{UID}/{phase}"
    assert t[1].at == ts(60)
    assert live(done, done) == []


def oom_sequence() -> list[JSON]:
    """running -> OOM-killed -> back-off -> running again -> OOM-killed again, as the kubelet reports it."""
    return [
        pod(containers=[cstatus(running=3, n=1)]),
        pod(containers=[cstatus(terminated=term("OOMKilled", 3, 20, 1), n=1)]),
        pod(containers=[cstatus(waiting="CrashLoopBackOff", last=term("OOMKilled", 3, 20, 1))]),
        pod(containers=[cstatus(restarts=1, running=30, last=term("OOMKilled", 3, 20, 1), n=2)]),
        pod(
            containers=[cstatus(restarts=1, terminated=term("OOMKilled", 30, 45, 2), last=term("OOMKilled", 3, 20, 1))]
        ),
    ]


def test_oom_kill_counted_once_whether_in_state_or_last_state() -> None:
    seq = oom_sequence()
    got = [live(a, b) for a, b in itertools.pairwise(seq)]
    assert [states(t) for t in got] == [["OOMKilled"], ["CrashLoopBackOff"], ["Restarted"], ["OOMKilled"]]
    first, second = got[0][0], got[3][0]
    assert first.occurrence == f"pods/{UID}/OOMKilled/app/{1:064x}"
    assert second.occurrence == f"pods/{UID}/OOMKilled/app/{2:064x}"
    assert first.at == ts(20)


def test_oom_without_container_id_uses_finish_time() -> None:
    t = term("OOMKilled", 3, 20, 1)
    del t["containerID"]
    in_state = summarize(pod(containers=[cstatus(terminated=t)]))
    in_last = summarize(pod(containers=[cstatus(waiting="CrashLoopBackOff", last=t)]))
    assert in_state.oom_kills == in_last.oom_kills == (OomKill("app", f"@{ts(20)}", ts(20)),)


def test_crashloop_each_back_off_is_an_occurrence() -> None:
    a = pod(containers=[cstatus(restarts=1, running=30, last=term("Error", 3, 20, 1), n=2)])
    b = pod(containers=[cstatus(restarts=1, waiting="CrashLoopBackOff", last=term("Error", 30, 31, 2))])
    c = pod(containers=[cstatus(restarts=2, running=50, last=term("Error", 30, 31, 2), n=3)])
    d = pod(containers=[cstatus(restarts=2, waiting="CrashLoopBackOff", last=term("Error", 50, 52, 3))])
    [x] = live(a, b)
    assert (x.state, x.occurrence, x.at) == ("CrashLoopBackOff", f"pods/{UID}/CrashLoopBackOff/app/1", ts(31))
    assert live(b, b) == []
    assert states(live(b, c)) == ["Restarted"]
    [y] = live(c, d)
    assert y.occurrence == f"pods/{UID}/CrashLoopBackOff/app/2"


def test_init_container_crashloop_and_restarts_count() -> None:
    p = pod(
        phase="Pending",
        containers=[cstatus(waiting="PodInitializing")],
        init=[cstatus("migrate", restarts=4, waiting="CrashLoopBackOff", last=term("Error", 80, 81, 5))],
    )
    s = summarize(p)
    assert (s.restarts, s.crashloops) == (4, (BackOff("migrate", 4, ts(81)),))


def test_restarted_keyed_by_count_reached() -> None:
    a = pod(containers=[cstatus(running=3), cstatus("sidecar", running=3, n=2)])
    b = pod(
        containers=[
            cstatus(restarts=1, running=30, last=term("Error", 3, 29, 1), n=3),
            cstatus("sidecar", running=3, n=2),
        ]
    )
    [t] = live(a, b)
    assert (t.occurrence, t.at, t.reason) == (f"pods/{UID}/Restarted/1", ts(30), "restart count reached 1")


# --------------------------------------------------------------------------------------------- filtering, stability


def test_when_filters() -> None:
    seq = oom_sequence()
    assert live(seq[0], seq[1], frozenset({"Ready"})) == []
    assert states(live(seq[2], seq[3], frozenset({"Restarted", "OOMKilled"}))) == ["Restarted"]
    assert live(None, pending(), frozenset({"Deleted"})) == []
    assert deleted(UID, when=frozenset({"Created"})) == []


def test_unrelated_changes_give_no_transition() -> None:
    base = pod(ready=True, ready_since=10)
    relabeled = pod(ready=True, ready_since=10, labels={"app": "web", "tier": "frontend"})
    moved_ip = pod(ready=True, ready_since=10, ip="10.244.1.99")
    bumped = pod(ready=True, ready_since=10)
    bumped["metadata"]["resourceVersion"] = "99999"
    bumped["status"]["conditions"][0]["lastProbeTime"] = ts(500)
    assert summarize(relabeled) != summarize(base)  # the watcher reports it ...
    for other in (relabeled, moved_ip, bumped):
        assert live(base, other) == []  # ... but nothing happened that a trigger looks at
    assert summarize(bumped) == summarize(base)


def test_recomputing_gives_identical_results() -> None:
    seq = oom_sequence()
    for a, b in zip([None, *seq], [*seq, None], strict=True):
        assert live(a, b) == live(a, b)
        assert live(a, b) == live(_copy(a), _copy(b))


def _copy(p: JSON | None) -> JSON | None:
    return copy.deepcopy(p)


def test_pod_env() -> None:
    [t] = live(pod(ready=False), pod(ready=True, ready_since=10))
    assert pod_env(t) == [
        ("JOBTRIGGER_POD_NAME", "web-0"),
        ("JOBTRIGGER_POD_NAMESPACE", "prod"),
        ("JOBTRIGGER_POD_UID", UID),
        ("JOBTRIGGER_POD_NODE", "node-a"),
        ("JOBTRIGGER_POD_IP", "10.244.1.17"),
        ("JOBTRIGGER_POD_STATE", "Ready"),
    ]


# ------------------------------------------------------------------------------ exactly once across restarts


def _same_after_restart(before: JSON | None, at_event: JSON, later: JSON, since: int, state: str) -> None:
    """The transition seen live has the occurrence ``existing()`` rebuilds from a later LIST (the pod's IP, say,
    may have changed since: the Job name may not)."""
    [seen] = [t for t in live(before, at_event) if t.state == state]
    rebuilt = [(t.occurrence, t.at) for t in after_restart(later, since) if t.state == state]
    assert rebuilt == [(seen.occurrence, seen.at)]


def test_exactly_once_ready() -> None:
    up = pod(ready=True, ready_since=10)
    later = pod(ready=True, ready_since=10, labels={"app": "web", "new": "label"})
    _same_after_restart(pod(ready=False), up, later, since=8, state="Ready")
    assert [t for t in after_restart(later, since=11) if t.state == "Ready"] == []  # seen before `since`


def test_exactly_once_created() -> None:
    _same_after_restart(None, pending(), pod(ready=True, ready_since=10), since=0, state="Created")
    assert [t for t in after_restart(pod(), since=1) if t.state == "Created"] == []


def test_exactly_once_restarted() -> None:
    a = pod(containers=[cstatus(running=3)])
    b = pod(containers=[cstatus(restarts=1, running=30, last=term("Error", 3, 29, 1), n=2)])
    # later it crashes and waits: the newest instance (still restart 1) is now in lastState
    c = pod(containers=[cstatus(restarts=1, waiting="CrashLoopBackOff", last=term("Error", 30, 40, 2))])
    _same_after_restart(a, b, b, since=25, state="Restarted")
    _same_after_restart(a, b, c, since=25, state="Restarted")


def test_exactly_once_oom_killed() -> None:
    seq = oom_sequence()
    # seen live while in `state`, rebuilt after a restart from `lastState` (the kill moved there)
    _same_after_restart(seq[0], seq[1], seq[3], since=15, state="OOMKilled")
    rebuilt = [t.occurrence for t in after_restart(seq[4], since=15) if t.state == "OOMKilled"]
    assert rebuilt == [f"pods/{UID}/OOMKilled/app/{n:064x}" for n in (1, 2)]
    rebuilt = [t.occurrence for t in after_restart(seq[4], since=40) if t.state == "OOMKilled"]
    assert rebuilt == [f"pods/{UID}/OOMKilled/app/{2:064x}"]


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_exactly_once_terminal_phase(phase: str) -> None:
    done = pod(phase=phase, ready=False, ready_since=60, containers=[cstatus(terminated=term("Completed", 3, 60, 1))])
    _same_after_restart(pod(ready=True, ready_since=5), done, done, since=55, state=phase)
    _same_after_restart(pod(ready=True, ready_since=5), done, done, since=55, state="NotReady")
    assert after_restart(done, since=61) == []


def test_exactly_once_crashloop() -> None:
    a = pod(containers=[cstatus(restarts=1, running=30, last=term("Error", 3, 20, 1), n=2)])
    b = pod(containers=[cstatus(restarts=1, waiting="CrashLoopBackOff", last=term("Error", 30, 31, 2))])
    _same_after_restart(a, b, b, since=31, state="CrashLoopBackOff")


def test_deleted_during_downtime() -> None:
    [live_deleted] = live(pod(), None)
    current = {("prod", "web-1"): summarize(pod(uid="other"))}
    gone = vanished({UID, "other"}, current)
    assert gone == {UID}
    [rebuilt] = deleted(UID, when=ALL, key=KEY, node="node-a", ip="10.244.1.17")
    assert rebuilt == live_deleted
    assert deleted(UID, when=ALL)[0].occurrence == live_deleted.occurrence  # identity unknown: same key
    assert vanished(set(), current) == set()


def test_never_ready_pod_is_not_reported_not_ready() -> None:
    """Ready=False since the kubelet's first status, before any container started: it never was ready."""
    never = pod(
        ready=False,
        ready_since=1,
        containers=[cstatus(restarts=3, waiting="CrashLoopBackOff", last=term("Error", 40, 41, 4))],
    )
    assert "NotReady" not in states(after_restart(never, since=0))
    was = pod(ready=False, ready_since=50, containers=[cstatus(running=3)])
    assert "NotReady" in states(after_restart(was, since=45))


def test_since_filtering_and_skew() -> None:
    p = summarize(pod(ready=True, ready_since=100, created=0))
    at = existing(p, key=KEY, when=ALL, since=ts(100), skew=timedelta(0))
    assert states(at) == ["Ready"]  # inclusive: an overlap costs nothing, a gap loses a Job
    assert existing(p, key=KEY, when=ALL, since=ts(101), skew=timedelta(0)) == []
    assert states(existing(p, key=KEY, when=ALL, since=ts(120))) == ["Ready"]  # default skew 30 s
    # other spellings of the same instant
    assert states(existing(p, key=KEY, when=ALL, since="2024-05-01T14:01:40+02:00", skew=timedelta(0))) == ["Ready"]
    assert states(existing(p, key=KEY, when=ALL, since="2024-05-01T12:01:40.000001Z", skew=timedelta(0))) == []


def test_unknown_times_are_reported() -> None:
    """No timestamp to rule it out: report it (the key makes a repeat harmless)."""
    evicted = pod(phase="Failed", ready=None, containers=[])
    evicted["status"]["reason"] = "Evicted"
    assert states(after_restart(evicted, since=1000)) == ["Failed"]
    p = pod(ready=True, ready_since=10)
    assert states(existing(summarize(p), key=KEY, when=ALL, since="yesterday")) == ["Created", "Ready"]


def test_include_existing() -> None:
    ready = summarize(pod(ready=True, ready_since=10))
    starting = summarize(
        pod(phase="Pending", ready=False, ready_since=1, containers=[cstatus(waiting="ContainerCreating")])
    )
    assert existing(ready, key=KEY, when=ALL, since=None) == []
    assert states(existing(ready, key=KEY, when=ALL, since=None, include_existing=True)) == ["Created", "Ready"]
    got = existing(starting, key=KEY, when=ALL, since=None, include_existing=True)
    assert states(got) == ["Created", "NotReady"]
    assert existing(starting, key=KEY, when=frozenset({"Ready"}), since=None, include_existing=True) == []
    # include_existing only matters for a new JobTrigger: with a cursor, time decides
    assert existing(ready, key=KEY, when=ALL, since=ts(50), include_existing=True, skew=timedelta(0)) == []
    # the keys are the live ones: a later live Ready for the same flip is the same Job
    [r] = existing(ready, key=KEY, when=frozenset({"Ready"}), since=None, include_existing=True)
    assert r == live(pod(ready=False), pod(ready=True, ready_since=10))[0]


# --------------------------------------------------------------------------------------------- property: random lives


@dataclass
class _Container:
    name: str
    n: int
    started: int
    restarts: int = 0
    state: str = "running"  # running | terminated | backoff
    term: JSON | None = None
    last: JSON | None = None


@dataclass
class _Pod:
    """A tiny kubelet: applies operations and renders the pod status the API would show."""

    clock: int = 1
    phase: str = "Pending"
    ready: bool = False
    ready_since: int = 1
    labels: dict[str, str] = field(default_factory=lambda: {"app": "web"})
    containers: list[_Container] = field(default_factory=list)
    ids: int = 0

    def _id(self) -> int:
        self.ids += 1
        return self.ids

    def _flip(self, ready: bool) -> None:
        if self.ready != ready:
            self.ready, self.ready_since = ready, self.clock

    def apply(self, op: str, i: int) -> bool:
        """Apply ``op`` (to container ``i``); False when it does not apply in the current state."""
        c = self.containers[i % len(self.containers)] if self.containers else None
        if op == "relabel":
            self.labels = {"app": "web", "rev": str(self.clock)}
            return True
        if self.phase in ("Succeeded", "Failed"):
            return False
        if op == "start" and self.phase == "Pending":
            self.phase = "Running"
            self.containers = [_Container(name, self._id(), self.clock) for name in ("app", "sidecar")]
            return True
        if self.phase != "Running" or c is None:
            return False
        if op == "ready" and not self.ready and all(x.state == "running" for x in self.containers):
            self._flip(True)
        elif op == "unready" and self.ready:
            self._flip(False)
        elif op in ("crash", "oom") and c.state == "running":
            reason = "OOMKilled" if op == "oom" else "Error"
            c.state, c.term = "terminated", term(reason, c.started, self.clock, c.n)
            self._flip(False)
        elif op == "backoff" and c.state == "terminated":
            c.state, c.last, c.term = "backoff", c.term, None
        elif op == "restart" and c.state in ("terminated", "backoff"):
            if c.term is not None:
                c.last = c.term
            c.state, c.term, c.n, c.started = "running", None, self._id(), self.clock
            c.restarts += 1
        elif op in ("succeed", "fail") and all(x.state == "running" for x in self.containers):
            reason, code = ("Completed", 0) if op == "succeed" else ("Error", 1)
            for x in self.containers:
                x.state, x.term = "terminated", term(reason, x.started, self.clock, x.n, code)
            self.phase = "Succeeded" if op == "succeed" else "Failed"
            self._flip(False)
        else:
            return False
        return True

    def render(self) -> JSON:
        statuses = []
        for c in self.containers:
            if c.state == "running":
                cs = cstatus(c.name, restarts=c.restarts, running=c.started, last=c.last, n=c.n, ready=self.ready)
            elif c.state == "terminated":
                cs = cstatus(c.name, restarts=c.restarts, terminated=c.term, last=c.last, n=c.n)
            else:
                cs = cstatus(c.name, restarts=c.restarts, waiting="CrashLoopBackOff", last=c.last)
            statuses.append(cs)
        if not statuses:
            statuses = [cstatus("app", waiting="ContainerCreating"), cstatus("sidecar", waiting="ContainerCreating")]
        return pod(
            phase=self.phase, ready=self.ready, ready_since=self.ready_since, containers=statuses, labels=self.labels
        )


OPS = ["start", "ready", "unready", "crash", "oom", "backoff", "restart", "succeed", "fail", "relabel"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1), st.integers(1, 3)), max_size=40))
def test_random_lives(ops: list[tuple[str, int, int]]) -> None:
    model = _Pod()
    prev = summarize(model.render())
    emitted = transitions(None, prev, key=KEY, when=ALL)
    assert states(emitted) == ["Created"]
    ready_ops = 0
    times = [model.clock]
    for op, i, dt in ops:
        model.clock += dt
        if not model.apply(op, i):
            model.clock -= dt  # time passes with events: keeps a back-off within seconds of its crash
            continue
        ready_ops += op == "ready"
        cur = summarize(model.render())
        got = transitions(prev, cur, key=KEY, when=ALL)
        # (b) a pure function of the summaries
        assert got == transitions(prev, cur, key=KEY, when=ALL)
        # restricting `when` only filters
        some = frozenset(STATES[::2])
        assert transitions(prev, cur, key=KEY, when=some) == [t for t in got if t.state in some]
        # exactly once across a restart right before this event: rebuilt from a LIST with the same keys
        rebuilt = existing(cur, key=KEY, when=ALL, since=ts(model.clock), skew=timedelta(0))
        missing = [t for t in got if t not in rebuilt]
        # a back-off has no time of its own: it is dated by the crash, which the kubelet reports seconds earlier
        assert all(t.state == "CrashLoopBackOff" for t in missing), (op, missing, rebuilt)
        assert all(t in existing(cur, key=KEY, when=ALL, since=ts(model.clock)) for t in missing)
        emitted.extend(got)
        prev = cur
        times.append(model.clock)
    occurrences = [t.occurrence for t in emitted]
    # a controller down since any earlier moment rebuilds nothing the live path would not have produced
    for since in times:
        rebuilt = existing(prev, key=KEY, when=ALL, since=ts(since))
        assert {t.occurrence for t in rebuilt} <= set(occurrences), since
    # every occurrence is reported once live, and (a) every ready cycle is a distinct Ready occurrence
    assert len(occurrences) == len(set(occurrences))
    assert len([t for t in emitted if t.state == "Ready"]) == ready_ops
