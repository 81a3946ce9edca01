"""The course's deadlines file, course/deadlines.json: per assignment, the time zone its due date
was given in and the students' extensions. Small and human-readable on purpose: a TA can read who
got how long and since when.

The due date itself lives in the gradebook (nbgrader's Assignment.duedate, naive UTC) where
nbgrader's own AssignLatePenalties reads it; this file holds only what nbgrader has no place for
(its SubmittedAssignment.extension needs a submission row, which does not exist before collect
and is removed when a grade fails).

    {"backprop": {"timezone": "Europe/Berlin",
                  "extensions": {"ada": {"hours": 48, "granted": "2026-12-10T09:12:00Z"},
                                 "bob": {"until": "2026-12-20T22:59:00Z", "granted": "..."}}}}

An extension in hours moves with the due date; one given --until a date is a fixed date.
"""
import datetime as dt
import json
import os
import tempfile
import zoneinfo
from pathlib import Path

from autograder.course import CourseError

DEADLINES_FILE = "deadlines.json"
UTC = dt.timezone.utc
# What `--due` and `--until` accept, shown in every error about them.
DATE_FORMAT_HINT = 'a date and time like "2026-12-14 23:59"'


def path_of(root):
    return Path(root) / DEADLINES_FILE


def load(root):
    """The whole deadlines file as a dict ({} if there is none). A damaged file is an error, not
    an empty one: silently dropping extensions would penalise students who have one."""
    path = path_of(root)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CourseError(f"{path} is not readable JSON ({exc}): fix it or set the extensions again") from None
    if not isinstance(data, dict):
        raise CourseError(f"{path} must hold an object keyed by assignment name")
    return data


def save(root, data):
    """Write the file atomically: a crash mid-write leaves the old file, never half of one."""
    path = path_of(root)
    fd, staged = tempfile.mkstemp(prefix=f".{DEADLINES_FILE}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def assignment_entry(root, assignment):
    """{"timezone": ..., "extensions": {...}} of one assignment (empty parts if not set)."""
    entry = load(root).get(assignment) or {}
    return {"timezone": entry.get("timezone"), "extensions": dict(entry.get("extensions") or {})}


def timezone(name):
    """A ZoneInfo (or UTC for None/"UTC"); an unknown name is a one-line error."""
    if name in (None, "", "UTC", "utc", "Z"):
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CourseError(f"unknown time zone {name!r}: use a name like Europe/Berlin, America/New_York or UTC") \
            from None


def parse_when(text, tz, what="--due"):
    """An aware datetime from "YYYY-MM-DD HH:MM[:SS]" (in `tz`) or ISO 8601 with an offset.
    A date without a time is refused: "due on the 14th" means midnight to some and 23:59 to others."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise CourseError(f"{what} {text!r} is not {DATE_FORMAT_HINT} (in --timezone, default UTC)") from None
    if len(text.strip()) <= 10:
        raise CourseError(f"{what} {text!r} has no time of day: write {DATE_FORMAT_HINT}")
    return when if when.tzinfo else when.replace(tzinfo=tz)


def to_naive_utc(when):
    """How nbgrader's gradebook stores times."""
    return when.astimezone(UTC).replace(tzinfo=None)


def as_utc(naive_utc):
    """An aware UTC datetime from the gradebook's naive UTC one (None stays None)."""
    return None if naive_utc is None else naive_utc.replace(tzinfo=UTC)


def iso_utc(when):
    """"2026-12-14T22:59:00Z" for an aware datetime; "" for None."""
    return "" if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def show(when, tz):
    """"2026-12-14 23:59 Europe/Berlin (2026-12-14 22:59 UTC)" — local first, as the TA typed it."""
    utc = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if tz is UTC:
        return utc
    return f"{when.astimezone(tz).strftime('%Y-%m-%d %H:%M')} {tz.key} ({utc})"


def extension_seconds(extension, due):
    """How many seconds an extension moves this student's due date (aware `due`; 0 without one).
    An extension --until a date before the due date gives nothing (it cannot make anyone later)."""
    if not extension:
        return 0.0
    if "hours" in extension:
        return max(0.0, float(extension["hours"]) * 3600.0)
    if "until" in extension and due is not None:
        until = dt.datetime.fromisoformat(extension["until"].replace("Z", "+00:00"))
        return max(0.0, (until - due).total_seconds())
    return 0.0


def student_due(due, extension):
    """The student's own due date (aware), extension included; None without a due date."""
    if due is None:
        return None
    return due + dt.timedelta(seconds=extension_seconds(extension, due))
