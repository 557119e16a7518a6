"""Scheduling decisions, no I/O: when a publish is due, what a typed time means, when a recurring
topic runs next.

Times are stored in UTC (TIMESTAMPTZ) and shown in the chat's or user's zone (an IANA name,
zoneinfo). A time typed without an offset ("2026-12-02 09:00", "tomorrow 09:00") is read in that
zone; one with an offset ("2026-12-02T09:00+01:00", "...Z") means exactly that instant. A wall time
that does not exist in the zone (the hour skipped by a DST change) or is ambiguous (the hour
repeated) is refused rather than guessed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MAX_AHEAD = timedelta(days=366)  # a publish time further out is a typo more often than a plan
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY = ("daily", "weekly")
MAX_TOPICS = 200
_RELATIVE = re.compile(r"^in\s+(\d{1,5})\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)$")
_DAY_WORD = re.compile(r"^(today|tomorrow)\s+(\d{1,2}:\d{2})$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


class ScheduleError(ValueError):
    """A time, zone or recurrence that cannot be used (the message says why and what to type)."""


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone NAME (e.g. Europe/Berlin, UTC); a clear error for anything else."""
    name = (name or "").strip()
    if not name or len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name) or ".." in name:
        raise ScheduleError(f"{name[:64]!r} is not a time zone name: use an IANA name such as Europe/Berlin, "
                            "America/New_York or UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin, "
                            "America/New_York or UTC") from None


def known_zone(name: str) -> bool:
    return name in available_timezones() or name == "UTC"


def _local(d: date, t: time, tz: ZoneInfo) -> datetime:
    """The instant of wall time d t in tz, refusing a skipped or repeated wall time."""
    first = datetime.combine(d, t, tzinfo=tz).replace(fold=0)
    roundtrip = first.astimezone(UTC).astimezone(tz)
    if roundtrip.replace(tzinfo=None) != first.replace(tzinfo=None):
        raise ScheduleError(f"{d} {t:%H:%M} does not exist in {tz.key} (clocks go forward): pick another time")
    if first.utcoffset() != first.replace(fold=1).utcoffset():
        raise ScheduleError(f"{d} {t:%H:%M} happens twice in {tz.key} (clocks go back): give the offset, "
                            f"e.g. {d}T{t:%H:%M}{_offset(first)}")
    return first


def _offset(dt: datetime) -> str:
    off = dt.utcoffset() or timedelta(0)
    sign, minutes = ("+" if off >= timedelta(0) else "-"), abs(int(off.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse_publish_time(text: str, *, tz: str, now: datetime) -> datetime:
    """The UTC instant TEXT names, read in zone TZ, checked to be after NOW (and within a year).

    Accepted: ISO 8601 with or without an offset ("2026-12-02T09:00+01:00", "2026-12-02 09:00"),
    "today 18:30" / "tomorrow 09:00", a bare "HH:MM" (today, or tomorrow once it has passed),
    "in 90 s" / "in 10 min" / "in 2 h" / "in 1 d"."""
    raw = " ".join((text or "").split()).strip()
    if not raw:
        raise ScheduleError("no time given: e.g. 2026-12-02 09:00, tomorrow 09:00, 18:30 or in 2 h")
    if len(raw) > 64:
        raise ScheduleError("that time is too long to be one: e.g. 2026-12-02 09:00")
    zi = zone(tz)
    now = now.astimezone(UTC)
    lowered = raw.lower()
    when: datetime
    if m := _RELATIVE.match(lowered):
        n, unit = int(m.group(1)), m.group(2)[0]
        when = now + timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})
    elif m := _DAY_WORD.match(lowered):
        day = now.astimezone(zi).date() + timedelta(days=1 if m.group(1) == "tomorrow" else 0)
        when = _local(day, _clock(m.group(2)), zi)
    elif _CLOCK.match(lowered):
        t = _clock(lowered)
        today = now.astimezone(zi).date()
        when = _local(today, t, zi)
        if when <= now:
            when = _local(today + timedelta(days=1), t, zi)
    else:
        try:
            parsed = datetime.fromisoformat(raw.replace("z", "Z"))
        except ValueError:
            raise ScheduleError(f"cannot read {raw!r} as a time: use e.g. 2026-12-02 09:00 (in {zi.key}), "
                                "2026-12-02T09:00+01:00, tomorrow 09:00, 18:30 or in 2 h") from None
        when = parsed if parsed.tzinfo is not None else _local(parsed.date(), parsed.time(), zi)
    return checked_window(when, tz=zi.key, now=now)


def checked_window(when: datetime, *, tz: str, now: datetime) -> datetime:
    """WHEN (UTC) if it is after NOW and within a year of it; a clear error otherwise."""
    when, now = when.astimezone(UTC), now.astimezone(UTC)
    if when <= now:
        raise ScheduleError(f"{format_local(when, tz)} is in the past (now it is {format_local(now, tz)}): "
                            "give a later time, or approve without one to publish now")
    if when - now > MAX_AHEAD:
        raise ScheduleError(f"{format_local(when, tz)} is more than a year ahead: give an earlier time")
    return when


