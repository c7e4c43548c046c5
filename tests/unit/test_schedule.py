"""Tests for jobtrigger.triggers.schedule: parsing, slot arithmetic across DST, and the pure decision."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobtrigger.triggers.schedule import (
    ALIASES,
    MISSED_CAP,
    InvalidSchedule,
    Schedule,
    ScheduleDecision,
    decide,
    missed,
    next_after,
    occurrence_key,
    parse,
    slots_between,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def local(zone: str, year: int, month: int, day: int, hour: int, minute: int = 0, *, fold: int = 0) -> datetime:
    """An instant given as wall time in ``zone`` (fold picks the occurrence of a repeated time), as UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


CREATED = utc(2024, 1, 1)


def run_decide(
    s: Schedule,
    *,
    created: datetime = CREATED,
    last_schedule: datetime | None = None,
    now: datetime,
    starting_deadline: int | None = None,
    suspended: bool = False,
    once_done: bool = False,
) -> ScheduleDecision:
    return decide(
        s,
        created=created,
        last_schedule=last_schedule,
        now=now,
        starting_deadline=starting_deadline,
        suspended=suspended,
        once_done=once_done,
    )


# ------------------------------------------------------------------------------------------------ parse


@pytest.mark.parametrize(
    ("alias", "expr"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_aliases_expand(alias: str, expr: str) -> None:
    s = parse(alias, None)
    assert s == Schedule(expr, ZoneInfo("UTC"), once=False)
    assert not s.has_seconds


def test_alias_table_is_complete() -> None:
    assert len(ALIASES) == 7


def test_alias_case_and_whitespace() -> None:
    assert parse("  @Daily ", BERLIN).expression == "0 0 * * *"
    assert parse(" 0   5\t* * 1-5 ", None).expression == "0 5 * * 1-5"


def test_once() -> None:
    s = parse("@once", "Europe/Berlin")
    assert s.once and s.expression == "@once" and s.zone.key == BERLIN
    with pytest.raises(ValueError, match="@once"):
        next_after(s, utc(2024, 1, 1))


def test_default_zone_is_utc() -> None:
    assert parse("0 * * * *", None).zone.key == "UTC"
    assert parse("0 * * * *", NEW_YORK).zone.key == NEW_YORK


def test_seconds_field() -> None:
    s = parse("0 * * * * 30", None)
    assert s.has_seconds
    assert next_after(s, utc(2024, 1, 1, 10, 5)) == utc(2024, 1, 1, 11, 0, 30)
    every15 = parse("* * * * * */15", None)
    t = utc(2024, 1, 1, 10, 5, 7)
    got = [t := next_after(every15, t) for _ in range(4)]
    assert got == [utc(2024, 1, 1, 10, 5, s) for s in (15, 30, 45)] + [utc(2024, 1, 1, 10, 6, 0)]


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * * *", "4 fields"),
        ("0 0 * * * * 2024", "7 fields"),
        ("61 * * * *", "not a valid expression"),
        ("0 24 * * *", "not a valid expression"),
        ("a b c d e", "not a valid expression"),
        ("*/0 * * * *", "not a valid expression"),
        ("H * * * *", "not a valid expression"),
        ("0 0 * * 8", "not a valid expression"),
        ("@reboot", "unknown alias"),
        ("@every 5m", "unknown alias"),
        ("0 0 30 2 *", "never matches"),
        ("0 0 31 4 *", "never matches"),
    ],
)
def test_bad_expressions(cron: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        parse(cron, None)


@pytest.mark.parametrize("zone", ["Europe", "Nope/Nowhere", "", "../etc/passwd", "/etc/localtime", "Europe/Berlin "])
def test_bad_zones(zone: str) -> None:
    with pytest.raises(InvalidSchedule, match="timeZone"):
        parse("0 * * * *", zone)


def test_invalid_schedule_is_value_error() -> None:
    assert issubclass(InvalidSchedule, ValueError)


# ------------------------------------------------------------------------------------------------ slots


def test_next_after_is_strict_and_utc() -> None:
    s = parse("*/15 * * * *", None)
    assert next_after(s, utc(2024, 1, 1, 10, 15)) == utc(2024, 1, 1, 10, 30)
    assert next_after(s, utc(2024, 1, 1, 10, 14, 59, 999999)) == utc(2024, 1, 1, 10, 15)
    got = next_after(s, datetime(2024, 1, 1, 12, 0, tzinfo=ZoneInfo(BERLIN)))  # 11:00Z
    assert got == utc(2024, 1, 1, 11, 15) and got.tzinfo is UTC


def test_naive_datetimes_rejected() -> None:
    s = parse("* * * * *", None)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_after(s, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        run_decide(s, now=datetime(2024, 1, 1))


def test_berlin_spring_forward_daily_runs_at_gap_end() -> None:
    # 2024-03-31: 02:00 CET -> 03:00 CEST; 02:30 does not exist and runs at 03:00 CEST (01:00Z)
    s = parse("30 2 * * *", BERLIN)
    t = local(BERLIN, 2024, 3, 30, 12)
    got = [t := next_after(s, t) for _ in range(2)]
    assert got == [utc(2024, 3, 31, 1, 0), local(BERLIN, 2024, 4, 1, 2, 30)]


def test_berlin_spring_forward_gap_slots_coincide_once() -> None:
    # 02:00, 02:30 (both in the gap) and 03:00 are the same instant: one slot
    s = parse("0,30 2-3 * * *", BERLIN)
    got = slots_between(s, utc(2024, 3, 30, 12), utc(2024, 3, 31, 12), limit=10)
    assert got == [
        local(BERLIN, 2024, 3, 31, 3, 0),
        local(BERLIN, 2024, 3, 31, 3, 30),
    ]


def test_berlin_spring_forward_hourly() -> None:
    s = parse("0 * * * *", BERLIN)
    got = slots_between(s, utc(2024, 3, 30, 23, 30), utc(2024, 3, 31, 3), limit=10)
    # 01:00 CET, then 03:00 CEST (the 02:00 wall time maps onto it), 04:00, 05:00 CEST
    assert got == [utc(2024, 3, 31, 0), utc(2024, 3, 31, 1), utc(2024, 3, 31, 2), utc(2024, 3, 31, 3)]


def test_berlin_fall_back_daily_runs_once_at_first_occurrence() -> None:
    # 2024-10-27: 03:00 CEST -> 02:00 CET; 02:30 happens twice, runs at the first (00:30Z) only
    s = parse("30 2 * * *", BERLIN)
    got = slots_between(s, utc(2024, 10, 26, 12), utc(2024, 10, 28, 12), limit=10)
    assert got == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]
    assert next_after(s, utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 28, 1, 30)


def test_berlin_fall_back_hourly_skips_repeated_hour() -> None:
    s = parse("0 * * * *", BERLIN)
    got = slots_between(s, utc(2024, 10, 26, 22, 30), utc(2024, 10, 27, 3), limit=10)
    # 01:00 CEST, 02:00 CEST, (02:00 CET already happened), 03:00 CET, 04:00 CET
    assert got == [utc(2024, 10, 26, 23), utc(2024, 10, 27, 0), utc(2024, 10, 27, 2), utc(2024, 10, 27, 3)]
    assert [g.astimezone(ZoneInfo(BERLIN)).hour for g in got] == [1, 2, 3, 4]


def test_next_after_from_inside_repeated_hour() -> None:
    s = parse("*/20 * * * *", NEW_YORK)
    inside = local(NEW_YORK, 2024, 11, 3, 1, 30, fold=1)  # 01:30 EST, second pass
    assert next_after(s, inside) == local(NEW_YORK, 2024, 11, 3, 2, 0)
    latest, count, capped = missed(s, local(NEW_YORK, 2024, 11, 3, 1, 0), inside)
    assert (latest, count, capped) == (local(NEW_YORK, 2024, 11, 3, 1, 40), 2, False)


def test_new_york_spring_forward() -> None:
    # 2024-03-10: 02:00 EST -> 03:00 EDT
    s = parse("30 2 * * *", NEW_YORK)
    got = slots_between(s, utc(2024, 3, 9, 12), utc(2024, 3, 11, 12), limit=10)
    assert got == [utc(2024, 3, 10, 7, 0), utc(2024, 3, 11, 6, 30)]
    assert got[0].astimezone(ZoneInfo(NEW_YORK)).isoformat() == "2024-03-10T03:00:00-04:00"


def test_new_york_fall_back() -> None:
    # 2024-11-03: 02:00 EDT -> 01:00 EST; 01:30 runs once, at 01:30 EDT (05:30Z)
    s = parse("30 1 * * *", NEW_YORK)
    got = slots_between(s, utc(2024, 11, 2, 12), utc(2024, 11, 4, 12), limit=10)
    assert got == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]


