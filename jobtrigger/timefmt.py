"""Timestamps as jobtrigger writes and reads them in the API (RFC 3339, UTC)."""

from __future__ import annotations

from datetime import datetime


def rfc3339_ms(dt: datetime) -> str:
    """RFC 3339 with milliseconds (status fields; cooldowns and Job ordering need sub-second precision)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def rfc3339_micro(dt: datetime) -> str:
    """RFC 3339 with microseconds (metav1.MicroTime, e.g. Lease renewTime)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str | None) -> datetime | None:
    """An API timestamp, or None if absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
