"""Schedule trigger logic: ``(schedule, persisted status, now) -> decision``. No I/O, no clock reads.

The controller calls :func:`decide` on every sync with ``status.lastScheduleTime`` and the current time, and gets
back at most one slot to run. Because the decision depends only on persisted state and ``now``, a restart, a
missed wake-up or a duplicate sync converge to the same slot, and the Job name derived from it
(:func:`occurrence_key`) makes a second create a no-op. Like the Kubernetes CronJob controller, only the most
recent missed slot runs after downtime or suspension; older ones are counted (never looped over without bound:
counting stops at :data:`MISSED_CAP`).

Time zones. A cron expression names wall-clock times in ``timeZone``; each matching wall-clock time runs at most
once, at its first real occurrence:

* spring forward (the clock skips, e.g. 02:00 -> 03:00): a slot in the skipped hour runs at the first instant
  after the gap (a daily 02:30 runs at 03:00 that day, as croniter does); if the schedule also names 03:00, the
  two coincide and run once.
* fall back (the clock repeats, e.g. 03:00 -> 02:00): a wall-clock time in the repeated hour runs at its first
  occurrence only (a daily 02:30 runs once, on the summer-time side). This applies to every schedule alike, so an
  hourly or ``*/15`` schedule has no run during the repeated hour; use the default UTC for strictly periodic
  schedules. (robfig/cron, used by CronJob, instead runs such a slot twice and skips one in a gap.)

The expression is evaluated by croniter on wall-clock times (as if they were UTC, so croniter's own DST handling
is never involved) and each result is mapped to a real instant by the rules above.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
ONCE = "@once"
#: counting of missed slots stops here; a per-second schedule down for a week has 604800 of them
MISSED_CAP = 1000
#: a fixed reference for the "does it ever match" check, so parse() stays independent of the clock
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)


class InvalidSchedule(ValueError):
    """The cron expression or time zone cannot be used; the message says why (for a status condition)."""


@dataclass(frozen=True)
class Schedule:
    """A parsed ``spec.triggers.schedule``: normalized expression (aliases expanded) and its zone."""

    expression: str
    zone: ZoneInfo
    once: bool = False

    @property
    def has_seconds(self) -> bool:
        """Six fields: the trailing one is seconds (croniter's layout)."""
        return not self.once and len(self.expression.split()) == 6


@dataclass(frozen=True)
class ScheduleDecision:
    """What the schedule trigger does now.

    ``run``: create the Job for ``slot`` and persist it as ``lastScheduleTime``. ``skip``: ``slot`` is past the
    starting deadline; persist it as ``lastScheduleTime`` without running. ``wait``: nothing is due. ``done``: an
    ``@once`` trigger already ran. ``missed`` counts slots that will never run (older ones when catching up, plus
    ``slot`` itself for ``skip``); with ``missed_capped`` it is a lower bound (there were more). ``next_at`` is when
    to look again (None: only when something else changes).
    """

    action: Literal["run", "wait", "skip", "done"]
    slot: datetime | None = None
    missed: int = 0
    next_at: datetime | None = None
    reason: str = ""
    missed_capped: bool = False


def parse(cron: str, time_zone: str | None) -> Schedule:
    """Validate and normalize a schedule; raises :class:`InvalidSchedule` with a message fit for a condition."""
    zone = _zone(time_zone)
    text = " ".join(cron.split())
    if not text:
        raise InvalidSchedule("cron: empty expression")
    if text.startswith("@"):
        key = text.lower()
        if key == ONCE:
            return Schedule(ONCE, zone, once=True)
        if key not in ALIASES:
            known = ", ".join([*ALIASES, ONCE])
            raise InvalidSchedule(f"cron: unknown alias {text!r} (known: {known})")
        return Schedule(ALIASES[key], zone)
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"cron: {text!r} has {len(fields)} fields; want 5 (minute hour day-of-month month day-of-week) "
            "or 6 (with a trailing seconds field)"
        )
    try:
        croniter(text, _PROBE, ret_type=datetime).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidSchedule(f"cron: {text!r} never matches a date") from None
    except (CroniterError, ValueError, TypeError, KeyError, IndexError) as e:
        raise InvalidSchedule(f"cron: {text!r} is not a valid expression: {e}") from None
    return Schedule(text, zone)


