"""Objects the controller did not make are never overwritten by what a JobTrigger writes.

A JobTrigger's author chooses the output target's name and (through the occurrence) the Job's name is derived
from it: both could name an object someone else owns. An unlabelled ConfigMap of the output target's name stays as
it was (the controller finds its own output only by the ``jobtrigger.dev/output-of`` label; the create is refused
with 409 AlreadyExists and reported as ``OutputFailed``); everything the controller does write carries an
ownerReference to its JobTrigger, so deleting the JobTrigger removes it and never anything else.
"""

from __future__ import annotations

import time

from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import Runner, create_cm, create_jt, get_jt, wait_for, wait_ready
from tests.integration.events import wait_event
from tests.integration.test_output import run_and_finish, template


async def test_a_foreign_object_of_the_output_name_is_never_overwritten(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    ns = namespace
    foreign = await create_cm(kube, ns, "result", {"theirs": "keep me"})
    await create_jt(
        kube,
        ns,
        "t",
        {"manual": {}},
        jobTemplate=template("main"),
        output={"source": "TerminationMessage", "kind": "ConfigMap", "name": "result"},
    )
    await wait_ready(kube, ns, "t")
    await run_and_finish(kube, ns, "t", "one", {"main": "ours"})

    async def error() -> str | None:
        return (await get_jt(kube, ns, "t"))["status"].get("lastOutputError")

    message = await wait_for(error, "status.lastOutputError")
    assert "result" in message and "409" in message, message
    await wait_event(kube, ns, "t", "OutputFailed")  # written in the background: wait, never assert at once
    after = await kube.get(f"/api/v1/namespaces/{ns}/configmaps/result")
    assert after["data"] == {"theirs": "keep me"}
    assert after["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences") and not after["metadata"].get("labels")

    # a JobTrigger's own output, and its Jobs, are owned by it: the garbage collector removes them with it
    await create_jt(
        kube,
        ns,
        "own",
        {"manual": {}},
        jobTemplate=template("main"),
        output={"source": "TerminationMessage", "kind": "ConfigMap", "name": "own-result"},
    )
    await wait_ready(kube, ns, "own")
    job = await run_and_finish(kube, ns, "own", "one", {"main": "ours"})
    own = await kube.get(f"/api/v1/namespaces/{ns}/configmaps/own-result")
    jt = await get_jt(kube, ns, "own")
    for obj in (own, await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{job}")):
        [ref] = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "JobTrigger",
            "own",
            jt["metadata"]["uid"],
            True,
        )
    await kube.delete(f"/apis/jobtrigger.dev/v1alpha1/namespaces/{ns}/jobtriggers/own")

    async def collected() -> bool:
        for path in (f"/api/v1/namespaces/{ns}/configmaps/own-result", f"/apis/batch/v1/namespaces/{ns}/jobs/{job}"):
            try:
                await kube.get(path)
                return False
            except ApiError as e:
                assert e.status == 404
        return True

    t0 = time.monotonic()
    await wait_for(collected, "the JobTrigger's output and Job garbage-collected", timeout=120)
    print(f"garbage-collected after {time.monotonic() - t0:.1f}s")
    assert (await kube.get(f"/api/v1/namespaces/{ns}/configmaps/result"))["data"] == {"theirs": "keep me"}
