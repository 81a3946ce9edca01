"""`export`: exports/<assignment>/grades.csv (the contract's columns) and grades.json (the same, per
cell, with status). A folder per assignment (a course has many). The kit's own assignment's CSV is
also copied to the course root's grades.csv, where the contract's readers have always found it; the
course config sends `nbgrader export`'s CSV to nbgrader_grades.csv, so the two never overwrite each
other.

Not an nbgrader ExportPlugin: those see the gradebook only, and an export here also carries the
grader's verdicts (tamper suspected, timed out) kept in the autograded notebooks.
"""
import csv
import json

from autograder.course import ASSIGNMENT, Course
from autograder.results import collect_grades
from autograder.term.lms import write_exports


def export(course=None, echo=print, lms=None, lms_assignment_id=None):
    course = course or Course()
    course.require_release()
    cells, records = collect_grades(course)
    out = export_dir(course)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "grades.csv", out / "grades.json"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "score", "max_score"] + [gid for gid, _, _ in cells] + ["pending"]
                        + LATE_COLUMNS)
        for record in records.values():
            per_cell = [_fmt(record["cells"].get(gid, {}).get("score")) for gid, _, _ in cells]
            writer.writerow([record["student_id"], _fmt(record["score"]), _fmt(record["max_score"])] + per_cell
                            + [pending_cell(record)] + late_cells(record))
    json_path.write_text(json.dumps({"assignment": course.assignment, "students": records}, indent=2))
    if course.assignment == ASSIGNMENT:
        (course.root / "grades.csv").write_bytes(csv_path.read_bytes())
    echo(f"{len(records)} students: {csv_path} and {json_path}")
    stale = sorted(s for s, r in records.items() if r.get("late_penalty_stale"))
    if stale:
        echo(f"late penalties out of date for {', '.join(stale)} (due date, extension or manual grades changed "
             "since grading): run `python -m autograder grade` again, then export")
    pending = [s for s, r in records.items() if r.get("pending")]
    if pending:
        echo(f"{_students_have(len(pending))} answers awaiting manual grading (nbgrader formgrader): their cells "
             "are empty, the 'pending' column names them, and their score is provisional")
    if lms:  # the LMS's own import file, beside grades.csv (autograder/term/lms.py)
        write_exports(course, records, cells, lms, csv_path.parent, lms_assignment_id, echo)
    return csv_path, json_path


# Lateness, after the contract's columns: when it was submitted, when this student's work was due
# (extension included), how late (h) and the points taken off (already deducted from score).
LATE_COLUMNS = ["timestamp", "due", "late_by_hours", "late_penalty"]


def late_cells(record):
    """The LATE_COLUMNS of a record (empty where unknown: not submitted, no due date)."""
    return [record.get("timestamp") or "", record.get("due") or "",
            _fmt(record.get("late_by_hours")), _fmt(record.get("late_penalty"))]


def export_dir(course):
    """Where `export` writes an assignment's files: course/exports/<assignment>/."""
    return course.root / "exports" / course.assignment


def pending_cell(record):
    """The CSV's `pending` column: the cells awaiting a TA, space-separated ("" once all are graded);
    a non-empty cell means the row's score is provisional."""
    return " ".join(record.get("pending", []))


def _fmt(value):
    """Empty for a missing score (a failed or ungraded submission, an answer awaiting a TA), else the number."""
    return "" if value is None else f"{value:g}"


HELP = "exports/<assignment>/grades.csv and grades.json"


def add_arguments(parser):
    parser.add_argument("--lms", choices=["canvas", "moodle"], default=None,
                        help="also write the grade import file of this LMS for the roster `roster import` read")
    parser.add_argument("--lms-assignment-id", metavar="N", default=None,
                        help="Canvas: the assignment to grade (the number in its address; default: the roster's "
                             "assignment column named like this assignment, else a new assignment)")


def run(course, args):
    export(course, lms=args.lms, lms_assignment_id=args.lms_assignment_id)


def _students_have(count):
    return f"{count} student has" if count == 1 else f"{count} students have"
