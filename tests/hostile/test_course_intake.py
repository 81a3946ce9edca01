"""The course-level intake, tried as a hostile student and as a careless TA: nbgrader's exchange
(entries any hub user can plant in the world-writable inbound folder) and the LMS round trip
(roster fields that reach a CSV a TA opens in a spreadsheet, rows that would hand one student's
grade to another's LMS account)."""
import os
import pwd

import pytest

from autograder.exchange import collect_exchange

quiet = lambda *args, **kwargs: None  # noqa: E731
GOOD = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
JUNK = b'{"cells": [], "metadata": {"planted": true}, "nbformat": 4, "nbformat_minor": 5}'
EARLY = "2026-11-30 09:00:00.000000 UTC"
FUTURE = "2099-01-01 00:00:00.000000 UTC"


# --- nbgrader's exchange ----------------------------------------------------------------------------

@pytest.fixture
def inbound(collect_course):
    folder = collect_course.root / "exchange" / "backprop" / "inbound"
    folder.mkdir(parents=True)
    return folder


def _entry(inbound, student, stamp, data, owner=None, tag="x"):
    """An inbound entry as `nbgrader submit` (or anyone imitating it) makes one, owned by `owner`."""
    entry = inbound / f"{student}+backprop+{stamp}+{tag}"
    entry.mkdir()
    (entry / "assignment.ipynb").write_bytes(data)
    if owner is not None:
        uid = pwd.getpwnam(owner).pw_uid
        for path in (entry, entry / "assignment.ipynb"):
            os.chown(path, uid, -1)
    return entry


def _collected(course, student):
    return course.notebook(course.submitted(student)).read_bytes()


def test_a_future_dated_entry_planted_by_another_student_does_not_replace_the_students_own(collect_course, inbound):
    # Two hub users, `daemon` (the honest student) and `bin` (the attacker: a student too, with a
    # submission of their own). bin plants an entry under daemon's name dated 2099 in its name.
    _entry(inbound, "daemon", EARLY, GOOD, owner="daemon", tag="real")
    _entry(inbound, "daemon", FUTURE, JUNK, owner="bin", tag="planted")
    _entry(inbound, "bin", EARLY, GOOD, owner="bin")
    lines = collect_exchange(collect_course, collect_course.root / "exchange", echo=quiet)
    assert lines["daemon"] == "collected"
    assert _collected(collect_course, "daemon") == GOOD


def test_a_link_planted_under_a_students_name_does_not_hide_their_submission(collect_course, inbound):
    _entry(inbound, "daemon", EARLY, GOOD, tag="real")
    (inbound / f"daemon+backprop+{FUTURE}+planted").symlink_to(collect_course.source)
    lines = collect_exchange(collect_course, collect_course.root / "exchange", echo=quiet)
    assert lines["daemon"] == "collected"
    assert _collected(collect_course, "daemon") == GOOD


def test_the_latest_entry_is_the_latest_written_not_the_latest_named(collect_course, inbound):
    # A name's time is whatever the submitting process wrote; a later resubmission must win over
    # an entry that merely claims 2099 (on a hub where every user is the same Unix user, too).
    _entry(inbound, "daemon", FUTURE, JUNK, tag="claims-2099")
    os.utime(inbound, None)
    _entry(inbound, "daemon", EARLY, GOOD, tag="written-later")
    # the ctimes differ by microseconds at least; make sure the later one is later
    later = inbound / f"daemon+backprop+{EARLY}+written-later"
    os.chmod(later, 0o755)
    lines = collect_exchange(collect_course, collect_course.root / "exchange", echo=quiet)
    assert lines["daemon"] == "collected"
    assert _collected(collect_course, "daemon") == GOOD


def test_an_entry_owned_by_another_student_is_refused(collect_course, inbound):
    # bin, another hub user, plants the only entry under the name of daemon (a hub user too).
    _entry(inbound, "daemon", EARLY, JUNK, owner="bin", tag="planted")
    _entry(inbound, "bin", EARLY, GOOD, owner="bin")
    lines = collect_exchange(collect_course, collect_course.root / "exchange", echo=quiet)
    assert lines["daemon"].startswith("not collected: its exchange folder belongs to bin, another hub user")
    assert not collect_course.submitted("daemon").exists()
    assert lines["bin"] == "collected"
