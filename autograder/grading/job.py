"""One submission's grading job: nbgrader's autograde in a private copy of the course (the course's
pipeline: sandboxed kernel without hidden tests, then the grader's own verdicts). Data comes back,
not files: scores, verdicts and the autograded notebook's bytes."""
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import Config

from autograder.course import Course, failure_line, open_api
from autograder.grading.pipeline import METADATA_KEY
from autograder.seeds import SECRET_FILE


@dataclass
class Outcome:
    """What grading one student produced; `message` is the line a TA reads."""

    student: str
    ok: bool
    message: str
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)         # grade_id -> points that count
    kernel_scores: dict = field(default_factory=dict)  # grade_id -> points the student's kernel claimed
    tamper_cells: list = field(default_factory=list)   # passed in the kernel, failed outside it
    timed_out_cells: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    notebook: bytes = b""                              # the autograded notebook (the only file kept)
    grades: dict = field(default_factory=dict)         # grade_id -> (auto_score, needs_manual_grade)
    comments: dict = field(default_factory=dict)       # grade_id -> auto_comment
    late_penalty: float = 0.0
    timestamp: str = ""


def grade_in_scratch(course_root, assignment, student, scratch_root, sandbox, seed, budget):
    """A job: autograde one student in a private course copy. Returns an Outcome."""
    start = time.monotonic()
    course = Course(course_root, assignment)
    scratch = Course(Path(scratch_root) / "jobs" / student, assignment)
    shutil.copytree(course.source, scratch.source, ignore=_not_regular)
    shutil.copytree(course.submitted(student), scratch.submitted(student), ignore=_not_regular)
    for name in (course.config_file.name, SECRET_FILE):
        shutil.copy2(course.root / name, scratch.root / name)
    shutil.copy2(Path(scratch_root) / "gradebook.db", scratch.gradebook)

    problem = _unreadable(course.notebook(scratch.submitted(student)))
    if problem:
        return Outcome(student, False, f"not graded: {problem}", time.monotonic() - start)

    config = Config()
    config.GradingExecute.sandbox = bool(sandbox)
    config.Reverify.deadline = start + budget
    if seed is not None:
        config.Reverify.term_seed = int(seed)
    result = open_api(scratch, config).autograde(assignment, student)
    autograded_nb = scratch.notebook(scratch.autograded(student))
    if not result["success"] or not autograded_nb.is_file():
        return Outcome(student, False, f"autograde failed: {failure_line(result)}", time.monotonic() - start)
    outcome = _read_scratch_grades(scratch, student)
    outcome.notebook = autograded_nb.read_bytes()
    record = json.loads(outcome.notebook)["metadata"].get(METADATA_KEY)
    if not record:
        return Outcome(student, False, "not graded: the course's nbgrader_config.py does not re-verify "
                       "(autograder.grading.pipeline.Reverify is missing: run `python -m autograder release` again)")
    for gid, entry in record["cells"].items():
        outcome.kernel_scores[gid] = entry["points"] if entry["in_kernel"] == "passed" else 0.0
    outcome.tamper_cells = list(record["tamper_cells"])
    outcome.timed_out_cells = [gid for gid, entry in record["cells"].items() if entry["status"] == "timed out"]
    outcome.notes = list(record["notes"])
    outcome.seconds = time.monotonic() - start
    outcome.message = _summary_line(outcome, sum(entry["points"] for entry in record["cells"].values()))
    return outcome


def _not_regular(folder, names):
    """copytree's ignore: anything but regular files and folders (never follow a link)."""
    return [name for name in names
            if not (stat.S_ISREG(mode := os.lstat(os.path.join(folder, name)).st_mode) or stat.S_ISDIR(mode))]


def _unreadable(path):
    """Why nbgrader could not read this notebook, or "" if it can."""
    import nbformat
    try:
        nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same problem for the TA
        return f"{path.name} is not a readable notebook ({type(exc).__name__}: {str(exc)[:120]})"
    return ""


def _read_scratch_grades(scratch, student):
    from nbgrader.api import Gradebook

    outcome = Outcome(student, True, "")
    with Gradebook(scratch.db_url) as gb:
        submission = gb.find_submission_notebook(scratch.notebook_name, scratch.assignment, student)
        for grade in submission.grades:
            outcome.grades[grade.name] = (grade.auto_score, grade.needs_manual_grade)
            if grade.auto_score is not None and grade.cell_type == "code":
                outcome.scores[grade.name] = float(grade.auto_score)
        for comment in submission.comments:
            outcome.comments[comment.name] = comment.auto_comment
        outcome.late_penalty = float(submission.late_submission_penalty or 0.0)
        timestamp = gb.find_submission(scratch.assignment, student).timestamp
        outcome.timestamp = timestamp.isoformat() if timestamp else ""
    return outcome


def _summary_line(outcome, auto_max):
    total = sum(outcome.scores.values())
    line = f"{total:g}/{auto_max:g} autograded points in {outcome.seconds:.1f} s"
    if outcome.timed_out_cells:
        line += f"; timed out in {', '.join(outcome.timed_out_cells)}"
    if outcome.tamper_cells:
        line += (f"; TAMPER SUSPECTED in {', '.join(outcome.tamper_cells)} "
                 "(passed in the notebook, failed when checked outside it)")
    return line
