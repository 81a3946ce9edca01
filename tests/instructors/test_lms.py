"""The LMS round trip (autograder/term/lms.py, verbs/roster.py, export --lms): a roster read from a Canvas
gradebook export or a Moodle participants export, grades written back in each LMS's import format.

The sample exports in tests/fixtures/lms/ are shaped like the LMSs' own: a UTF-8 BOM, non-ASCII
names, Canvas's "Points Possible" row and test student, Moodle's teacher row. Graded courses are
faked by writing gradebook rows directly (no kernel runs here); one test drives the CLI end to end.
"""
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_notebook

from autograder.course import ASSIGNMENT, Course, CourseError
from autograder.term import lms
from autograder.verbs.export import export
from autograder.verbs.roster import class_list, import_roster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lms"
CANVAS = FIXTURES / "canvas_gradebook_export.csv"
MOODLE = FIXTURES / "moodle_participants.csv"
KIT = Path(__file__).resolve().parents[2]
NOTEBOOK = "assignment"
# The kit's assignment: 22 autograded points, 8 manual (derivation 4, two reflections 2 each).
MANUAL = {"derivation": 4, "reflection_curves": 2, "reflection_speed": 2}
quiet = lambda *args, **kwargs: None  # noqa: E731


def _course(released_course, root):
    """A fresh course sharing the released source: its own config, gradebook and folders."""
    course = Course(root)
    course.root.mkdir(parents=True)
    for name in ("nbgrader_config.py", "gradebook.db"):
        (course.root / name).write_bytes((released_course.root / name).read_bytes())
    course.source.parent.mkdir()
    course.source.symlink_to(released_course.source)
    return course


def _grade(course, student, lost=(), manual=None):
    """A graded submission as the grader leaves it: submitted and autograded notebooks (with the
    grader's verdict record) and gradebook rows; autograded cells in `lost` score 0, the others full."""
    from nbgrader.api import Gradebook

    for folder in (course.submitted(student), course.autograded(student)):
        folder.mkdir(parents=True, exist_ok=True)
        nb = new_notebook(metadata={"autograder": {"version": 1, "cells": {}, "tamper_cells": []}})
        nbformat.write(nb, str(course.notebook(folder)))
    manual = {**MANUAL, **(manual or {})}
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(ASSIGNMENT, student)
        notebook = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
        for grade in notebook.grades:
            if grade.name in manual:
                grade.manual_score = float(manual[grade.name])
            else:
                grade.auto_score = 0.0 if grade.name in lost else float(grade.max_score)
            grade.needs_manual_grade = False
        gb.db.commit()


def _rows(path):
    """The rows of a written import file, as an LMS's CSV reader sees them."""
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


@pytest.fixture(scope="module")
def canvas_course(released_course, tmp_path_factory):
    """Roster from the Canvas sample; jmuller 30/30, sobriain lost test_train (2) and reflection_speed
    (2): 26/30; tnguyen never submitted; zed graded but not on Canvas."""
    course = _course(released_course, tmp_path_factory.mktemp("canvas") / "course")
    lines = []
    import_roster(course, CANVAS, echo=lines.append)
    _grade(course, "jmuller")
    _grade(course, "sobriain", lost=("test_train",), manual={"reflection_speed": 0})
    _grade(course, "zed")
    out = []
    export(course, echo=out.append, lms="canvas")
    return course, lines, out


@pytest.fixture(scope="module")
def moodle_course(released_course, tmp_path_factory):
    """Roster from the Moodle sample (ids from ID number); S1001 lost test_gradients (4): 26/30;
    S1003 lost test_gradients, test_sce_grad, test_weight_decay, test_softmax (4 + 3 + 2 + 2 of 22)
    and got 1.5 of 8 manual points: 12.5/30; S1002 never submitted."""
    course = _course(released_course, tmp_path_factory.mktemp("moodle") / "course")
    lines = []
    import_roster(course, MOODLE, echo=lines.append)
    _grade(course, "S1001", lost=("test_gradients",))
    _grade(course, "S1003", lost=("test_gradients", "test_sce_grad", "test_weight_decay", "test_softmax"),
           manual={"derivation": 1.5, "reflection_curves": 0, "reflection_speed": 0})
    out = []
    export(course, echo=out.append, lms="moodle")
    return course, lines, out


