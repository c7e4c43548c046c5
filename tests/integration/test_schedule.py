"""Schedules on the real API server: per-second cron in real time, @once, suspend, time zone via an injected clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import (
    Runner,
    condition,
    create_jt,
    get_jt,
    jobs_of,
    stays,
    wait_for,
    wait_jobs,
    wait_ready,
)
from tests.integration.events import wait_event


def scheduled_time(job: dict[str, Any]) -> str:
    env = {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    return env["JOBTRIGGER_SCHEDULED_TIME"]


async def test_every_two_seconds_one_job_per_slot_across_restart(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    await create_jt(kube, namespace, "tick", {"schedule": {"cron": "* * * * * */2"}}, history=100)
    await wait_jobs(kube, namespace, "tick", 2, timeout=10)
    await runner.restart()
    jobs = await wait_jobs(kube, namespace, "tick", 4, timeout=15)
    slots = [scheduled_time(j) for j in jobs]
    assert max(Counter(slots).values()) == 1, f"a slot ran twice: {slots}"
    for s in slots:
        assert int(s[17:19]) % 2 == 0, s  # seconds field of the slot
    # the schedule goes on every 2 s: compare the status with the Jobs listed after it was read
    st = (await get_jt(kube, namespace, "tick"))["status"]
    now = [scheduled_time(j) for j in await jobs_of(kube, namespace, "tick")]
    assert st["lastScheduleTime"] in now
    assert st["nextScheduleTime"] > st["lastScheduleTime"]
    assert jobs[0]["metadata"]["labels"]["jobtrigger.dev/trigger"] == "schedule"


async def test_once_runs_once_and_never_again(kube: KubeClient, namespace: str, runner: Runner) -> None:
    jt = await create_jt(kube, namespace, "once", {"schedule": {"cron": "@once"}})
    jobs = await wait_jobs(kube, namespace, "once", 1)
    assert scheduled_time(jobs[0]).startswith(jt["metadata"]["creationTimestamp"][:19])
    await runner.restart()

    async def one() -> bool:
        return len(await jobs_of(kube, namespace, "once")) == 1

    assert await stays(one, 2.0)

    async def done() -> bool:
        # the restart may have cut the first controller between the create and its status write
        st = (await get_jt(kube, namespace, "once"))["status"]
        return bool(st.get("lastScheduleTime")) and "nextScheduleTime" not in st

    await wait_for(done, "status.lastScheduleTime set and no nextScheduleTime")


async def test_suspend_stops_and_resume_runs_only_the_latest_slot(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    await create_jt(kube, namespace, "s", {"schedule": {"cron": "* * * * * *"}}, suspend=True, history=100)
    jt = await wait_ready(kube, namespace, "s")
    assert (condition(jt) or {})["reason"] == "Suspended"

    async def none() -> bool:
        return await jobs_of(kube, namespace, "s") == []

    assert await stays(none, 3.0)
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/s"
    await kube.merge_patch(path, {"spec": {"suspend": False}})
    await wait_jobs(kube, namespace, "s", 1)

    async def missed() -> int | None:
        return (await get_jt(kube, namespace, "s"))["status"].get("missedSchedules")

    assert await wait_for(missed, "missedSchedules counted") >= 2  # the slots passed while suspended
    await wait_event(kube, namespace, "s", "MissedSchedule")  # written in the background: wait, never assert at once


async def test_time_zone_dst_gap_with_injected_clock(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    """Europe/Berlin springs forward on the last Sunday of March (02:00 -> 03:00): a daily 02:30 runs at 03:00."""
    year = datetime.now(UTC).year + 1
    day = max(d for d in range(25, 32) if datetime(year, 3, d).weekday() == 6)
    fake_now = datetime(year, 3, day, 1, 0, 1, tzinfo=UTC)  # 03:00:01 CEST
    runner = Runner(kubeconfig, namespace, clock=lambda: fake_now)
    await runner.start()
    try:
        await create_jt(kube, namespace, "tz", {"schedule": {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}})
        jobs = await wait_jobs(kube, namespace, "tz", 1)
        assert scheduled_time(jobs[0]) == f"{year}-03-{day:02d}T01:00:00.000Z"
        await asyncio.sleep(1.0)
        assert len(await jobs_of(kube, namespace, "tz")) == 1
        nxt = datetime(year, 3, day, 0, 30, tzinfo=UTC) + timedelta(days=1)  # 02:30 CEST the next day

        async def scheduled() -> dict[str, Any] | None:
            # written after the Job create in the same sync: awaited, not read once
            st: dict[str, Any] = (await get_jt(kube, namespace, "tz"))["status"]
            return st if st.get("nextScheduleTime") == nxt.strftime("%Y-%m-%dT%H:%M:%S.000Z") else None

        st = await wait_for(scheduled, "status.nextScheduleTime the next day's 02:30 CEST")
        assert st["missedSchedules"] >= 80  # the daily slots between the creation (now) and the fake clock
    finally:
        await runner.stop()
