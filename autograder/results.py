"""The grades of a course as the gradebook and the grader's verdicts hold them: what `export` and
`report` read. Whichever way a submission was autograded (the kit's `grade`, `nbgrader
autograde`, formgrader), its verdicts are in the autograded notebook's metadata (reverify.py)."""
import json

from autograder.grading.pipeline import METADATA_KEY
from autograder.testcells import grade_id, read_notebook

STATUS_FILE = "grading_status.json"


def load_status(course):
    """{student: the kit's last grading outcome} (grading_status.json), {} if never graded."""
    path = course.root / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def graded_cells(source_nb):
    """[(grade_id, points, kind)] of every graded cell in notebook order; kind is auto or manual."""
    cells = []
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            kind = "auto" if cell.cell_type == "code" and not meta.get("solution") else "manual"
            cells.append((grade_id(cell), float(meta["points"]), kind))
    return cells


def verdicts(course, student):
    """The grader's verdict record of a student's autograded notebook, or None."""
    path = course.notebook(course.autograded(student))
    try:
        return json.loads(path.read_bytes())["metadata"].get(METADATA_KEY)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def collect_grades(course):
    """(cells, {student: record}) from the gradebook, the verdicts and grading_status.json."""
    from nbgrader.api import Gradebook, MissingEntry

    cells = graded_cells(read_notebook(course.notebook(course.source)))
    status = load_status(course)
    records = {}
    with Gradebook(course.db_url) as gb:
        students = {s.id for s in gb.students} | set(status)
        for student in sorted(students):
            state = status.get(student, {})
            record = {"student_id": student, "status": state.get("status", "not graded"),
                      "message": state.get("message", ""), "tamper_cells": [],
                      "max_score": sum(points for _, points, _ in cells), "score": None, "cells": {}}
            records[student] = record
            try:
                notebook = gb.find_submission_notebook(course.notebook_name, course.assignment, student)
            except MissingEntry:
                continue
            found = verdicts(course, student)
            if found is None:
                record["status"] = "not verified"
                record["message"] = "autograded without the grader's verification: grade it again"
            else:
                record["tamper_cells"] = list(found["tamper_cells"])
                record["status"] = "tamper suspected" if found["tamper_cells"] else "graded"
            by_id = {g.name: g for g in notebook.grades}
            for gid, points, kind in cells:
                grade = by_id[gid]
                verdict = (found or {}).get("cells", {}).get(gid, {})
                record["cells"][gid] = {"score": grade.score, "max_score": points, "kind": kind,
                                        "needs_manual_grade": bool(grade.needs_manual_grade),
                                        "status": verdict.get("status"), "in_kernel": verdict.get("in_kernel")}
            record["score"] = notebook.score
            record["late_penalty"] = notebook.late_submission_penalty
    return cells, records