def _zone(name: str | None) -> ZoneInfo:
    if name is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: ZoneInfo("Europe") finds a directory, not a zone file
        raise InvalidSchedule(f"timeZone: unknown IANA time zone {name!r}") from None


def occurrence_key(slot: datetime) -> str:
    """The occurrence a slot's Job belongs to: ``schedule/<RFC 3339 UTC>``, stable for the same slot."""
    return f"schedule/{_rfc3339(slot)}"


# ----------------------------------------------------------------------------------------------- slots


def next_after(s: Schedule, t: datetime) -> datetime:
    """The first slot strictly after ``t`` (aware UTC in and out)."""
    nxt = _next(s, _utc(t, "t"))
    if nxt is None:
        raise InvalidSchedule(f"cron: {s.expression!r} has no occurrence after {_rfc3339(t)}")
    return nxt


def slots_between(s: Schedule, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The earliest ``limit`` slots in ``(after, until]``, ascending."""
    until = _utc(until, "until")
    out: list[datetime] = []
    if limit <= 0:
        return out
    for slot in _walk(s, _utc(after, "after")):
        if slot > until:
            break
        out.append(slot)
        if len(out) >= limit:
            break
    return out


def missed(s: Schedule, after: datetime, until: datetime, cap: int = MISSED_CAP) -> tuple[datetime | None, int, bool]:
    """``(latest, count, capped)`` for the slots in ``(after, until]``.

    ``latest`` is the most recent such slot (found directly, without iterating), ``count`` how many there are but
    at most ``cap``, and ``capped`` whether there are more than ``cap``; cost is bounded by ``cap``.
    """
    after, until = _utc(after, "after"), _utc(until, "until")
    latest = _latest_at_or_before(s, until) if until > after else None
    if latest is None or latest <= after:
        return None, 0, False
    count = 0
    for slot in _walk(s, after):
        if slot > until:
            break
        if count >= cap:
            return latest, cap, True
        count += 1
    return latest, count, False


def _next(s: Schedule, t: datetime) -> datetime | None:
    return next(_walk(s, t), None)


def _walk(s: Schedule, t: datetime) -> Iterator[datetime]:
    """Slots strictly after ``t``, ascending, each instant once; ends only if croniter finds no further date."""
    _require_cron(s)
    it = croniter(s.expression, _as_wall_utc(_start_wall(t, s.zone)), ret_type=datetime)
    last = t
    while True:
        try:
            wall = it.get_next(datetime).replace(tzinfo=None)
        except CroniterBadDateError:
            return
        slot, shifted = _to_instant(wall, s.zone)
        if shifted:
            # later wall times in the same gap map to the same instant: resume after the gap
            it.set_current(_as_wall_utc(slot.astimezone(s.zone).replace(tzinfo=None)), force=True)
        if slot > last:
            last = slot
            yield slot


def _latest_at_or_before(s: Schedule, t: datetime) -> datetime | None:
    _require_cron(s)
    local = t.astimezone(s.zone)
    # croniter's get_prev(x) is the latest wall time strictly before x
    bound = _repeat_end(t, local, s.zone) if _in_repeat(local) else local.replace(tzinfo=None) + _TICK
    try:
        wall = croniter(s.expression, _as_wall_utc(bound), ret_type=datetime).get_prev(datetime)
    except CroniterBadDateError:
        return None
    return _to_instant(wall.replace(tzinfo=None), s.zone)[0]


def _start_wall(t: datetime, zone: ZoneInfo) -> datetime:
    """The wall time after which the slots following instant ``t`` begin."""
    local = t.astimezone(zone)
    if _in_repeat(local):
        # t is in the repeated hour: those wall times already had their (first) occurrence before t
        return _repeat_end(t, local, zone) - _TICK
    return local.replace(tzinfo=None)


def _in_repeat(local: datetime) -> bool:
    """``local`` is the second occurrence of a wall time repeated by a backward clock change."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _repeat_end(t: datetime, local: datetime, zone: ZoneInfo) -> datetime:
    """For ``t`` in a repeated hour: the first wall time after the repeat (naive)."""
    before, after = local.replace(fold=0).utcoffset(), local.utcoffset()
    assert before is not None and after is not None
    change = _offset_change(t - (before - after), t, zone, after)
    return (change + before).replace(tzinfo=None)


def _to_instant(wall: datetime, zone: ZoneInfo) -> tuple[datetime, bool]:
    """Map a naive wall time to its first real occurrence; a time in a gap maps to the end of the gap (shifted)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    back = first.astimezone(zone)
    if back.replace(tzinfo=None) == wall:
        return first, False
    # nonexistent: fold=1 reads it with the offset after the change (an instant before the gap),
    # fold=0 with the offset before it (an instant after the gap)
    earlier = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _offset_change(earlier, first, zone, back.utcoffset()), True


def _offset_change(lo: datetime, hi: datetime, zone: ZoneInfo, offset: timedelta | None) -> datetime:
    """The first whole second in ``(lo, hi]`` whose UTC offset is ``offset`` (``hi`` has it, ``lo`` does not)."""
    a, b = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while b - a > 1:
        m = (a + b) // 2
        if datetime.fromtimestamp(m, zone).utcoffset() == offset:
            b = m
        else:
            a = m
    return datetime.fromtimestamp(b, UTC)


def _require_cron(s: Schedule) -> None:
    if s.once:
        raise ValueError("@once has no recurring slots")


def _as_wall_utc(wall: datetime) -> datetime:
    return wall.replace(tzinfo=UTC, fold=0)


def _utc(t: datetime, name: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {t!r}")
    return t.astimezone(UTC)


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------- decision


def decide(
    s: Schedule,
    *,
    created: datetime,
    last_schedule: datetime | None,
    now: datetime,
    starting_deadline: int | None,
    suspended: bool,
    once_done: bool,
) -> ScheduleDecision:
    """Decide what the schedule trigger does now.

    ``created`` is the JobTrigger's creationTimestamp, ``last_schedule`` the persisted ``status.lastScheduleTime``
    (the last slot run or skipped), ``starting_deadline`` ``startingDeadlineSeconds``. The same inputs always give
    the same slot, so the Job name stays stable across retries and restarts.
    """
    created, now = _utc(created, "created"), _utc(now, "now")
    last = None if last_schedule is None else _utc(last_schedule, "last_schedule")
    deadline = None if starting_deadline is None else timedelta(seconds=starting_deadline)

    if s.once:
        # the slot is the creation time, so the Job name survives restarts
        if last is not None or once_done:
            ran = f" at {_rfc3339(last)}" if last is not None else ""
            return ScheduleDecision("done", slot=last, reason=f"@once already ran{ran}")
        if suspended:
            return ScheduleDecision("wait", reason="suspended")
        if deadline is not None and now - created > deadline:
            return ScheduleDecision(
                "skip", slot=created, missed=1, reason=_late(created, now, starting_deadline, "@once run")
            )
        return ScheduleDecision("run", slot=created, reason="@once: run once after creation")

    if suspended:
        # nothing advances: on resume the usual rules apply (latest slot only, deadline honoured)
        return ScheduleDecision("wait", reason="suspended")

    reference = last if last is not None else created
    # count one more than reported so "more than MISSED_CAP older slots" is exact
    latest, count, capped = missed(s, reference, now, cap=MISSED_CAP + 1)
    next_at = _next(s, max(reference, now))
    if latest is None:
        when = f"next slot at {_rfc3339(next_at)}" if next_at is not None else "no further slot"
        return ScheduleDecision("wait", next_at=next_at, reason=when)

    older = count - 1
    older_text = f"more than {older}" if capped else str(older)
    if deadline is not None and now - latest > deadline:
        reason = _late(latest, now, starting_deadline, "slot")
        if older:
            reason += f"; {older_text} older slot(s) also missed"
        return ScheduleDecision("skip", slot=latest, missed=count, next_at=next_at, reason=reason, missed_capped=capped)
    reason = f"slot {_rfc3339(latest)} is due"
    if older:
        reason += f"; {older_text} older slot(s) skipped (only the most recent one runs)"
    return ScheduleDecision("run", slot=latest, missed=older, next_at=next_at, reason=reason, missed_capped=capped)


def _late(slot: datetime, now: datetime, deadline: int | None, what: str) -> str:
    late = (now - slot).total_seconds()
    return f"{what} {_rfc3339(slot)} missed: {late:g}s late, startingDeadlineSeconds is {deadline}"