def test_seconds_schedule_across_dst() -> None:
    s = parse("* * * * * *", BERLIN)
    # spring: the last second before the gap, then the gap end (03:00:00 CEST), then on
    t = utc(2024, 3, 31, 0, 59, 58)
    assert [t := next_after(s, t) for _ in range(3)] == [
        utc(2024, 3, 31, 0, 59, 59),
        utc(2024, 3, 31, 1, 0, 0),
        utc(2024, 3, 31, 1, 0, 1),
    ]
    # fall: after 02:59:59 CEST the repeated hour is skipped, next is 03:00:00 CET
    assert next_after(s, utc(2024, 10, 27, 0, 59, 59)) == utc(2024, 10, 27, 2, 0, 0)


def test_slots_between_bounds_and_limit() -> None:
    s = parse("0 * * * *", None)
    a, b = utc(2024, 1, 1, 0), utc(2024, 1, 1, 5)
    assert slots_between(s, a, b, limit=100) == [utc(2024, 1, 1, h) for h in range(1, 6)]  # (a, b]
    assert slots_between(s, a, b, limit=2) == [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)]
    assert slots_between(s, a, b, limit=0) == []
    assert slots_between(s, b, a, limit=5) == []


def test_missed_counts_and_caps() -> None:
    s = parse("0 * * * *", None)
    assert missed(s, utc(2024, 1, 1, 0), utc(2024, 1, 1, 5, 30)) == (utc(2024, 1, 1, 5), 5, False)
    assert missed(s, utc(2024, 1, 1, 0), utc(2024, 1, 1, 5, 30), cap=5) == (utc(2024, 1, 1, 5), 5, False)
    assert missed(s, utc(2024, 1, 1, 0), utc(2024, 1, 1, 5, 30), cap=4) == (utc(2024, 1, 1, 5), 4, True)
    assert missed(s, utc(2024, 1, 1, 0), utc(2024, 1, 1, 0, 59)) == (None, 0, False)
    assert missed(s, utc(2024, 1, 1, 0), utc(2024, 1, 1, 1)) == (utc(2024, 1, 1, 1), 1, False)  # inclusive