# ------------------------------------------------------------------------------------------------
# reading the LMSs' exports


def test_a_canvas_gradebook_export_is_read():
    roster = lms.parse_roster(CANVAS.read_bytes(), CANVAS.name)
    assert roster.format == "canvas" and roster.id_column == "SIS Login ID"
    assert [(m.student_id, m.first_name, m.last_name, m.lms_user_id, m.sis_user_id, m.section)
            for m in roster.members] == [
        ("jmuller", "Jürgen", "Müller", "1001", "S1001", "CS 4410 Lecture 01"),
        ("sobriain", "Siobhán", "Ó Briain", "1002", "S1002", "CS 4410 Lecture 01"),
        ("tnguyen", "Thị Lan", "Nguyễn", "1003", "S1003", "CS 4410 Lecture 02")]
    assert roster.skipped == ["row 6: Canvas's test student (Student, Test) left out"]
    assert roster.assignments == {"Backprop": "4410231", "Quiz 1: Chain rule": "4410232"}


def test_a_moodle_participants_export_is_read():
    roster = lms.parse_roster(MOODLE.read_bytes(), MOODLE.name)
    assert roster.format == "moodle" and roster.id_column == "ID number"
    assert [(m.student_id, m.first_name, m.last_name, m.email) for m in roster.members] == [
        ("S1001", "Jürgen", "Müller", "jurgen.muller@uni.example"),
        ("S1002", "Siobhán", "Ó Briain", "siobhan.obriain@uni.example"),
        ("S1003", "Thị Lan", "Nguyễn", "thilan.nguyen@uni.example")]
    assert roster.skipped == ["row 5: Grace Hopper is not a student (Teacher) and is left out"]


def test_the_id_column_is_the_instructors_choice():
    canvas = lms.parse_roster(CANVAS.read_bytes(), CANVAS.name, id_column="ID")
    assert [m.student_id for m in canvas.members] == ["1001", "1002", "1003"]
    moodle = lms.parse_roster(MOODLE.read_bytes(), MOODLE.name, fmt="moodle", id_column="Email address")
    assert moodle.members[1].student_id == "siobhan.obriain@uni.example"


def test_semicolons_and_no_bom_are_read_too():
    text = CANVAS.read_bytes().decode("utf-8-sig")
    semicolons = "\n".join(";".join(row) for row in csv.reader(io.StringIO(text))
                           if "Student, Test" not in row and "Points Possible" not in row[0])
    roster = lms.parse_roster(semicolons.replace("Müller, Jürgen", "Müller").encode(), "x.csv")
    assert [m.student_id for m in roster.members] == ["jmuller", "sobriain", "tnguyen"]
    assert (roster.members[0].first_name, roster.members[0].last_name) == ("Müller", "")


def _canvas_with(**replace):
    text = CANVAS.read_bytes().decode("utf-8-sig")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode()


