"""What a re-grade does to a TA's manual grades, one rule for both ways of grading: the kit's merge
(autograder.grading.merge) and nbgrader's own autograde or formgrader's button (KeepManualGrades,
the course's replacement for nbgrader's SaveAutoGrades).

nbgrader's SaveAutoGrades sends every cell with a manual score back to formgrader's queue on every
autograde ("needs review"), so re-grading a class after a fix undid a TA's day of work. Here:
  - a written answer (a graded solution cell) keeps its manual score and stays out of the queue when
    its text is the one the TA graded; when the student's text changed since (a new submission), the
    old mark belonged to another answer: the score is cleared and the answer is back in the queue.
    The TA's comment is kept either way (it is in the same box when they grade the new text);
  - a test cell a TA overrode by hand keeps the override, and goes back to the queue only when the
    automatic score moved (the code behaves differently now);
  - a cell never graded by hand follows the autograder (a written answer: in the queue).

"The text the TA graded" is the text of the last autograde (what formgrader showed): its fingerprint
(sha256) is kept per assignment, student and answer in graded_answers.json in the course root, and
renewed on every autograde. A manual score with no fingerprint (graded before the kit kept them)
gets nbgrader's treatment: kept, and back in the queue for a look.
"""
import hashlib
import json
import os
from pathlib import Path

from nbgrader import utils
from nbgrader.preprocessors import SaveAutoGrades

from autograder.course import coursedir_of

ANSWERS_FILE = "graded_answers.json"


def is_written_answer(meta):
    """A cell a TA grades by hand: graded, and written by the student (a solution cell)."""
    return bool(meta.get("grade") and meta.get("solution"))


def fingerprint(text):
    """The answer's identity: its text, line endings and surrounding blanks aside."""
    normal = "\n".join(line.rstrip() for line in str(text).replace("\r\n", "\n").strip().split("\n"))
    return hashlib.sha256(normal.encode()).hexdigest()


def answer_fingerprints(nb):
    """{grade_id: fingerprint} of the written answers of a notebook (first cell of each id)."""
    found = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if is_written_answer(meta) and meta.get("grade_id"):
            found.setdefault(meta["grade_id"], fingerprint(cell.get("source", "")))
    return found


def load_fingerprints(root, assignment, student):
    """The fingerprints stored at the student's last autograde ({} if none or unreadable)."""
    try:
        stored = json.loads((Path(root) / ANSWERS_FILE).read_text())
        return dict(stored[assignment][student])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save_fingerprints(root, assignment, student, fingerprints):
    """Store a student's fingerprints (replacing a torn or unreadable file; written atomically)."""
    path = Path(root) / ANSWERS_FILE
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict):
            stored = {}
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored.get(assignment), dict):
        stored[assignment] = {}
    stored[assignment][student] = dict(fingerprints)
    staged = path.with_name(f".{ANSWERS_FILE}.{os.getpid()}")
    staged.write_text(json.dumps(stored, indent=1, sort_keys=True))
    os.replace(staged, path)


def answer_changed(gid, old, new):
    """True/False whether the written answer `gid` changed since the last autograde; None if that
    autograde left no fingerprint."""
    if gid not in old:
        return None
    return old[gid] != new.get(gid)


def apply_regrade(grade, auto_score, auto_needs_manual, written, changed):
    """Set a gradebook Grade from a (re-)grade's automatic result, keeping what a TA did that still
    applies (see the module's docstring). `changed`: answer_changed's verdict for a written answer."""
    previous_auto = grade.auto_score
    grade.auto_score = auto_score
    if grade.manual_score is None:
        grade.needs_manual_grade = bool(auto_needs_manual)
    elif written:
        if changed:
            grade.manual_score = None
            grade.needs_manual_grade = True
        else:
            grade.needs_manual_grade = changed is None
    else:
        grade.needs_manual_grade = not _same(previous_auto, auto_score)


def _same(a, b):
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) < 1e-9


class KeepManualGrades(SaveAutoGrades):
    """nbgrader's SaveAutoGrades with the kit's rule for cells a TA graded (apply_regrade): put in
    its place in c.Autograde.autograde_preprocessors, so `nbgrader autograde` and formgrader's
    autograde button keep manual grades as the kit's `grade` does. Renews graded_answers.json in the
    course root (in the kit's scratch copy: a copy nobody reads; the kit's merge keeps the real one)."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self._root = Path(self._coursedir().root)
        self._old = load_fingerprints(self._root, info["assignment"], info["student"])
        self._new = answer_fingerprints(nb)
        nb, resources = super().preprocess(nb, resources)
        save_fingerprints(self._root, info["assignment"], info["student"], self._new)
        return nb, resources

    def _add_score(self, cell, resources):
        meta = cell.metadata["nbgrader"]
        grade = self.gradebook.find_grade(meta["grade_id"], self.notebook_id, self.assignment_id, self.student_id)
        auto_score, _ = utils.determine_grade(cell, self.log)
        written = is_written_answer(meta)
        changed = answer_changed(meta["grade_id"], self._old, self._new) if written else None
        apply_regrade(grade, auto_score, auto_score is None, written, changed)
        self.gradebook.db.commit()

    def _coursedir(self):
        from nbgrader.coursedir import CourseDirectory
        return coursedir_of(self) or CourseDirectory(config=self.config)
