"""`export`: exports/<assignment>/grades.csv (the contract's columns) and grades.json (the same, per
cell, with status). A folder per assignment (a course has many), and never the course root: `nbgrader
export` writes its own grades.csv there, and the two must not overwrite each other.

Not an nbgrader ExportPlugin: those see the gradebook only, and an export here also carries the
grader's verdicts (tamper suspected, timed out) kept in the autograded notebooks.
"""
import csv
import json

from autograder.course import Course
from autograder.results import collect_grades


def export(course=None, echo=print):
    course = course or Course()
    course.require_release()
    cells, records = collect_grades(course)
    out = export_dir(course)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "grades.csv", out / "grades.json"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "score", "max_score"] + [gid for gid, _, _ in cells])
        for record in records.values():
            per_cell = [_fmt(record["cells"].get(gid, {}).get("score")) for gid, _, _ in cells]
            writer.writerow([record["student_id"], _fmt(record["score"]), _fmt(record["max_score"])] + per_cell)
    json_path.write_text(json.dumps({"assignment": course.assignment, "students": records}, indent=2))
    echo(f"{len(records)} students: {csv_path} and {json_path}")
    pending = [s for s, r in records.items() if any(c["needs_manual_grade"] for c in r["cells"].values())]
    if pending:
        echo(f"{len(pending)} students have answers awaiting manual grading (nbgrader formgrader)")
    return csv_path, json_path


def export_dir(course):
    """Where `export` writes an assignment's files: course/exports/<assignment>/."""
    return course.root / "exports" / course.assignment


def _fmt(value):
    """Empty for a missing score (a failed or ungraded submission), else the number."""
    return "" if value is None else f"{value:g}"


HELP = "exports/<assignment>/grades.csv and grades.json"


def add_arguments(parser):
    pass


def run(course, args):
    export(course)