BAD = {
    "kit_grades": (b"student_id,score,max_score\nada,30,30\n", "auto",
                   "is not a Canvas gradebook export (Student, ID, SIS User ID, SIS Login ID, Section, ...) or a "
                   "Moodle participants or grades export"),
    "empty": (b"", "auto", "is empty"),
    "blank_lines": (b"\r\n\r\n", "auto", "is empty"),
    "workbook": (b"PK\x03\x04\x14\x00\x06\x00", "auto", "is a spreadsheet workbook, not CSV"),
    "latin1": ("Student,ID,SIS User ID,SIS Login ID,Section\nMüller,1,2,jm,A\n".encode("latin-1"), "auto",
               "is not UTF-8 text"),
    "binary": (b"Student,ID\x00,Section\n", "auto", "is not a CSV file"),
    "wrong_format": (CANVAS.read_bytes(), "moodle", "is not a Moodle participants or grades export"),
    "duplicate": (_canvas_with(sobriain="JMuller"), "auto",
                  "SIS Login ID 'JMuller' is on rows 3 and 4: each student needs an id of their own"),
    "space": (_canvas_with(tnguyen="t nguyen"), "auto",
              "row 5 (Nguyễn, Thị Lan): SIS Login ID 't nguyen' is not usable as a student id"),
    "row_numbers": (_canvas_with(**{'\r\n"Nguyễn': '\r\n\r\n"Nguyễn', "tnguyen": "t nguyen"}), "auto",
                    "row 6 (Nguyễn, Thị Lan)"),   # as a spreadsheet numbers it, the blank row counted
    "reserved": (_canvas_with(sobriain="gradebook.db"), "auto",
                 "row 4 (Ó Briain, Siobhán): SIS Login ID 'gradebook.db' is not usable as a student id: "
                 "'gradebook.db' is a name the grader uses"),
    "empty_id": (_canvas_with(jmuller=""), "auto", "SIS Login ID '' is empty"),
    "only_test_student": (b"Student,ID,SIS User ID,SIS Login ID,Section\n\"Student, Test\",9,,,A\n", "auto",
                          "lists no students"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_gets_one_line(case):
    data, fmt, expected = BAD[case]
    with pytest.raises(CourseError) as raised:
        lms.parse_roster(data, "class.csv", fmt=fmt)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("class.csv")
    assert expected in message


def test_a_missing_id_column_names_the_columns_there_are():
    with pytest.raises(CourseError, match=r"^class.csv has no column 'Username' for the student ids: pass "
                                          r"--id-column with one of 'First name', 'Last name', 'ID number'"):
        lms.parse_roster(MOODLE.read_bytes(), "class.csv", id_column="Username")


def test_a_long_class_stays_one_line():
    assert lms.names([f"s{i}" for i in range(25)]) == ", ".join(f"s{i}" for i in range(20)) + " and 5 more"
    assert lms.names(["a", "b"]) == "a, b"


def test_grades_are_written_as_both_importers_read_them():
    assert [lms.score_text(v) for v in (30.0, 12.5, 0.0, -0.0, 1 / 3, 2.00004, None)] == \
        ["30", "12.5", "0", "0", "0.3333", "2", ""]


def test_only_final_grades_reach_the_lms():
    members = lms.parse_roster(CANVAS.read_bytes(), CANVAS.name).members
    records = {"jmuller": {"score": 20.0, "cells": {"derivation": {"needs_manual_grade": True, "score": None}}},
               "sobriain": {"score": 26.0, "pending": [], "status": "tamper suspected",
                            "cells": {"derivation": {"needs_manual_grade": False}}},
               "tnguyen": {"score": None, "cells": {}},
               "ghost": {"score": None, "cells": {}},   # in the gradebook, never graded: nothing to lose
               "zed": {"score": 0.0, "cells": {}}}
    rows, warnings = lms.grade_rows(members, records)
    assert [(m.student_id, score) for m, score in rows] == [("jmuller", None), ("sobriain", 26.0), ("tnguyen", None)]
    assert warnings == [
        "1 students of the roster have no grade; their cells are left empty (not 0): tnguyen",
        "1 student has answers awaiting manual grading; their cells are left empty until graded in formgrader: "
        "jmuller",
        "1 students' grades are in the file but flagged (tamper suspected or not verified: see grades.json); check "
        "them before you publish: sobriain",
        "1 graded students are not in the roster and are NOT in the file: zed (import the LMS's current export "
        "with `roster import`, or check --id-column)"]


# ------------------------------------------------------------------------------------------------
# the round trip


def test_roster_import_names_the_students_in_the_gradebook(canvas_course):
    from nbgrader.api import Gradebook

    course, lines, _ = canvas_course
    assert lines[0] == ("3 students from Canvas (canvas_gradebook_export.csv), ids from column 'SIS Login ID': "
                        "3 new, 0 updated in the gradebook")
    assert "row 6: Canvas's test student (Student, Test) left out" in lines
    with Gradebook(course.db_url) as gb:
        student = gb.find_student("sobriain")
        assert (student.first_name, student.last_name, student.lms_user_id) == ("Siobhán", "Ó Briain", "1002")


def test_a_new_roster_updates_students_without_erasing_what_it_lacks(released_course, tmp_path):
    from nbgrader.api import Gradebook

    course = _course(released_course, tmp_path / "course")
    import_roster(course, MOODLE, echo=quiet)
    lines = []
    import_roster(course, CANVAS, id_column="SIS User ID", echo=lines.append)   # S1001.. in both
    assert lines[0].endswith("ids from column 'SIS User ID': 0 new, 3 updated in the gradebook")
    with Gradebook(course.db_url) as gb:
        student = gb.find_student("S1002")
        assert (student.first_name, student.email, student.lms_user_id) == \
            ("Siobhán", "siobhan.obriain@uni.example", "1002")   # the email only Moodle knew is kept
    assert lms.load_roster(course).format == "canvas"


def test_canvas_export_round_trip(canvas_course):
    course, _, out = canvas_course
    path = course.root / "exports" / ASSIGNMENT / "canvas_grades.csv"
    rows = _rows(path)
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Backprop (4410231)"]
    # graded against an existing Canvas assignment: no points row (Canvas would change its points)
    assert {row[1]: row[5] for row in rows[1:]} == {"1001": "30", "1002": "26", "1003": ""}
    assert rows[2][:5] == ["Ó Briain, Siobhán", "1002", "S1002", "sobriain", "CS 4410 Lecture 01"]
    assert f"Canvas: {path} (2 of 3 students graded, for Canvas assignment 4410231)" in out
    assert "warning: 1 students of the roster have no grade; their cells are left empty (not 0): tnguyen" in out
    assert ("warning: 1 graded students are not in the roster and are NOT in the file: zed (import the LMS's "
            "current export with `roster import`, or check --id-column)") in out


def test_the_canvas_file_reads_back_as_a_canvas_export(canvas_course):
    """Canvas's importer and this kit's reader agree on the columns: the file is a roster again."""
    course, _, _ = canvas_course
    data = (course.root / "exports" / ASSIGNMENT / "canvas_grades.csv").read_bytes()
    again = lms.parse_roster(data, "canvas_grades.csv")
    assert [(m.student_id, m.lms_user_id, m.display_name) for m in again.members] == [
        ("jmuller", "1001", "Müller, Jürgen"), ("sobriain", "1002", "Ó Briain, Siobhán"),
        ("tnguyen", "1003", "Nguyễn, Thị Lan")]
    assert again.assignments == {"Backprop": "4410231"}


def test_a_new_canvas_assignment_gets_its_points_row(canvas_course, tmp_path):
    course, _, _ = canvas_course
    roster = lms.load_roster(course)
    rows, _ = lms.grade_rows(roster.members, {"jmuller": {"score": 27.5, "cells": {}}})
    text = lms.canvas_csv(rows, "backprop", None, points=30.0)
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][5] == "backprop" and table[1] == ["Points Possible", "", "", "", "", "30"]
    assert [row[5] for row in table[2:]] == ["27.5", "", ""]


def test_moodle_export_round_trip(moodle_course):
    course, lines, out = moodle_course
    assert "row 5: Grace Hopper is not a student (Teacher) and is left out" in lines
    path = course.root / "exports" / ASSIGNMENT / "moodle_grades.csv"
    rows = _rows(path)
    assert rows[0] == ["First name", "Last name", "ID number", "Email address", ASSIGNMENT]
    assert {row[3]: row[4] for row in rows[1:]} == {"jurgen.muller@uni.example": "26",
                                                     "siobhan.obriain@uni.example": "",
                                                     "thilan.nguyen@uni.example": "12.5"}
    assert {row[2]: row[4] for row in rows[1:]} == {"S1001": "26", "S1002": "", "S1003": "12.5"}
    assert "warning: 1 students of the roster have no grade; their cells are left empty (not 0): S1002" in out
    assert not any("not in the roster" in line for line in out)


def test_export_for_an_lms_needs_its_roster(canvas_course, moodle_course, released_course, tmp_path):
    with pytest.raises(CourseError, match="the roster came from Canvas: a Moodle import needs its ids"):
        export(canvas_course[0], echo=quiet, lms="moodle")
    with pytest.raises(CourseError, match=r"^no roster yet: run `python -m autograder roster import FILE`"):
        export(_course(released_course, tmp_path / "course"), echo=quiet, lms="canvas")
    with pytest.raises(CourseError, match="--lms-assignment-id 'abc' is not a Canvas assignment id"):
        export(canvas_course[0], echo=quiet, lms="canvas", lms_assignment_id="abc")


def test_roster_lists_who_has_no_submission(canvas_course):
    course, _, _ = canvas_course
    assert class_list(course) == [
        ("jmuller", "Jürgen Müller", "1001", "submitted"),
        ("sobriain", "Siobhán Ó Briain", "1002", "submitted"),
        ("tnguyen", "Thị Lan Nguyễn", "1003", "no submission"),
        ("zed", "-", "-", "submitted, not in the roster")]


def test_cli_roster_import_and_canvas_export(released_course, tmp_path):
    course = _course(released_course, tmp_path / "course")
    _grade(course, "jmuller", lost=("test_relu",))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "autograder", *args, "--course", str(course.root)],
                              cwd=KIT, capture_output=True, text=True, timeout=300, env=env)

    missing = FIXTURES / "nowhere.csv"
    bad = cli("roster", "import", str(missing))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [f"error: {missing} is not a file"]
    imported = cli("roster", "import", str(CANVAS), "--id-column", "SIS Login ID")
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "3 students from Canvas" in imported.stdout
    exported = cli("export", "--lms", "canvas", "--lms-assignment-id", "777")
    assert exported.returncode == 0, exported.stderr[-2000:]
    rows = _rows(course.root / "exports" / ASSIGNMENT / "canvas_grades.csv")
    assert rows[0][5] == "backprop (777)"
    assert {row[3]: row[5] for row in rows[1:]} == {"jmuller": "29", "sobriain": "", "tnguyen": ""}
    listed = cli("roster")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.splitlines()[-1] == ("3 students, 2 without a submission for backprop: "
                                              "sobriain, tnguyen")


