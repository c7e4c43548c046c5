"""Keyed field hashes (issue #14): a reader of a JobTrigger cannot confirm a guessed value; upgrading from unkeyed
hashes and rotating the key keep exactly-once (no spurious run, no lost change). Real API server, controllers
started and stopped as after a restart or an upgrade."""

from __future__ import annotations

import base64
from typing import Any

from jobtrigger.kube.client import KubeClient
from jobtrigger.triggers.fields import HashKey, hash_value
from tests.integration.conftest import (
    Runner,
    create_cm,
    create_jt,
    get_jt,
    jobs_of,
    patch_cm,
    stays,
    wait_for,
    wait_jobs,
    wait_ready,
)
from tests.integration.events import wait_event

K1 = HashKey(b"k1-0123456789abcdef0123456789abcdef")
K2 = HashKey(b"k2-0123456789abcdef0123456789abcdef")
K3 = HashKey(b"k3-0123456789abcdef0123456789abcdef")


def watching(kind: str, name: str, fields: list[str]) -> dict[str, Any]:
    return {
        "resources": {"watch": [{"apiVersion": "v1", "kind": kind, "name": name, "fields": fields}], "cooldown": "0s"}
    }


async def started(kubeconfig: str, ns: str, **settings: Any) -> Runner:
    r = Runner(kubeconfig, ns, **settings)
    await r.start()
    return r


async def key_id_is(kube: KubeClient, ns: str, expected: str | None) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        status = (await get_jt(kube, ns, "t")).get("status") or {}
        return status if status.get("resourceHashes") and status.get("hashKeyID") == expected else None

    return await wait_for(probe, f"status.hashKeyID == {expected}")


async def no_jobs_for(kube: KubeClient, ns: str, n: int, seconds: float = 3.0) -> bool:
    async def probe() -> bool:
        return len(await jobs_of(kube, ns, "t")) == n

    return await stays(probe, seconds)


async def test_a_reader_cannot_confirm_a_guessed_secret_value(
    kube: KubeClient, kubeconfig: str, namespace: str
) -> None:
    """The status hash of `data.password` is an HMAC: the plain SHA-256 prefix of the right guess does not match it
    (before keyed hashes it did, so anyone with `get` on JobTriggers could test guesses)."""
    value = base64.b64encode(b"hunter2").decode()
    await kube.create(
        f"/api/v1/namespaces/{namespace}/secrets", {"metadata": {"name": "db"}, "data": {"password": value}}
    )
    r = await started(kubeconfig, namespace, hash_key=K1)
    try:
        await create_jt(kube, namespace, "t", watching("Secret", "db", ["data.password"]))
        status = await key_id_is(kube, namespace, K1.id)
        stored = status["resourceHashes"][0]["fields"][0]["hash"]
        assert stored != hash_value(value), "the unkeyed hash of the right guess confirms it"
        assert stored == hash_value(value, K1)
    finally:
        await r.stop()


async def test_upgrade_from_unkeyed_hashes_runs_nothing(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    r = await started(kubeconfig, namespace)  # no key: the status format of earlier releases
    await create_jt(kube, namespace, "t", watching("ConfigMap", "cfg", ["data"]))
    before = await key_id_is(kube, namespace, None)
    await r.stop()
    r = await started(kubeconfig, namespace, hash_key=K1)
    try:
        after = await key_id_is(kube, namespace, K1.id)
        assert after["resourceHashes"][0]["fields"][0]["hash"] != before["resourceHashes"][0]["fields"][0]["hash"]
        assert await no_jobs_for(kube, namespace, 0), "re-keying the baseline ran a Job"
    finally:
        await r.stop()


async def test_a_change_during_the_upgrade_runs_once(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1", "b": "1"})
    r = await started(kubeconfig, namespace)
    await create_jt(kube, namespace, "t", watching("ConfigMap", "cfg", ["data.a", "data.b"]))
    await key_id_is(kube, namespace, None)
    await r.stop()
    await patch_cm(kube, namespace, "cfg", {"data": {"b": "2"}})  # while no controller runs
    r = await started(kubeconfig, namespace, hash_key=K1)
    try:
        jobs = await wait_jobs(kube, namespace, "t", 1)
        reason = jobs[0]["metadata"]["annotations"]["jobtrigger.dev/reason"]
        assert f"ConfigMap/{namespace}/cfg updated (data.b)" in reason, reason  # exactly the changed field
        await key_id_is(kube, namespace, K1.id)
        assert await no_jobs_for(kube, namespace, 1)
    finally:
        await r.stop()


async def test_key_rotation_keeps_exactly_once(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    r = await started(kubeconfig, namespace, hash_key=K1)
    await create_jt(kube, namespace, "t", watching("ConfigMap", "cfg", ["data"]))
    await key_id_is(kube, namespace, K1.id)
    await r.stop()
    # rotation: the new key, the old one as previous (the chart's procedure); no change -> no run
    r = await started(kubeconfig, namespace, hash_key=K2, previous_hash_key=K1)
    await key_id_is(kube, namespace, K2.id)
    assert await no_jobs_for(kube, namespace, 0)
    await r.stop()
    # once re-keyed, the previous key is not needed any more; a change then runs once
    r = await started(kubeconfig, namespace, hash_key=K2)
    try:
        await wait_ready(kube, namespace, "t")
        await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
        await wait_jobs(kube, namespace, "t", 1)
        assert await no_jobs_for(kube, namespace, 1)
    finally:
        await r.stop()


async def test_a_change_during_a_rotation_runs_once(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    r = await started(kubeconfig, namespace, hash_key=K1)
    await create_jt(kube, namespace, "t", watching("ConfigMap", "cfg", ["data"]))
    await key_id_is(kube, namespace, K1.id)
    await r.stop()
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
    r = await started(kubeconfig, namespace, hash_key=K2, previous_hash_key=K1)
    try:
        await wait_jobs(kube, namespace, "t", 1)
        await key_id_is(kube, namespace, K2.id)
        assert await no_jobs_for(kube, namespace, 1)
    finally:
        await r.stop()


async def test_a_baseline_under_an_unknown_key_is_retaken_with_a_warning(
    kube: KubeClient, kubeconfig: str, namespace: str
) -> None:
    """A key the controller no longer has (lost, or rotated twice without keeping `previous`): the baseline cannot
    be verified, so a new one is taken without a run, and a Warning Event says so."""
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    r = await started(kubeconfig, namespace, hash_key=K1)
    await create_jt(kube, namespace, "t", watching("ConfigMap", "cfg", ["data"]))
    await key_id_is(kube, namespace, K1.id)
    await r.stop()
    r = await started(kubeconfig, namespace, hash_key=K3)
    try:
        await key_id_is(kube, namespace, K3.id)
        (event,) = await wait_event(kube, namespace, "t", "HashKeyUnknown", type_="Warning")
        assert K1.id in event["message"]
        assert await no_jobs_for(kube, namespace, 0)
    finally:
        await r.stop()
