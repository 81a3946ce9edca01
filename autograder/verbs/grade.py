"""`grade`: autograde submissions, each in a scratch copy of the course, several at once, and
merge the results into the course gradebook.

Each submission is one job in a child process of its own (jobs.py): nbgrader's autograde with the
course's pipeline (sandboxed kernel without hidden tests, then the grader's verdicts: reverify.py).
The parent enforces the whole-submission budget by the clock and kills a job that outruns it.
Why scratch copies: SQLite gradebooks are not safe for concurrent writers, so each job grades one
student against its own copy of the gradebook and only this process writes the real one. A job
hands back data (scores, verdicts, the autograded notebook's bytes); only the notebook is kept.
"""
import os
import shutil
import tempfile
from pathlib import Path

from autograder.course import Course, CourseError, reserved_id
from autograder.grading import jobs
from autograder.grading.job import Outcome, grade_in_scratch
from autograder.grading.merge import merge, write_status
from autograder.seeds import ensure_secret

# What the parent allows beyond the submission budget for nbgrader's own bookkeeping (starting
# and stopping the kernel, the gradebook) before it kills the job.
BOOKKEEPING_SECONDS = 30


def submission_budget(course):
    """Seconds one submission may take, kernel and verification together (the course's setting)."""
    from autograder.grading.execute import GradingExecute
    return GradingExecute(config=course.load_config()).submission_timeout


def grade(course=None, students=None, *, workers=None, sandbox=True, seed=None, progress=True, echo=print):
    """Grade all submitted students (or `students`); returns [Outcome], one per student."""
    course = course or Course()
    course.require_release()
    if sandbox:
        from autograder.sandbox.bwrap import BWRAP_MISSING_HELP, bwrap_available
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
        work = [jobs.Job(student, (str(course.root), course.assignment, student, scratch_root, sandbox, seed, budget))
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
    write_status(course, outcomes)
    for outcome in outcomes:
        echo(f"{outcome.student}: {outcome.message}")
    return outcomes


def _progress(iterable, total, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc="grading", unit="submission")


HELP = "autograde (all, or --student), sandboxed"


def add_arguments(parser):
    parser.add_argument("--student", action="append", metavar="ID", help="grade only this student (repeatable)")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="parallel graders (default: cores)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code without bubblewrap (trusted code only)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="course-wide seed mixed into each submission's hidden inputs; change it per term "
                             "(default: $BACKPROP_GRADER_SEED or 0)")


def run(course, args):
    outcomes = grade(course, args.student, workers=args.workers, sandbox=not args.no_sandbox, seed=args.seed)
    failed = [o.student for o in outcomes if not o.ok]
    print(f"graded {len(outcomes) - len(failed)} of {len(outcomes)} submissions"
          + (f"; not graded: {', '.join(failed)}" if failed else ""))
