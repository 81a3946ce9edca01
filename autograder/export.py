"""`export`: grades.csv (the contract's columns) and grades.json (the same, per cell, with status)."""
import csv
import json

from .course import ASSIGNMENT, NOTEBOOK, Course
from .grade import load_status
from .testcells import grade_id, read_notebook


def graded_cells(source_nb):
    """[(grade_id, points, kind)] of every graded cell in notebook order; kind is auto or manual."""
    cells = []
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            kind = "auto" if cell.cell_type == "code" and not meta.get("solution") else "manual"
            cells.append((grade_id(cell), float(meta["points"]), kind))
    return cells


def collect_grades(course):
    """{student: record} from the gradebook and grading_status.json, for export and report."""
    from nbgrader.api import Gradebook, MissingEntry

    cells = graded_cells(read_notebook(course.notebook(course.source)))
    status = load_status(course)
    records = {}
    with Gradebook(course.db_url) as gb:
        students = {s.id for s in gb.students} | set(status)
        for student in sorted(students):
            state = status.get(student, {})
            record = {"student_id": student, "status": state.get("status", "not graded"),
                      "message": state.get("message", ""), "tamper_cells": state.get("tamper_cells", []),
                      "max_score": sum(points for _, points, _ in cells), "score": None, "cells": {}}
            try:
                notebook = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
            except MissingEntry:
                records[student] = record
                continue
            by_id = {g.name: g for g in notebook.grades}
            for gid, points, kind in cells:
                grade = by_id[gid]
                record["cells"][gid] = {"score": grade.score, "max_score": points, "kind": kind,
                                        "needs_manual_grade": bool(grade.needs_manual_grade),
                                        "in_kernel": state.get("kernel_scores", {}).get(gid)}
            record["score"] = notebook.score
            record["late_penalty"] = notebook.late_submission_penalty
            records[student] = record
    return cells, records


def export(course=None, echo=print):
    course = course or Course()
    course.require_release()
    cells, records = collect_grades(course)
    csv_path, json_path = course.root / "grades.csv", course.root / "grades.json"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "score", "max_score"] + [gid for gid, _, _ in cells])
        for record in records.values():
            per_cell = [_fmt(record["cells"].get(gid, {}).get("score")) for gid, _, _ in cells]
            writer.writerow([record["student_id"], _fmt(record["score"]), _fmt(record["max_score"])] + per_cell)
    json_path.write_text(json.dumps({"assignment": ASSIGNMENT, "students": records}, indent=2))
    echo(f"{len(records)} students: {csv_path} and {json_path}")
    pending = [s for s, r in records.items() if any(c["needs_manual_grade"] for c in r["cells"].values())]
    if pending:
        echo(f"{len(pending)} students have answers awaiting manual grading (nbgrader formgrader)")
    return csv_path, json_path


def _fmt(value):
    """Empty for a missing score (a failed or ungraded submission), else the number."""
    return "" if value is None else f"{value:g}"