def _clock(text: str) -> time:
    m = _CLOCK.match(text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ScheduleError(f"{text!r} is not a time of day: use HH:MM, e.g. 09:00")
    return time(int(m.group(1)), int(m.group(2)))


def is_due(publish_at: datetime, now: datetime) -> bool:
    return publish_at <= now


def format_local(when: datetime, tz: str) -> str:
    """'2026-12-02 09:00 CET (Europe/Berlin)' — how a person reads a stored instant."""
    zi = zone(tz)
    local = when.astimezone(zi)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({zi.key})" if zi.key != "UTC" else f"{local:%Y-%m-%d %H:%M} UTC"


def offered_times(now: datetime, tz: str) -> list[tuple[str, datetime]]:
    """A few publish times a button can offer: in 1 h, today 18:00 (if ahead), tomorrow 09:00, next Monday 09:00."""
    zi = zone(tz)
    local = now.astimezone(zi)
    out: list[tuple[str, datetime]] = [("in 1 h", (now + timedelta(hours=1)).astimezone(UTC))]
    evening = datetime.combine(local.date(), time(18, 0), tzinfo=zi)
    if evening > now + timedelta(minutes=90):
        out.append(("today 18:00", evening.astimezone(UTC)))
    out.append(("tomorrow 09:00", datetime.combine(local.date() + timedelta(days=1), time(9, 0), tzinfo=zi)
                .astimezone(UTC)))
    monday = local.date() + timedelta(days=(7 - local.weekday()) or 7)
    out.append((f"Mon {monday:%d %b} 09:00", datetime.combine(monday, time(9, 0), tzinfo=zi).astimezone(UTC)))
    return out


# --- recurring topics ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Recurrence:
    every: str  # daily | weekly
    at: time
    weekday: int | None  # 0 = Monday (weekly only)
    tz: str

    def describe(self) -> str:
        day = f"{WEEKDAYS[self.weekday].capitalize()} " if self.weekday is not None else ""
        return f"{self.every} {day}{self.at:%H:%M} ({self.tz})"


def parse_recurrence(every: str, at: str, *, tz: str) -> Recurrence:
    """--every daily|weekly --at "HH:MM" (daily) or "Mon 09:00" (weekly)."""
    every = (every or "").strip().lower()
    if every not in EVERY:
        raise ScheduleError(f"--every {every!r}: use daily or weekly")
    zone(tz)
    parts = (at or "").strip().lower().split()
    if every == "weekly":
        if len(parts) != 2 or parts[0][:3] not in WEEKDAYS:
            raise ScheduleError(f"--at {at!r}: a weekly topic needs a day and a time, e.g. \"Mon 09:00\"")
        return Recurrence("weekly", _clock(parts[1]), WEEKDAYS.index(parts[0][:3]), tz)
    if len(parts) != 1:
        raise ScheduleError(f"--at {at!r}: a daily topic needs a time, e.g. 09:00")
    return Recurrence("daily", _clock(parts[0]), None, tz)


def next_occurrence(rule: Recurrence, after: datetime) -> datetime:
    """The first run time of RULE strictly after AFTER (UTC). A wall time a DST change skips runs
    an hour later that day; a repeated one runs at its first occurrence."""
    zi = zone(rule.tz)
    day = after.astimezone(zi).date()
    for _ in range(9):
        if rule.weekday is None or day.weekday() == rule.weekday:
            candidate = datetime.combine(day, rule.at, tzinfo=zi).replace(fold=0)
            if candidate.astimezone(UTC).astimezone(zi).replace(tzinfo=None) != candidate.replace(tzinfo=None):
                candidate = candidate + timedelta(hours=1)  # skipped by clocks going forward
            if candidate.astimezone(UTC) > after:
                return candidate.astimezone(UTC)
        day += timedelta(days=1)
    raise AssertionError("unreachable: a weekday repeats within 8 days")  # pragma: no cover


def parse_topics(text: str) -> list[str]:
    """A topic list file: one topic per line; blank lines and lines starting with # are skipped."""
    topics = [line.strip() for line in (text or "").splitlines() if line.strip() and not line.strip().startswith("#")]
    if not topics:
        raise ScheduleError("the topic list is empty: one topic per line (lines starting with # are comments)")
    if len(topics) > MAX_TOPICS:
        raise ScheduleError(f"{len(topics)} topics: at most {MAX_TOPICS} in one list")
    long = [t for t in topics if len(t) > 500]
    if long:
        raise ScheduleError(f"a topic has {len(long[0])} characters; the limit is 500: {long[0][:60]!r}...")
    return topics


def topic_for(topics: list[str], index: int) -> str:
    """The topic of occurrence INDEX: the list in order, then round again."""
    return topics[index % len(topics)]


__all__ = [
    "MAX_AHEAD",
    "Recurrence",
    "ScheduleError",
    "checked_window",
    "format_local",
    "is_due",
    "known_zone",
    "next_occurrence",
    "offered_times",
    "parse_publish_time",
    "parse_recurrence",
    "parse_topics",
    "topic_for",
    "zone",
]
