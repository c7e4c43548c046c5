"""Schedule triggers (cron, ``@once``): run the latest due slot, count the missed ones, then sleep in the queue
until the next slot (a delayed re-add: an idle schedule costs no task and no API call)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobtrigger import metrics
from jobtrigger.api.models import JobTrigger
from jobtrigger.jobs.builder import Occurrence
from jobtrigger.reactor.sync import gate
from jobtrigger.timefmt import parse as parse_time
from jobtrigger.timefmt import rfc3339_ms
from jobtrigger.triggers import schedule

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync


async def run_schedule(s: Sync, jt: JobTrigger) -> None:
    """Cron / ``@once``: run the due slot (Job name from the slot time), then sleep in the queue until the
    next one (a delayed re-add: an idle schedule costs no task and no API call)."""
    st = jt.spec.triggers.schedule
    assert st is not None
    sched = schedule.parse(st.cron, st.time_zone)  # validated before: cannot raise here
    created = parse_time(s.meta.get("creationTimestamp")) or s.now
    last = parse_time(s.status.get("lastScheduleTime"))
    d = schedule.decide(
        sched,
        created=created,
        last_schedule=last,
        now=s.now,
        starting_deadline=st.starting_deadline_seconds,
        suspended=jt.spec.suspend,
        once_done=False,
    )
    if d.action == "run" and d.slot is not None:
        slot = rfc3339_ms(d.slot)
        occurrence = Occurrence(
            trigger="schedule",
            key=schedule.occurrence_key(d.slot),
            reason=f"scheduled run for {slot} ({st.cron}{', ' + st.time_zone if st.time_zone else ''})",
            env=(("JOBTRIGGER_SCHEDULED_TIME", slot),),
        )
        if not await gate.run(s, jt, occurrence):
            return  # Queue / cap: the slot stays due; the latest due slot runs when there is room
        s.record({"lastScheduleTime": slot})
    elif d.action == "skip" and d.slot is not None:
        s.record({"lastScheduleTime": rfc3339_ms(d.slot)})
        metrics.SKIPPED.labels("deadline").inc()
        await s.ctl.events.emit(s.obj, "Warning", "MissedSchedule", d.reason)
    if d.missed:
        s.record({"missedSchedules": int(s.status.get("missedSchedules") or 0) + d.missed})
        if d.action == "run":
            await s.ctl.events.emit(s.obj, "Warning", "MissedSchedule", d.reason)
    if d.action == "wait" and d.reason == "suspended":
        s.pending("schedule: suspended")
    s.status["nextScheduleTime"] = rfc3339_ms(d.next_at) if d.next_at else None
    if d.next_at is not None:
        # wake up at the slot (a little after, so the clock has passed it when we look)
        s.ctl.queue.add_after(s.key, max(0.0, (d.next_at - s.now).total_seconds()) + 0.01)
