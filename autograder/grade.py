"""`grade`: autograde submissions, each in a scratch copy of the course, several at once, and
merge the results into the course gradebook.

Each submission is one job in a child process of its own (jobs.py): nbgrader's autograde with the
course's pipeline (sandboxed kernel without hidden tests, then the grader's verdicts: reverify.py).
The parent enforces the whole-submission budget by the clock and kills a job that outruns it.
Why scratch copies: SQLite gradebooks are not safe for concurrent writers, so each job grades one
student against its own copy of the gradebook and only this process writes the real one. A job
hands back data (scores, verdicts, the autograded notebook's bytes); only the notebook is kept.
"""
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from traitlets.config import Config

from . import jobs
from .course import ASSIGNMENT, NOTEBOOK, Course, CourseError, failure_line, open_api, reserved_id
from .results import STATUS_FILE
from .reverify import METADATA_KEY
from .seeds import SECRET_FILE, ensure_secret

# What the parent allows beyond the submission budget for nbgrader's own bookkeeping (starting
# and stopping the kernel, the gradebook) before it kills the job.
BOOKKEEPING_SECONDS = 30


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


def submission_budget(course):
    """Seconds one submission may take, kernel and verification together (the course's setting)."""
    from .preprocessors import GradingExecute
    return GradingExecute(config=course.load_config()).submission_timeout


def grade(course=None, students=None, *, workers=None, sandbox=True, seed=None, progress=True, echo=print):
    """Grade all submitted students (or `students`); returns [Outcome], one per student."""
    course = course or Course()
    course.require_release()
    if sandbox:
        from .sandbox import BWRAP_MISSING_HELP, bwrap_available
        if not bwrap_available():
            raise CourseError(BWRAP_MISSING_HELP)
    submitted = course.submitted_students()
    students = list(students) if students else submitted
    for student in [s for s in students if s not in submitted]:
        echo(f"{student}: no submission at {course.notebook(course.submitted(student))}; skipped")
    for student in [s for s in students if reserved_id(s)]:  # a folder made by hand under submitted/
        echo(f"{student}: not graded: {reserved_id(student)}; rename the folder under submitted/")
    students = [s for s in students if s in submitted and not reserved_id(s)]
    if not students:
        echo("nothing to grade: run `python -m autograder collect PATH` first")
        return []
    ensure_secret(course.root)
    budget = submission_budget(course)
    workers = max(1, min(workers or os.cpu_count() or 1, len(students)))

    outcomes = []
    with tempfile.TemporaryDirectory(prefix="autograder-") as scratch_root:
        shutil.copy2(course.gradebook, Path(scratch_root) / "gradebook.db")  # jobs copy this snapshot
        work = [jobs.Job(student, (str(course.root), student, scratch_root, sandbox, seed, budget))
                for student in students]
        finished = jobs.run(grade_in_scratch, work, workers=workers, seconds=budget + BOOKKEEPING_SECONDS)
        for job, result in _progress(finished, len(work), progress):
            outcome = result if isinstance(result, Outcome) else Outcome(job.key, False, f"not graded: {result}")
            try:
                merge(course, outcome)
            except Exception as exc:  # noqa: BLE001 - one student's result must not stop the batch
                outcome = Outcome(job.key, False, f"could not merge the result: {type(exc).__name__}: {exc}")
                merge(course, outcome)
            outcomes.append(outcome)
    outcomes.sort(key=lambda o: o.student)
    _write_status(course, outcomes)
    for outcome in outcomes:
        echo(f"{outcome.student}: {outcome.message}")
    return outcomes


def _progress(iterable, total, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc="grading", unit="submission")


