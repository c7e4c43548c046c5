"""The chart's hash key Secret on a real API server: created once, kept by upgrades, rotated once per
``hashKey.rotation`` value, left behind by ``helm uninstall`` and adopted again by a reinstall.

``helm template`` (no cluster) renders a fresh random key every time (tests/unit/test_chart.py); here ``lookup``
sees the Secret that exists.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

from jobtrigger.kube.client import KubeClient
from tests.integration.test_helm_install import helm as helm  # the fixture (fetches helm if missing)
from tests.integration.test_user_roles import CHART, helm_cmd

ROTATION = "jobtrigger.dev/hash-key-rotation"


def env_value(data: dict[str, str], name: str = "key") -> bytes:
    """What the controller's env var holds: the Secret's value, decoded once (base64 text of 32 random bytes)."""
    value = base64.b64decode(data[name])
    assert len(base64.b64decode(value, validate=True)) == 32
    return value


async def test_hash_key_is_kept_across_upgrades_and_rotated_once(
    kube: KubeClient, helm: Path, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    release = f"jt-{secrets.token_hex(3)}"
    secret_path = f"/api/v1/namespaces/{namespace}/secrets/{release}-jobtrigger-hash-key"
    deploy_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{release}-jobtrigger"
    chart = [str(CHART), "--skip-crds", "--set", f"watchNamespaces={{{namespace}}}"]

    async def run(verb: str, *values: str) -> dict[str, Any]:
        await helm_cmd(helm, kubeconfig, namespace, tmp_path, verb, release, *chart, *values)
        return await kube.get(secret_path)

    async def pod_annotations() -> dict[str, str]:
        return dict((await kube.get(deploy_path))["spec"]["template"]["metadata"].get("annotations") or {})

    installed = True
    try:
        first = await run("install")
        assert set(first["data"]) == {"key"}
        key1 = env_value(first["data"])
        assert first["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        # the Deployment maps the Secret into the controller's env
        [container] = (await kube.get(deploy_path))["spec"]["template"]["spec"]["containers"]
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert refs == {
            "JOBTRIGGER_HASH_KEY": {"name": f"{release}-jobtrigger-hash-key", "key": "key"},
            "JOBTRIGGER_HASH_KEY_PREVIOUS": {
                "name": f"{release}-jobtrigger-hash-key",
                "key": "previous",
                "optional": True,
            },
        }

        # an upgrade (other values changed) keeps the key: lookup finds it
        same = await run("upgrade", "--set", "workers=2")
        assert same["data"] == first["data"]

        # rotation: the current key becomes `previous`, a new key; the pods roll (new pod template annotation)
        rotated = await run("upgrade", "--set", "hashKey.rotation=2026-05-01")
        assert env_value(rotated["data"], "previous") == key1
        key2 = env_value(rotated["data"])
        assert key2 != key1
        assert rotated["metadata"]["annotations"][ROTATION] == "2026-05-01"
        assert (await pod_annotations())[ROTATION] == "2026-05-01"

        # the same rotation value again (e.g. --reuse-values): nothing changes
        again = await run("upgrade", "--reuse-values")
        assert again["data"] == rotated["data"]

        # after the controller has rewritten its hashes: drop `previous`
        dropped = await run("upgrade", "--reuse-values", "--set", "hashKey.keepPrevious=false")
        assert set(dropped["data"]) == {"key"} and env_value(dropped["data"]) == key2

        # uninstall leaves the Secret (the JobTriggers' hashes outlive the release); a reinstall adopts it
        await helm_cmd(helm, kubeconfig, namespace, tmp_path, "uninstall", release)
        installed = False
        assert env_value((await kube.get(secret_path))["data"]) == key2
        reinstalled = await run("install")  # without the rotation value: no rotation either
        installed = True
        assert env_value(reinstalled["data"]) == key2
        assert reinstalled["metadata"]["annotations"][ROTATION] == "2026-05-01"  # the last one applied

        # a second rotation replaces `previous`
        second = await run("upgrade", "--set", "hashKey.rotation=2026-11-01")
        assert env_value(second["data"], "previous") == key2
        assert env_value(second["data"]) not in (key1, key2)
    finally:
        if installed:
            await helm_cmd(helm, kubeconfig, namespace, tmp_path, "uninstall", release)