def test_occurrence_key() -> None:
    assert occurrence_key(utc(2024, 3, 31, 1)) == "schedule/2024-03-31T01:00:00Z"
    assert occurrence_key(datetime(2024, 3, 31, 3, tzinfo=ZoneInfo(BERLIN))) == "schedule/2024-03-31T01:00:00Z"


# --------------------------------------------------------------------------------------------- decide


def test_first_run_after_creation() -> None:
    s = parse("0 * * * *", None)
    created = utc(2024, 1, 1, 10, 0, 30)
    d = run_decide(s, created=created, now=utc(2024, 1, 1, 11, 0, 5))
    assert d.action == "run"
    assert d.slot == utc(2024, 1, 1, 11)
    assert d.missed == 0 and not d.missed_capped
    assert d.next_at == utc(2024, 1, 1, 12)


def test_slot_at_creation_instant_does_not_run() -> None:
    s = parse("0 * * * *", None)
    d = run_decide(s, created=utc(2024, 1, 1, 10), now=utc(2024, 1, 1, 10, 30))
    assert d.action == "wait" and d.next_at == utc(2024, 1, 1, 11)


def test_nothing_due() -> None:
    s = parse("0 * * * *", None)
    d = run_decide(s, created=utc(2024, 1, 1, 10, 0, 30), now=utc(2024, 1, 1, 10, 59, 59))
    assert d == ScheduleDecision("wait", next_at=utc(2024, 1, 1, 11), reason=d.reason)
    assert "2024-01-01T11:00:00Z" in d.reason
    # right after a run: the ran slot is the reference and is not repeated
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 11), now=utc(2024, 1, 1, 11, 0, 10))
    assert d.action == "wait" and d.slot is None and d.next_at == utc(2024, 1, 1, 12)


