"""Reliability: SIGKILLed controller process, kube-apiserver restart, and a flood of bad input.

The crash and restart tests are short variants of ``benchmarks/reliability.py`` (same machinery; the benchmark runs
the long versions and a soak). Jobs are created with ``parallelism: 0`` so the suite's controller manager creates
no pods for them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

import jmespath
import jmespath.exceptions
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from benchmarks.reliability import ControllerProcess, StreamConfig, run_stream
from jobtrigger.api.models import DURATION_PATTERN
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import (
    Runner,
    condition,
    create_cm,
    jobs_of,
    jt_path,
    patch_cm,
    wait_for,
    wait_jobs,
    wait_ready,
)

SEED = 20260101

# --------------------------------------------------------------------------------------------- crash consistency


async def _stream(
    kube: KubeClient, kubeconfig: str, namespace: str, tmp_path: Path, cfg: StreamConfig, **kw: Any
) -> None:
    proc = ControllerProcess(kubeconfig, namespace, tmp_path / "controller.log")
    t0 = time.monotonic()
    try:
        res = await run_stream(
            kube, namespace, proc, cfg, log=lambda m: print(f"  [{time.monotonic() - t0:5.1f}s] {m}"), **kw
        )
    except BaseException:
        print(proc.log_tail(40))
        raise
    finally:
        await proc.close()
    print(f"\n{res.summary()}")
    print("  Jobs per JobTrigger (changes):", {k: f"{res.jobs.get(k)} ({v})" for k, v in res.changes.items()})
    assert res.ok, "\n".join(res.problems) + "\n--- controller log ---\n" + proc.log_tail(40)
    assert len(res.kills) == cfg.kills, f"only {len(res.kills)} of {cfg.kills} kills happened during the stream"
    assert res.apiserver_restarts == cfg.apiserver_restarts


async def test_sigkill_during_a_stream_neither_loses_nor_repeats(
    kube: KubeClient, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    """60 ConfigMap changes over 10 JobTriggers plus 20 pod creations; the controller process is SIGKILLed 4 times
    (during start-up, at a random moment, right after a Job appeared) and restarted at once, and once more after
    the stream. Every change has exactly one Job, for exactly its state; every pod exactly one Created Job."""
    cfg = StreamConfig(configmaps=10, changes=60, pods=20, kills=4, seed=SEED)
    await _stream(kube, kubeconfig, namespace, tmp_path, cfg)


async def test_apiserver_restart_during_a_stream_neither_loses_nor_repeats(
    kube: KubeClient, kubeconfig: str, namespace: str, tmp_path: Path, control_plane: ControlPlane | None
) -> None:
    if control_plane is None:
        pytest.skip("needs the suite's own control plane")
    cfg = StreamConfig(configmaps=5, changes=25, pods=8, kills=0, apiserver_restarts=1, seed=SEED + 1)
    cfg.final_restart = False
    await _stream(kube, kubeconfig, namespace, tmp_path, cfg, restart_apiserver=control_plane.arestart_apiserver)


# --------------------------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class Case:
    """One JobTrigger the controller must refuse: Ready=False with a message containing ``expect``."""

    category: str
    spec: dict[str, Any]
    expect: str
    name: str = ""
    #: the CRD schema (structural, OpenAPI) should already refuse it with 422; if not, the controller must
    schema: bool = False


def template(containers: list[dict[str, Any]] | None = None, **pod: Any) -> dict[str, Any]:
    return {
        "spec": {
            "parallelism": 0,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": containers if containers is not None else [{"name": "main", "image": "busybox"}],
                    **pod,
                }
            },
        }
    }


def spec(triggers: dict[str, Any], job_template: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"triggers": triggers, "jobTemplate": job_template or template(), **extra}


def watching(*watch: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"resources": {"cooldown": "0s", "watch": list(watch), **kw}}


def cm(**kw: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg-0", **kw}


def _bad_jmespath(expr: str) -> bool:
    try:
        jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError:
        return True
    except Exception:  # the reference parser crashing on it: invalid too
        return True
    return False


WORDS = st.from_regex(r"\A[A-Z][a-z]{2,9}\Z")
DNS = st.from_regex(r"\A[a-z][a-z0-9]{2,12}\Z")
CLUSTER_KINDS = [
    ("v1", "Node"),
    ("v1", "Namespace"),
    ("v1", "PersistentVolume"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
]
NOT_MOUNTABLE = [("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Pod"), ("batch/v1", "Job")]
EMPTY_SELECTORS = [{}, {"matchLabels": {}}, {"matchExpressions": []}, {"matchLabels": {}, "matchExpressions": []}]
BAD_CRON = st.one_of(
    st.builds("{} {} * * *".format, st.integers(60, 99), st.integers(0, 23)),  # minute out of range
    st.builds("0 {} * * *".format, st.integers(24, 99)),  # hour
    st.builds("0 0 {} * *".format, st.integers(32, 99)),  # day of month
    st.builds("0 0 1 {} *".format, st.integers(13, 99)),  # month
    st.builds("0 0 * * {}".format, st.integers(8, 99)),  # day of week
    st.lists(st.sampled_from(["*", "1", "*/5", "1-3"]), min_size=1, max_size=4).map(" ".join),  # too few fields
    st.lists(st.sampled_from(["*", "1", "*/5"]), min_size=7, max_size=9).map(" ".join),  # too many
    WORDS.map(lambda w: "@" + w.lower()),  # unknown alias
    st.sampled_from(["0 0 30 2 *", "0 0 31 4 *", "*/0 * * * *", "TZ=UTC 0 0 * * *", "H * * * *", "every day"]),
)
ZONES = available_timezones()
BAD_ZONE = st.one_of(
    st.builds("{}/{}".format, WORDS, WORDS).filter(lambda z: z not in ZONES),
    st.sampled_from(["UTC+25", "Europe", "Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", "europe/berlin"]),
)
BAD_CONTAINER_NAME = st.one_of(
    st.from_regex(r"\A[A-Z_][A-Za-z0-9_]{0,10}\Z"),
    st.sampled_from(["-lead", "trail-", "a" * 64, "dot.name", "sp ace", "ünïcode"]),
)


def huge_template(containers: int, env: int, bad: str) -> dict[str, Any]:
    """Many containers with many env vars (hundreds of KiB, below etcd's 1.5 MiB); the last one is invalid."""
    cs = [
        {
            "name": f"c{i}",
            "image": "busybox",
            "env": [{"name": f"VAR_{i}_{j}", "value": f"{i:04d}-{j:04d}-" + "x" * 40} for j in range(env)],
        }
        for i in range(containers)
    ]
    cs[-1]["name"] = bad
    return template(cs)


def invalid_branches() -> list[st.SearchStrategy[Case]]:
    """Every kind of bad JobTrigger, one hypothesis strategy per kind."""
    return [
        st.builds(
            lambda av, k: Case("unknown kind", spec(watching(cm(apiVersion=av, kind="Nope" + k))), "watch[0]"),
            st.sampled_from(["v1", "apps/v1", "batch/v1", "nope.example.com/v1", "v999"]),
            WORDS,
        ),
        st.builds(
            lambda av: Case("malformed apiVersion", spec(watching(cm(apiVersion=av))), "watch[0]"),
            st.one_of(
                st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=16).filter(
                    lambda s: any(c in s for c in " ?#%\\@:;,") and s.strip()
                ),
                st.sampled_from(["v1/../v1", "../../api/v1", "apps/v1/..", "v1?watch=1", "//v1", "v1#x"]),
            ),
        ),
        st.builds(
            lambda good, bad, at: Case(
                "bad JMESPath",
                spec(watching(cm(fields=[*good[:at], bad, *good[at:]]))),
                f"fields[{min(at, len(good))}]",
            ),
            st.lists(st.sampled_from(["data", "data.a", "metadata.labels", 'data."x.y"']), max_size=3),
            st.one_of(
                st.sampled_from(["data.[", "data..a", "foo(", "[?a==]", "`{", "a.b)", "data.'x", "&", "a[", "!="]),
                st.text("ab.[]()?`'|&!=*@{}", min_size=1, max_size=8).filter(_bad_jmespath),
            ),
            st.integers(0, 3),
        ),
        st.builds(
            lambda sel: Case("name and selector", spec(watching(cm(selector=sel))), "watch[0]"),
            st.sampled_from([{"matchLabels": {"a": "b"}}, {"matchExpressions": [{"key": "a", "operator": "Exists"}]}]),
        ),
        st.just(Case("neither name nor selector", spec(watching({"apiVersion": "v1", "kind": "Secret"})), "watch[0]")),
        st.builds(
            lambda sel: Case(
                "empty selector",
                spec(watching({"apiVersion": "v1", "kind": "ConfigMap", "selector": sel})),
                "watch[0].selector",
            ),
            st.sampled_from(EMPTY_SELECTORS),
        ),
        st.builds(
            lambda sel: Case(
                "empty pod selector", spec({"pods": {"selector": sel, "when": ["Created"]}}), "pods.selector"
            ),
            st.sampled_from(EMPTY_SELECTORS),
        ),
        st.builds(
            lambda op, values: Case(
                "selector requirement",
                spec(
                    watching(
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "selector": {"matchExpressions": [{"key": "a", "operator": op, "values": values}]},
                        }
                    )
                ),
                "matchExpressions[0].values",
            ),
            st.sampled_from(["In", "NotIn"]),
            st.just([]),
        )
        | st.builds(
            lambda op, values: Case(
                "selector requirement",
                spec(
                    {
                        "pods": {
                            "selector": {"matchExpressions": [{"key": "a", "operator": op, "values": values}]},
                            "when": ["Ready"],
                        }
                    }
                ),
                "matchExpressions[0].values",
            ),
            st.sampled_from(["Exists", "DoesNotExist"]),
            st.lists(DNS, min_size=1, max_size=2),
        ),
        st.builds(lambda c: Case("bad cron", spec({"schedule": {"cron": c}}), "schedule.cron"), BAD_CRON),
        st.builds(
            lambda z: Case("bad timeZone", spec({"schedule": {"cron": "@hourly", "timeZone": z}}), "schedule.timeZone"),
            BAD_ZONE,
        ),
        st.builds(
            lambda kind, ns: Case(
                "cross-namespace", spec(watching({**kind, "name": "x", "namespace": ns})), "watch[0].namespace"
            ),
            st.sampled_from(
                [
                    {"apiVersion": "v1", "kind": "ConfigMap"},
                    {"apiVersion": "v1", "kind": "Secret"},
                    {"apiVersion": "apps/v1", "kind": "Deployment"},
                ]
            ),
            st.one_of(st.sampled_from(["default", "kube-system"]), DNS),
        ),
        st.builds(
            lambda kind, ns: Case(
                "cluster-scoped with namespace",
                spec(watching({"apiVersion": kind[0], "kind": kind[1], "name": "x", "namespace": ns})),
                "watch[0].namespace",
            ),
            st.sampled_from(CLUSTER_KINDS),
            st.one_of(st.just("$OWN"), st.sampled_from(["default", "kube-system"])),
        ),
        st.builds(
            lambda kind: Case(
                "mount on a non-ConfigMap/Secret",
                spec(watching({"apiVersion": kind[0], "kind": kind[1], "name": "x", "mount": {}})),
                "watch[0].mount",
            ),
            st.sampled_from(NOT_MOUNTABLE),
        ),
        st.just(
            Case(
                "mount by selector",
                spec(
                    watching(
                        {"apiVersion": "v1", "kind": "ConfigMap", "selector": {"matchLabels": {"a": "b"}}, "mount": {}}
                    )
                ),
                "watch[0].mount",
            )
        ),
        st.builds(
            lambda name, dup: Case(
                "invalid container name (dry run)",
                spec(
                    watching(cm()),
                    template([{"name": "ok", "image": "busybox"}, {"name": "ok" if dup else name, "image": "busybox"}]),
                ),
                "spec.jobTemplate",
            ),
            BAD_CONTAINER_NAME,
            st.booleans(),
        ),
        st.builds(
            lambda pod, container: Case(
                "invalid Job template (dry run)",
                spec(watching(cm()), template([{"name": "main", "image": "busybox", **container}], **pod)),
                "spec.jobTemplate",
            ),
            st.sampled_from([{}, {"restartPolicy": "Always"}, {"activeDeadlineSeconds": 0}]),
            st.sampled_from(
                [
                    {"image": ""},
                    {"env": [{"name": "1BAD", "value": "x"}]},
                    {"volumeMounts": [{"name": "missing", "mountPath": "/x"}]},
                    {"ports": [{"containerPort": 70000}]},
                    {"imagePullPolicy": "Sometimes"},
                ]
            ),
        ),
        st.just(
            Case("no containers", spec(watching(cm()), template([])), "spec.jobTemplate.spec.template.spec.containers")
        ),
        st.just(Case("no triggers", spec({}), "spec.triggers")),
        st.builds(
            lambda n: Case("name too long", spec(watching(cm())), "metadata.name", name="n" * n), st.integers(64, 120)
        ),
        st.builds(
            lambda n, env, bad: Case(
                "huge template (dry run)", spec(watching(cm()), huge_template(n, env, bad)), "spec.jobTemplate"
            ),
            st.integers(40, 120),
            st.integers(20, 60),
            BAD_CONTAINER_NAME,
        ),
        # the CRD schema should refuse these already (422): counted separately
        st.builds(
            lambda d: Case("cooldown pattern", spec(watching(cm(), cooldown=d)), "cooldown", schema=True),
            st.text(max_size=8).filter(lambda s: not re.fullmatch(DURATION_PATTERN, s)),
        ),
        st.sampled_from(
            [
                Case(
                    "schema",
                    spec({"pods": {"selector": {"matchLabels": {"a": "b"}}, "when": ["Exploded"]}}),
                    "when",
                    schema=True,
                ),
                Case(
                    "schema", spec({"pods": {"selector": {"matchLabels": {"a": "b"}}, "when": []}}), "when", schema=True
                ),
                Case("schema", spec(watching(cm()), concurrencyPolicy="Sometimes"), "concurrencyPolicy", schema=True),
                Case("schema", spec(watching(cm()), history=0), "history", schema=True),
                Case("schema", spec(watching()), "watch", schema=True),
                Case("schema", spec(watching(cm(apiVersion=""))), "apiVersion", schema=True),
                Case("schema", spec(watching(cm(mount={"volumeName": "Bad_Name"}))), "volumeName", schema=True),
                Case("schema", spec(watching(cm()), output={"name": "o", "maxBytes": 0}), "maxBytes", schema=True),
                Case(
                    "schema",
                    {"triggers": {"manual": {}}, "jobTemplate": {"spec": "not an object"}},
                    "jobTemplate",
                    schema=True,
                ),
                Case("schema", {"triggers": {"manual": {}}}, "jobTemplate", schema=True),
                Case("schema", spec({"schedule": {"cron": ""}}), "cron", schema=True),
                Case(
                    "schema",
                    spec({"schedule": {"cron": "@daily", "startingDeadlineSeconds": -5}}),
                    "startingDeadlineSeconds",
                    schema=True,
                ),
            ]
        ),
    ]


