"""`grade`: autograde submissions, each in a scratch copy of the course, several at once; re-check
every verdict outside the student's kernel; merge the results into the course gradebook.

Why scratch copies: SQLite gradebooks are not safe for concurrent writers, so each worker grades
one student against its own copy of the gradebook and only this process writes the real one.
"""
import json
import os
import shutil
import stat
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from traitlets.config import Config

from .course import ASSIGNMENT, NOTEBOOK, Course, CourseError, failure_line, open_api
from .testcells import SEED_VARIABLE, read_notebook, test_cells

STATUS_FILE = "grading_status.json"


@dataclass
class Outcome:
    """What grading one student produced; `message` is the line a TA reads."""

    student: str
    ok: bool
    message: str
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)         # grade_id -> points that count
    kernel_scores: dict = field(default_factory=dict)  # grade_id -> points from nbgrader's run
    tamper_cells: list = field(default_factory=list)   # passed in the kernel, failed outside it
    notes: list = field(default_factory=list)
    autograded: str = ""                               # scratch folder to merge from
    files: list = field(default_factory=list)          # regular files of it to merge (relative paths)
    grades: dict = field(default_factory=dict)         # grade_id -> (auto_score, needs_manual_grade)
    comments: dict = field(default_factory=dict)       # grade_id -> auto_comment
    late_penalty: float = 0.0
    timestamp: str = ""


def grade(course=None, students=None, *, workers=None, sandbox=True, verify=True, seed=None,
          progress=True, echo=print):
    """Grade all submitted students (or `students`); returns [Outcome], one per student."""
    course = course or Course()
    course.require_release()
    if sandbox:
        from .sandbox import BWRAP_MISSING_HELP, bwrap_available
        if not bwrap_available():
            raise CourseError(BWRAP_MISSING_HELP)
    submitted = course.submitted_students()
    students = list(students) if students else submitted
    unknown = [s for s in students if s not in submitted]
    for student in unknown:
        echo(f"{student}: no submission at {course.notebook(course.submitted(student))}; skipped")
    students = [s for s in students if s in submitted]
    if not students:
        echo("nothing to grade: run `python -m autograder collect PATH` first")
        return []
    seed = int(os.environ.get(SEED_VARIABLE, "0")) if seed is None else int(seed)
    workers = max(1, min(workers or os.cpu_count() or 1, len(students)))

    outcomes = []
    with tempfile.TemporaryDirectory(prefix="autograder-") as scratch_root:
        template = Path(scratch_root) / "gradebook.db"
        shutil.copy2(course.gradebook, template)  # workers copy this snapshot, never the live file
        jobs = [(str(course.root), student, scratch_root, sandbox, verify, seed) for student in students]
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(grade_in_scratch, *job): job[1] for job in jobs}
            for future in _progress(as_completed(futures), len(futures), progress):
                student = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker must not stop the batch
                    outcome = Outcome(student, False, f"grader crashed: {type(exc).__name__}: {exc}")
                try:
                    merge(course, outcome)
                except Exception as exc:  # noqa: BLE001 - nor must one student's leftovers
                    outcome = Outcome(student, False, f"could not merge the result: {type(exc).__name__}: {exc}")
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