def test_a_large_roster_lands_in_the_gradebook_whole_in_one_transaction(released_course, tmp_path):
    # roster import writes every student in one commit (nbgrader's update_or_create_student commits
    # per student: ~16 ms each, 27 min for 100,000 rows); names and LMS ids must all arrive.
    from nbgrader.api import Gradebook

    course = _course(released_course, tmp_path / "course")
    header = "Student,ID,SIS User ID,SIS Login ID,Section\r\n"
    file = tmp_path / "canvas.csv"
    file.write_text(header + "".join(f'"Last{i}, First{i}",{1000 + i},S{i},s{i},L\r\n' for i in range(300)))
    import_roster(course, file, echo=quiet)
    with Gradebook(course.db_url) as gb:
        students = {s.id: (s.first_name, s.last_name, s.lms_user_id) for s in gb.students}
    assert len(students) == 300 and students["s299"] == ("First299", "Last299", "1299")


def _submit(course, student):
    course.submitted(student).mkdir(parents=True)
    course.notebook(course.submitted(student)).write_text(nbformat.writes(new_notebook()))


def test_a_roster_id_that_differs_only_in_case_takes_the_collected_students_id(released_course, tmp_path):
    from nbgrader.api import Gradebook

    course = _course(released_course, tmp_path / "course")
    _submit(course, "jmuller")                 # collected as the submission folder was named
    export = tmp_path / "export.csv"
    export.write_bytes(CANVAS.read_bytes().replace(b",jmuller,", b",JMuller,"))   # the LMS spells it JMuller
    lines = []
    import_roster(course, export, echo=lines.append)
    assert lines[1] == ("ids that differ only in capital letters from a student already collected or in the "
                        "gradebook take that student's id: JMuller -> jmuller")
    assert [m.student_id for m in lms.load_roster(course).members] == ["jmuller", "sobriain", "tnguyen"]
    with Gradebook(course.db_url) as gb:
        assert {s.id for s in gb.students} == {"jmuller", "sobriain", "tnguyen"}
        assert gb.find_student("jmuller").lms_user_id == "1001"
    assert ("jmuller", "Jürgen Müller", "1001", "submitted") in class_list(course)   # in the roster: exported


def test_two_collected_students_one_roster_id_apart_only_in_case_is_one_line(released_course, tmp_path):
    course = _course(released_course, tmp_path / "course")
    _submit(course, "jmuller")
    _submit(course, "JMULLER")
    export = tmp_path / "export.csv"
    export.write_bytes(CANVAS.read_bytes().replace(b",jmuller,", b",JMuller,"))
    with pytest.raises(CourseError) as error:
        import_roster(course, export, echo=quiet)
    assert str(error.value).startswith("roster id 'JMuller' matches JMULLER, jmuller except for capital letters")
    assert "\n" not in str(error.value)
    assert not (course.root / lms.ROSTER_FILE).exists()