def draw_cases(strategy: st.SearchStrategy[Case], n: int) -> list[Case]:
    """``n`` examples from hypothesis (derandomized: the same ones every run), without its test runner."""
    out: list[Case] = []

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Case) -> None:
        out.append(case)

    collect()
    return out


def generated_cases(per_branch: int = 2) -> list[Case]:
    """``per_branch`` distinct examples of every kind in :func:`invalid_branches`."""
    cases: list[Case] = []
    for branch in invalid_branches():
        seen: set[str] = set()
        for case in draw_cases(branch, per_branch * 4):
            key = json.dumps([case.spec, case.name], sort_keys=True)
            if key not in seen and len(seen) < per_branch:
                seen.add(key)
                cases.append(case)
    return cases


def _fill(value: Any, ns: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, ns) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ns) for v in value]
    return ns if value == "$OWN" else value


VALID = {
    "good-name": spec(watching(cm(name="good-0", fields=["data"]))),
    "good-selector": spec(
        watching({"apiVersion": "v1", "kind": "ConfigMap", "selector": {"matchLabels": {"good": "1"}}})
    ),
    "good-mount": spec(watching(cm(name="good-2", mount={"mountPath": "/cfg"}))),
}


async def test_bad_input_is_refused_field_by_field_and_harms_nothing(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    t0 = time.monotonic()
    for i, name in enumerate(["good-0", "good-1", "good-2"]):
        await create_cm(kube, namespace, name, {"v": "0"}, labels={"good": "1"} if i == 1 else {"good": "no"})
    for name, body in VALID.items():
        await kube.create(
            jt_path(namespace),
            {"apiVersion": "jobtrigger.dev/v1alpha1", "kind": "JobTrigger", "metadata": {"name": name}, "spec": body},
        )
    for name in VALID:
        await wait_ready(kube, namespace, name)

    cases = generated_cases()
    created: dict[str, Case] = {}
    schema_rejected: list[tuple[Case, str]] = []
    for i, case in enumerate(cases):
        name = case.name or f"bad-{i:03d}"
        body = {
            "apiVersion": "jobtrigger.dev/v1alpha1",
            "kind": "JobTrigger",
            "metadata": {"name": name},
            "spec": _fill(case.spec, namespace),
        }
        try:
            await kube.create(jt_path(namespace), body)
        except ApiError as e:
            assert e.status == 422, f"{case.category}: {e}"
            schema_rejected.append((case, e.message))
            continue
        created[name] = case
    t_applied = time.monotonic()

    async def outcome() -> dict[str, dict[str, Any] | None]:
        got = await kube.get(jt_path(namespace))
        return {o["metadata"]["name"]: condition(o) for o in got["items"] if o["metadata"]["name"] in created}

    async def all_refused() -> dict[str, dict[str, Any] | None] | None:
        now = await outcome()
        done = all(c is not None and c.get("status") == "False" for c in now.values())
        return now if done else None

    try:
        conditions = await wait_for(all_refused, "every invalid JobTrigger Ready=False", timeout=25)
    except AssertionError:
        conditions = await outcome()
    t_refused = time.monotonic()

    failures = []
    for name, case in created.items():
        c = conditions.get(name)
        message = (c or {}).get("message", "")
        ok = (
            c is not None
            and c.get("status") == "False"
            and ("spec." in message or "metadata." in message)
            and case.expect in message
        )
        if not ok:
            failures.append(f"{name} [{case.category}] want Ready=False naming {case.expect!r}; got {c}")

    # the controller is alive and the valid JobTriggers still work, on changes made after all the bad input
    assert runner.task is not None and not runner.task.done(), "the controller task ended"
    await patch_cm(kube, namespace, "good-0", {"data": {"v": "1"}})
    await patch_cm(kube, namespace, "good-1", {"data": {"v": "1"}})
    await patch_cm(kube, namespace, "good-2", {"data": {"v": "1"}})
    for name in VALID:
        await wait_jobs(kube, namespace, name, 1, timeout=20)
    stray = [n for n in created if await jobs_of(kube, namespace, n)]
    assert runner.task is not None and not runner.task.done(), "the controller task ended"

    by_category: dict[str, int] = {}
    for case in cases:
        by_category[case.category] = by_category.get(case.category, 0) + 1
    print(
        f"\nbad input: {len(cases)} cases tried, {len(created)} accepted by the API server and refused by the "
        f"controller ({len(created) - len(failures)} as expected), {len(schema_rejected)} rejected by the schema "
        f"(422); all applied in {t_applied - t0:.1f}s, refused {t_refused - t_applied:.1f}s later; "
        f"3 valid JobTriggers fired; total {time.monotonic() - t0:.1f}s"
    )
    print("  per category:", by_category)
    for case, message in schema_rejected:
        if not case.schema:
            print(f"  (schema rejected a controller-level case) [{case.category}] {message[:160]}")
    schema_passed = [n for n, c in created.items() if c.schema]
    if schema_passed:
        print("  accepted by the schema though expected 422 (the controller refused them):", schema_passed)
    for f in failures:
        print("  FAIL", f[:300])
    assert not stray, f"invalid JobTriggers created Jobs: {stray}"
    assert not failures, f"{len(failures)} invalid JobTrigger(s) not refused as expected:\n" + "\n".join(failures)
