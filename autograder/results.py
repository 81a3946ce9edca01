"""The grades of a course as the gradebook and the grader's verdicts hold them: what `export` and
`report` read. Whichever way a submission was autograded (the kit's `grade`, `nbgrader
autograde`, formgrader), its verdicts are in the autograded notebook's metadata (reverify.py)."""
import json

from autograder.grading.late import penalty_points
from autograder.grading.pipeline import METADATA_KEY
from autograder.term import deadlines
from autograder.testcells import grade_id, read_notebook

STATUS_FILE = "grading_status.json"


def load_status(course):
    """{student: the kit's last grading outcome} of the course's assignment, {} if never graded.
    grading_status.json holds one such section per assignment: a student graded in two assignments
    has two outcomes, and neither overwrites the other."""
    path = course.root / STATUS_FILE
    return (json.loads(path.read_text()) if path.is_file() else {}).get(course.assignment, {})


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


def is_pending(grade):
    """Whether a gradebook Grade awaits a TA: in formgrader's queue with no mark at all (neither the
    autograder's nor a TA's), so its 0 is not a mark and must read as pending. A flagged cell that
    has a mark (nbgrader's "needs review") keeps showing that mark."""
    return bool(grade.needs_manual_grade) and grade.manual_score is None and grade.auto_score is None


def collect_grades(course):
    """(cells, {student: record}) from the gradebook, the verdicts and grading_status.json.

    A cell awaiting manual grading has score None and pending True; a record's `pending` lists
    those cells, `provisional` says the total may still grow, and `score` sums the graded cells."""
    from nbgrader.api import Gradebook, MissingEntry

    cells = graded_cells(read_notebook(course.notebook(course.source)))
    status = load_status(course)
    records = {}
    with Gradebook(course.db_url) as gb:
        students = {s.id for s in gb.students} | set(status)
        lateness = Lateness(course, gb)
        for student in sorted(students):
            state = status.get(student, {})
            record = {"student_id": student, "status": state.get("status", "not graded"),
                      "message": state.get("message", ""), "tamper_cells": [],
                      "max_score": sum(points for _, points, _ in cells), "score": None, "cells": {}}
            records[student] = record
            record.update(lateness.of(student))
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
                pending = is_pending(grade)
                record["cells"][gid] = {"score": None if pending else grade.score, "max_score": points, "kind": kind,
                                        "needs_manual_grade": bool(grade.needs_manual_grade), "pending": pending,
                                        "status": verdict.get("status"), "in_kernel": verdict.get("in_kernel")}
            record["pending"] = [gid for gid, cell in record["cells"].items() if cell["pending"]]
            record["provisional"] = bool(record["pending"])
            # the points graded so far: a cell awaiting a TA adds nothing (not even a score it had before)
            record["score"] = notebook.score - sum(by_id[gid].score for gid in record["pending"])
            record.update(lateness.of(student, notebook, record["score"]))
    return cells, records


class Lateness:
    """Each student's due date (extension included), submission time and late penalty, for
    collect_grades. The penalty is the one stored when the submission was graded (nbgrader's
    AssignLatePenalties); `late_penalty_stale` says the course's policy would now give another one
    (the due date, an extension or a manual grade changed since): `grade` must run again."""

    def __init__(self, course, gb):
        from nbgrader.api import MissingEntry

        from autograder.grading.late import LatePolicy

        try:
            self.due = deadlines.as_utc(gb.find_assignment(course.assignment).duedate)
        except MissingEntry:  # not generated into this gradebook yet: no due date either
            self.due = None
        self.extensions = deadlines.assignment_entry(course.root, course.assignment)["extensions"]
        config = course.load_config()
        named = str(config.AssignLatePenalties.get("plugin_class", ""))
        self.policy = LatePolicy(config=config).policy() if named.endswith("grading.late.LatePolicy") else None

    def of(self, student, notebook=None, score=None):
        """The lateness keys of a record; with the submitted `notebook`, its timestamp and penalty,
        and `score` (the points so far) less the penalty."""
        extension = self.extensions.get(student)
        due = deadlines.student_due(self.due, extension)
        found = {"due": deadlines.iso_utc(due), "extension": extension, "timestamp": "",
                 "late_by_hours": None, "late_penalty": None, "late_penalty_stale": False}
        if notebook is None:
            return found
        timestamp = deadlines.as_utc(notebook.assignment.timestamp)
        seconds = max(0.0, (timestamp - due).total_seconds()) if timestamp and due else 0.0
        penalty = float(notebook.late_submission_penalty or 0.0)
        found.update(timestamp=deadlines.iso_utc(timestamp), late_by_hours=round(seconds / 3600, 2),
                     late_penalty=penalty, raw_score=score,
                     score=None if score is None else max(0.0, score - penalty))
        if self.policy is not None:
            expected = penalty_points(self.policy, seconds, notebook.score, notebook.max_score)
            found["late_penalty_stale"] = abs(expected - penalty) > 1e-6
        return found