def test_catch_up_runs_only_latest() -> None:
    s = parse("0 * * * *", None)
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 0), now=utc(2024, 1, 1, 10, 30))
    assert d.action == "run"
    assert d.slot == utc(2024, 1, 1, 10)
    assert d.missed == 9 and not d.missed_capped
    assert d.next_at == utc(2024, 1, 1, 11)
    assert "9 older" in d.reason


def test_reference_is_last_schedule_not_created() -> None:
    s = parse("0 * * * *", None)
    d = run_decide(s, created=utc(2023, 1, 1), last_schedule=utc(2024, 1, 1, 9), now=utc(2024, 1, 1, 10, 30))
    assert d.action == "run" and d.slot == utc(2024, 1, 1, 10) and d.missed == 0


def test_starting_deadline_skip() -> None:
    s = parse("0 * * * *", None)
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 9), now=utc(2024, 1, 1, 10, 5), starting_deadline=60)
    assert d.action == "skip"
    assert d.slot == utc(2024, 1, 1, 10)
    assert d.missed == 1
    assert d.next_at == utc(2024, 1, 1, 11)
    assert "startingDeadlineSeconds" in d.reason
    # within the deadline it runs; exactly at the deadline too
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 9), now=utc(2024, 1, 1, 10, 5), starting_deadline=600)
    assert d.action == "run" and d.slot == utc(2024, 1, 1, 10)
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 9), now=utc(2024, 1, 1, 10, 1), starting_deadline=60)
    assert d.action == "run"
    # after the skip is persisted, the next evaluation waits for the next slot
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 10), now=utc(2024, 1, 1, 10, 5), starting_deadline=60)
    assert d.action == "wait" and d.next_at == utc(2024, 1, 1, 11)


def test_starting_deadline_skip_after_downtime_counts_all() -> None:
    s = parse("0 * * * *", None)
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 0), now=utc(2024, 1, 1, 10, 30), starting_deadline=300)
    assert d.action == "skip" and d.slot == utc(2024, 1, 1, 10) and d.missed == 10


def test_capped_counting_per_second_week_downtime_is_fast() -> None:
    s = parse("* * * * * *", None)
    start = time.perf_counter()
    d = run_decide(s, last_schedule=utc(2024, 1, 1), now=utc(2024, 1, 8, 0, 0, 0, 500000))
    elapsed = time.perf_counter() - start
    assert d.action == "run"
    assert d.slot == utc(2024, 1, 8)
    assert d.missed == MISSED_CAP and d.missed_capped
    assert f"more than {MISSED_CAP}" in d.reason
    assert d.next_at == utc(2024, 1, 8, 0, 0, 1)
    assert elapsed < 1.0
    d = run_decide(s, last_schedule=utc(2024, 1, 1), now=utc(2024, 1, 8, 0, 0, 5, 500000), starting_deadline=0)
    assert d.action == "skip" and d.missed_capped and d.missed > MISSED_CAP


def test_suspended_waits_without_wakeup() -> None:
    s = parse("0 * * * *", None)
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 0), now=utc(2024, 1, 1, 10, 30), suspended=True)
    assert d.action == "wait" and d.slot is None and d.next_at is None and d.missed == 0
    assert d.reason == "suspended"


def test_resume_runs_latest_or_skips_past_deadline() -> None:
    s = parse("0 * * * *", None)
    # suspended from 00:00 to 10:30: on resume only the 10:00 slot runs ...
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 0), now=utc(2024, 1, 1, 10, 30))
    assert d.action == "run" and d.slot == utc(2024, 1, 1, 10) and d.missed == 9
    # ... unless it is past the starting deadline
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 0), now=utc(2024, 1, 1, 10, 30), starting_deadline=60)
    assert d.action == "skip" and d.missed == 10


def test_once_runs_then_done() -> None:
    s = parse("@once", None)
    created = utc(2024, 1, 1, 10, 0, 7)
    d = run_decide(s, created=created, now=utc(2024, 1, 1, 10, 0, 8))
    assert d.action == "run" and d.slot == created and d.next_at is None
    # a restart much later still names the same slot
    again = run_decide(s, created=created, now=utc(2024, 1, 2))
    assert again.slot == created and occurrence_key(again.slot) == "schedule/2024-01-01T10:00:07Z"
    d = run_decide(s, created=created, last_schedule=created, now=utc(2024, 1, 3))
    assert d.action == "done" and d.slot == created and d.next_at is None
    d = run_decide(s, created=created, now=utc(2024, 1, 3), once_done=True)
    assert d.action == "done"
    d = run_decide(s, created=created, now=utc(2024, 1, 3), once_done=True, suspended=True)
    assert d.action == "done"


