"""One submission's grading job, data in and data out: `grade_job` takes a JobInput (the bytes of
the assignment's source, the submission, the course files its config reads and a gradebook
snapshot), rebuilds a private course from them in a temporary folder, runs nbgrader's autograde
there with the course's pipeline (sandboxed kernel without hidden tests, then the grader's own
verdicts) and returns an Outcome with the autograded notebook's bytes. It never reads or writes the
course folder, so the same function runs in a local child process (verbs/grade.py through jobs.py)
or on a Dask worker on another machine (cluster.py)."""
import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from traitlets.config import Config

from autograder.course import Course, failure_line, open_api
from autograder.gradebook_db import gradebook_snapshot_bytes, sqlite_url
from autograder.grading.pipeline import METADATA_KEY
from autograder.seeds import SECRET_FILE

# Files of the course root that a job needs besides source/ and the submission: the config, the
# secret that seeds hidden inputs, and every file the config or a pipeline step reads (the
# deadlines file with the students' extensions). A file missing from a course is not shipped.
CONFIG_FILE = "nbgrader_config.py"
COURSE_FILES = (CONFIG_FILE, SECRET_FILE, "deadlines.json")
DB_URL_LINE = re.compile(r"\s*c\.CourseDirectory\.db_url\s*=")


@dataclass(frozen=True)
class CourseFiles:
    """What every job of one batch shares, read once from the course: {relative path: bytes}."""

    assignment: str
    source: dict      # source/<assignment>/: the source notebook and the files students receive
    root_files: dict  # COURSE_FILES that exist, by name
    gradebook: bytes  # a snapshot of gradebook.db: the assignment, its cells, due date, students


@dataclass(frozen=True)
class JobInput:
    """One submission to grade: the shared course files and the student's submitted folder."""

    student: str
    course: CourseFiles
    submission: dict  # submitted/<student>/<assignment>/: {relative path: bytes}


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


def course_files(course):
    """The CourseFiles of a course's assignment (the course must be released)."""
    root_files = {name: (course.root / name).read_bytes() for name in COURSE_FILES
                  if (course.root / name).is_file()}
    if CONFIG_FILE in root_files:
        root_files[CONFIG_FILE] = without_db_url(root_files[CONFIG_FILE])
    return CourseFiles(course.assignment, read_tree(course.source), root_files, gradebook_snapshot_bytes(course))


def without_db_url(config):
    """The course config without its gradebook URL: a job grades against its own SQLite snapshot
    (it sets its own db_url), and the URL may carry a database password that a grading worker on
    another machine has no business holding."""
    lines = config.decode("utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not DB_URL_LINE.match(line)).encode("utf-8")


def job_input(course, student, shared):
    """The JobInput of one student's submission, sharing `shared` (course_files) with the batch."""
    return JobInput(student, shared, read_tree(course.submitted(student)))


def read_tree(folder):
    """{relative POSIX path: bytes} of every regular file under `folder`; links and special files
    are skipped, never followed (as collect and the old scratch copy did)."""
    files = {}
    for parent, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(parent, d))]
        for name in names:
            path = os.path.join(parent, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                files[Path(path).relative_to(folder).as_posix()] = Path(path).read_bytes()
    return files


def write_tree(folder, files):
    """Write {relative path: bytes} under `folder`; a path that would leave it is an error."""
    for relative, data in files.items():
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
            raise ValueError(f"refusing to write {relative!r} outside the job's folder")
        dest = Path(folder, *parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def grade_job(job, sandbox, seed, budget, scratch_parent=None):
    """A job: autograde one submission in a private course rebuilt from `job` in a temporary folder
    (under `scratch_parent` if given, so that the caller can clean up after a job it had to kill),
    deleted afterwards. Returns an Outcome."""
    start = time.monotonic()
    folder = tempfile.mkdtemp(prefix=f"job-{job.student}-", dir=scratch_parent)
    try:
        return _grade_in(Path(folder), job, sandbox, seed, start + budget, start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _grade_in(folder, job, sandbox, seed, deadline, start):
    student, assignment = job.student, job.course.assignment
    scratch = Course(folder / "course", assignment)
    write_tree(scratch.source, job.course.source)
    write_tree(scratch.submitted(student), job.submission)
    write_tree(scratch.root, job.course.root_files)
    scratch.gradebook.write_bytes(job.course.gradebook)

    problem = _unreadable(scratch.notebook(scratch.submitted(student)))
    if problem:
        return Outcome(student, False, f"not graded: {problem}", time.monotonic() - start)

    config = Config()
    # the snapshot, never the course's own database (the copied config may name a PostgreSQL one)
    config.CourseDirectory.db_url = sqlite_url(scratch.gradebook)
    config.GradingExecute.sandbox = bool(sandbox)
    config.Reverify.deadline = deadline
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
    with Gradebook(sqlite_url(scratch.gradebook)) as gb:
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