def grade_in_scratch(course_root, student, scratch_root, sandbox, verify, seed):
    """Worker: autograde one student in a private course copy, then verify. Returns an Outcome."""
    start = time.monotonic()
    course = Course(course_root)
    scratch = Course(Path(scratch_root) / student)
    shutil.copytree(course.source, scratch.source)
    shutil.copytree(course.submitted(student), scratch.submitted(student), symlinks=False)
    shutil.copy2(course.config_file, scratch.config_file)
    shutil.copy2(Path(scratch_root) / "gradebook.db", scratch.gradebook)

    submitted_nb = course.notebook(scratch.submitted(student))
    problem = _unreadable(submitted_nb)
    if problem:
        return Outcome(student, False, f"not graded: {problem}", time.monotonic() - start)

    os.environ[SEED_VARIABLE] = str(seed)  # the kernel inherits it; hidden tests draw from it
    config = Config()
    config.GradingExecute.sandbox = bool(sandbox)
    result = open_api(scratch, config).autograde(ASSIGNMENT, student)
    autograded_nb = scratch.notebook(scratch.autograded(student))
    if not result["success"] or not autograded_nb.is_file():
        return Outcome(student, False, f"autograde failed: {failure_line(result)}", time.monotonic() - start)

    outcome = _read_scratch_grades(scratch, student)
    outcome.autograded = str(scratch.autograded(student))
    # Only what nbgrader put there comes back: the notebook and the files of the submission and
    # source folders, each a regular file (the student's kernel could leave links to secrets).
    expected = _regular_files(scratch.source) | _regular_files(scratch.submitted(student)) | {f"{NOTEBOOK}.ipynb"}
    outcome.files = sorted(_regular_files(scratch.autograded(student)) & expected)
    points = {gid: pts for gid, pts, _ in test_cells(read_notebook(course.notebook(course.source)))}
    if verify:
        _apply_verification(outcome, course, submitted_nb, Path(scratch_root) / f"{student}-verify",
                            sandbox, seed, points)
    outcome.seconds = time.monotonic() - start
    outcome.message = _summary_line(outcome, sum(points.values()))
    return outcome


def _regular_files(root):
    """Relative paths of the regular files below `root`, never following a symlink."""
    found = set()
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            path = Path(folder) / name
            if stat.S_ISREG(path.lstat().st_mode):
                found.add(path.relative_to(root).as_posix())
    return found


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
                outcome.kernel_scores[grade.name] = float(grade.auto_score)
        for comment in submission.comments:
            outcome.comments[comment.name] = comment.auto_comment
        outcome.late_penalty = float(submission.late_submission_penalty or 0.0)
        timestamp = gb.find_submission(ASSIGNMENT, student).timestamp
        outcome.timestamp = timestamp.isoformat() if timestamp else ""
    outcome.scores = dict(outcome.kernel_scores)
    return outcome


def _apply_verification(outcome, course, submitted_nb, workdir, sandbox, seed, points):
    """Out-of-kernel verdicts decide the points ({grade_id: points}) of every autograded test cell."""
    from .verify import verify

    source_nb = course.notebook(course.source)
    result = verify(source_nb, submitted_nb, workdir, sandbox=sandbox, seed=seed)
    outcome.notes.extend(result.notes)
    for gid, (passed, _message) in result.cells.items():
        verified = points[gid] if passed else 0.0
        kernel = outcome.kernel_scores.get(gid, 0.0)
        if kernel > verified:
            outcome.tamper_cells.append(gid)
        elif kernel < verified:
            outcome.notes.append(f"{gid}: failed in the notebook but passed re-verification")
        outcome.scores[gid] = verified
        outcome.grades[gid] = (verified, False)


def _summary_line(outcome, auto_max):
    total = sum(outcome.scores.values())
    line = f"{total:g}/{auto_max:g} autograded points in {outcome.seconds:.1f} s"
    if outcome.tamper_cells:
        line += f"; TAMPER SUSPECTED in {', '.join(outcome.tamper_cells)} (passed in the notebook, failed re-verification)"
    return line


def merge(course, outcome):
    """Write one outcome into the course: autograded folder and gradebook (or clear stale results)."""
    from nbgrader.api import Gradebook, MissingEntry

    dest = course.autograded(outcome.student)
    if not outcome.ok:
        # A failed re-grade must not leave an older score looking current.
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
    for relative in outcome.files:
        (staged / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(outcome.autograded) / relative, staged / relative, follow_symlinks=False)
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
        for key in ("autograded", "files", "grades", "comments"):
            record.pop(key)
        record["status"] = ("failed" if not outcome.ok else
                            "tamper suspected" if outcome.tamper_cells else "graded")
        record["graded_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        status[outcome.student] = record
    path.write_text(json.dumps(status, indent=2, sort_keys=True))


def load_status(course):
    path = course.root / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