def test_once_suspended_and_deadline() -> None:
    s = parse("@once", None)
    created = utc(2024, 1, 1, 10)
    d = run_decide(s, created=created, now=utc(2024, 1, 1, 10, 5), suspended=True)
    assert d.action == "wait" and d.next_at is None
    d = run_decide(s, created=created, now=utc(2024, 1, 1, 10, 5), starting_deadline=60)
    assert d.action == "skip" and d.slot == created and d.missed == 1
    d = run_decide(s, created=created, now=utc(2024, 1, 1, 10, 0, 30), starting_deadline=60)
    assert d.action == "run"


def test_idempotent_slot_is_stable() -> None:
    s = parse("*/5 * * * *", BERLIN)
    last = utc(2024, 1, 1, 9)
    a = run_decide(s, last_schedule=last, now=utc(2024, 1, 1, 10, 7, 12))
    b = run_decide(s, last_schedule=last, now=utc(2024, 1, 1, 10, 7, 12))
    assert a == b and a.action == "run" and a.slot == utc(2024, 1, 1, 10, 5)
    # a retry a little later, before the next slot and before status was persisted: same slot, same Job name
    c = run_decide(s, last_schedule=last, now=utc(2024, 1, 1, 10, 9, 59))
    assert a.slot is not None and c.slot == a.slot and occurrence_key(c.slot) == occurrence_key(a.slot)


def test_decide_accepts_other_offsets_returns_utc() -> None:
    s = parse("0 * * * *", None)
    now = datetime(2024, 1, 1, 12, 30, tzinfo=ZoneInfo(BERLIN))  # 11:30Z
    d = run_decide(s, created=utc(2024, 1, 1, 10, 30), now=now)
    assert d.slot == utc(2024, 1, 1, 11) and d.slot.tzinfo is UTC
    assert d.next_at is not None and d.next_at.tzinfo is UTC


def test_clock_skew_last_schedule_in_future() -> None:
    s = parse("0 * * * *", None)
    d = run_decide(s, last_schedule=utc(2024, 1, 1, 12), now=utc(2024, 1, 1, 11, 59))
    assert d.action == "wait" and d.next_at == utc(2024, 1, 1, 13)


def test_decide_daily_across_fall_back_runs_once() -> None:
    s = parse("30 2 * * *", BERLIN)
    first = run_decide(s, last_schedule=utc(2024, 10, 26, 0, 30), now=utc(2024, 10, 27, 0, 31))
    assert first.action == "run" and first.slot == utc(2024, 10, 27, 0, 30)
    # an hour later the wall clock reads 02:31 again: nothing to do
    second = run_decide(s, last_schedule=first.slot, now=utc(2024, 10, 27, 1, 31))
    assert second.action == "wait" and second.next_at == utc(2024, 10, 28, 1, 30)


# ------------------------------------------------------------------------------------- property tests


def _field(spec: str, lo: int, hi: int) -> set[int]:
    """A small, independent cron field matcher: ``*``, ``*/n``, ``a``, ``a-b``, ``a-b/n`` and lists."""
    out: set[int] = set()
    for part in spec.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a, b = (int(x) for x in rng.split("-"))
        else:
            a = b = int(rng)
        out.update(range(a, b + 1, int(step) if step else 1))
    return out


MINUTES = ["*", "0", "15", "*/7", "5,35", "10-20", "*/15", "59", "20-40/10"]
HOURS = ["*", "0", "3", "*/6", "9-17", "1,13", "23"]
DOWS = ["*", "1-5", "0", "6", "2,4"]


def _matches(minute: str, hour: str, dow: str, m: datetime) -> bool:
    return (
        m.minute in _field(minute, 0, 59)
        and m.hour in _field(hour, 0, 23)
        and (m.isoweekday() % 7) in _field(dow, 0, 6)
    )