def grade_in_scratch(course_root, student, scratch_root, sandbox, seed, budget):
    """A job: autograde one student in a private course copy. Returns an Outcome."""
    start = time.monotonic()
    course = Course(course_root)
    scratch = Course(Path(scratch_root) / "jobs" / student)
    shutil.copytree(course.source, scratch.source, ignore=_not_regular)
    shutil.copytree(course.submitted(student), scratch.submitted(student), ignore=_not_regular)
    for name in (course.config_file.name, SECRET_FILE):
        shutil.copy2(course.root / name, scratch.root / name)
    shutil.copy2(Path(scratch_root) / "gradebook.db", scratch.gradebook)

    problem = _unreadable(course.notebook(scratch.submitted(student)))
    if problem:
        return Outcome(student, False, f"not graded: {problem}", time.monotonic() - start)

    config = Config()
    config.GradingExecute.sandbox = config.Reverify.sandbox = bool(sandbox)
    config.Reverify.deadline = start + budget
    if seed is not None:
        config.Reverify.term_seed = int(seed)
    result = open_api(scratch, config).autograde(ASSIGNMENT, student)
    autograded_nb = scratch.notebook(scratch.autograded(student))
    if not result["success"] or not autograded_nb.is_file():
        return Outcome(student, False, f"autograde failed: {failure_line(result)}", time.monotonic() - start)
    outcome = _read_scratch_grades(scratch, student)
    outcome.notebook = autograded_nb.read_bytes()
    record = json.loads(outcome.notebook)["metadata"].get(METADATA_KEY)
    if not record:
        return Outcome(student, False, "not graded: the course's nbgrader_config.py does not re-verify "
                       "(autograder.reverify.Reverify is missing: run `python -m autograder release` again)")
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
        submission = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
        for grade in submission.grades:
            outcome.grades[grade.name] = (grade.auto_score, grade.needs_manual_grade)
            if grade.auto_score is not None and grade.cell_type == "code":
                outcome.scores[grade.name] = float(grade.auto_score)
        for comment in submission.comments:
            outcome.comments[comment.name] = comment.auto_comment
        outcome.late_penalty = float(submission.late_submission_penalty or 0.0)
        timestamp = gb.find_submission(ASSIGNMENT, student).timestamp
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


def merge(course, outcome):
    """Write one outcome into the course: the autograded notebook and the gradebook (or, for a
    failure, remove every older result so that nothing stale looks current)."""
    from nbgrader.api import Gradebook, MissingEntry

    dest = course.autograded(outcome.student)
    if not outcome.ok:
        with Gradebook(course.db_url) as gb:
            try:
                gb.remove_submission(ASSIGNMENT, outcome.student)
            except MissingEntry:
                pass
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(course.feedback(outcome.student), ignore_errors=True)
        return
    staged = dest.with_name(f".{dest.name}.incoming")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    course.notebook(staged).write_bytes(outcome.notebook)
    shutil.rmtree(dest, ignore_errors=True)
    staged.rename(dest)
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student(outcome.student)
        kwargs = {"timestamp": outcome.timestamp} if outcome.timestamp else {}
        gb.update_or_create_submission(ASSIGNMENT, outcome.student, **kwargs)
        notebook = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, outcome.student)
        notebook.late_submission_penalty = outcome.late_penalty
        for grade in notebook.grades:
            if grade.name in outcome.grades:
                grade.auto_score, needs_manual = outcome.grades[grade.name]
                grade.needs_manual_grade = needs_manual or grade.manual_score is not None
        for comment in notebook.comments:
            comment.auto_comment = outcome.comments.get(comment.name, comment.auto_comment)
        gb.db.commit()


def _write_status(course, outcomes):
    """grading_status.json: the latest outcome of every student ever graded (merged, not replaced)."""
    path = course.root / STATUS_FILE
    status = json.loads(path.read_text()) if path.is_file() else {}
    for outcome in outcomes:
        record = asdict(outcome)
        for key in ("notebook", "grades", "comments"):
            record.pop(key)
        record["status"] = ("failed" if not outcome.ok else
                            "tamper suspected" if outcome.tamper_cells else "graded")
        record["graded_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        status[outcome.student] = record
    path.write_text(json.dumps(status, indent=2, sort_keys=True))