@settings(max_examples=50, deadline=None)
@given(
    minute=st.sampled_from(MINUTES),
    hour=st.sampled_from(HOURS),
    dow=st.sampled_from(DOWS),
    last_offset=st.integers(min_value=0, max_value=3 * 86400),
    span=st.integers(min_value=0, max_value=3 * 86400),
)
def test_decide_matches_bruteforce_reference(minute: str, hour: str, dow: str, last_offset: int, span: int) -> None:
    s = parse(f"{minute} {hour} * * {dow}", None)
    last = utc(2024, 5, 1) + timedelta(seconds=last_offset)
    now = last + timedelta(seconds=span)

    # every whole minute in (last, now], brute force
    m = last.replace(second=0, microsecond=0) + timedelta(minutes=1)
    matching: list[datetime] = []
    while m <= now:
        if _matches(minute, hour, dow, m):
            matching.append(m)
        m += timedelta(minutes=1)

    d = run_decide(s, created=utc(2024, 4, 1), last_schedule=last, now=now)
    if not matching:
        assert d.action == "wait" and d.slot is None
        nxt = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while not _matches(minute, hour, dow, nxt):
            nxt += timedelta(minutes=1)
        assert d.next_at == nxt
    else:
        assert d.action == "run"
        assert d.slot == matching[-1]
        if len(matching) - 1 <= MISSED_CAP:
            assert (d.missed, d.missed_capped) == (len(matching) - 1, False)
        else:
            assert (d.missed, d.missed_capped) == (MISSED_CAP, True)
    assert (
        decide(
            s,
            created=utc(2024, 4, 1),
            last_schedule=last,
            now=now,
            starting_deadline=None,
            suspended=False,
            once_done=False,
        )
        == d
    )


def _reference_slots(minute: str, hour: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Slots in (start, end] by brute force over wall-clock minutes, with the documented DST rules."""
    out: set[datetime] = set()
    wall = start.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) - timedelta(hours=3)
    stop = end.astimezone(zone).replace(tzinfo=None) + timedelta(hours=3)
    while wall <= stop:
        if _matches(minute, hour, "*", wall):
            first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            if first.astimezone(zone).replace(tzinfo=None) != wall:
                # in a gap: the first real minute whose wall time is past it
                first = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
                while first.astimezone(zone).replace(tzinfo=None) <= wall:
                    first += timedelta(minutes=1)
            if start < first <= end:
                out.add(first)
        wall += timedelta(minutes=1)
    return sorted(out)


#: (zone, instant of a clock change in 2024); Lord Howe shifts by 30 minutes
TRANSITIONS = [
    (BERLIN, utc(2024, 3, 31, 1)),
    (BERLIN, utc(2024, 10, 27, 1)),
    (NEW_YORK, utc(2024, 3, 10, 7)),
    (NEW_YORK, utc(2024, 11, 3, 6)),
    ("Australia/Lord_Howe", utc(2024, 4, 6, 15)),
    ("Australia/Lord_Howe", utc(2024, 10, 5, 15, 30)),
]


@settings(max_examples=50, deadline=None)
@given(
    change=st.sampled_from(TRANSITIONS),
    minute=st.sampled_from(MINUTES),
    hour=st.sampled_from(["*", "0-4", "1,2", "2", "3", "*/2"]),
    start_offset=st.integers(min_value=-4 * 3600, max_value=2 * 3600),
    end_offset=st.integers(min_value=-3600, max_value=4 * 3600),
)
def test_dst_slots_match_wall_clock_reference(
    change: tuple[str, datetime], minute: str, hour: str, start_offset: int, end_offset: int
) -> None:
    """Around real clock changes, slots equal a brute-force walk over wall-clock minutes (start/end may fall
    inside a gap's surroundings or a repeated hour)."""
    zone, transition = change
    s = parse(f"{minute} {hour} * * *", zone)
    start = transition + timedelta(seconds=start_offset)
    end = transition + timedelta(seconds=end_offset)
    expected = _reference_slots(minute, hour, s.zone, start, end)
    got = slots_between(s, start, end, limit=10_000)
    assert got == expected
    walls = [g.astimezone(s.zone).replace(tzinfo=None) for g in got]
    assert len(set(walls)) == len(walls)  # each wall time at most once
    latest, count, capped = missed(s, start, end, cap=10_000)
    assert (latest, count, capped) == ((expected[-1] if expected else None), len(expected), False)
    if expected:
        assert next_after(s, start) == expected[0]
        assert [next_after(s, slot) for slot in expected[:-1]] == expected[1:]
