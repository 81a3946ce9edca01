"""`grade`: autograde submissions, several at once, and merge the results into the course gradebook.

Each submission is one job, data in and data out (grading/job.py): the course files and the
submission's bytes in, an Outcome with the autograded notebook's bytes out; nbgrader's autograde
with the course's pipeline (sandboxed kernel without hidden tests, then the grader's verdicts) runs
in a private temporary course. Jobs run in child processes of their own on this machine (jobs.py),
or on a Dask cluster (`--scheduler`, `--cluster local`: grading/cluster.py), where each job is again
a child process on its worker. Either way the job's process is killed by the clock when it
outruns the submission budget, and only this process writes the course: SQLite gradebooks are not
safe for concurrent writers, so each job grades against its own snapshot of the gradebook.
"""
import contextlib
import os
import tempfile

from autograder.course import Course, CourseError, reserved_id
from autograder.grading import jobs
from autograder.grading.job import Outcome, course_files, grade_job, job_input
from autograder.grading.merge import merge, write_status
from autograder.seeds import ensure_secret

# What the parent allows beyond the submission budget for nbgrader's own bookkeeping (starting
# and stopping the kernel, the gradebook) before it kills the job.
BOOKKEEPING_SECONDS = 30


def submission_budget(course):
    """Seconds one submission may take, kernel and verification together (the course's setting)."""
    from autograder.grading.execute import GradingExecute
    return GradingExecute(config=course.load_config()).submission_timeout


def grade(course=None, students=None, *, workers=None, sandbox=True, seed=None, progress=True, echo=print,
          scheduler=None):
    """Grade all submitted students (or `students`); returns [Outcome], one per student.

    `scheduler`: None grades here with `workers` child processes; "local" starts a Dask
    LocalCluster of `workers` in-process workers (each job still a child process); "tcp://HOST:PORT"
    or "tls://HOST:PORT" sends the jobs to that Dask scheduler.
    """
    course = course or Course()
    course.require_release()
    if sandbox and scheduler is None:  # on a cluster the workers run student code: they check
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
    shared = course_files(course)  # the gradebook snapshot every job grades against

    outcomes = []
    with _finished_jobs(course, students, shared, workers, sandbox, seed, budget, scheduler, echo) as finished:
        for student, result in _progress(finished, len(students), progress):
            outcome = result if isinstance(result, Outcome) else Outcome(student, False, f"not graded: {result}")
            try:
                merge(course, outcome)
            except Exception as exc:  # noqa: BLE001 - one student's result must not stop the batch
                outcome = Outcome(student, False, f"could not merge the result: {type(exc).__name__}: {exc}")
                merge(course, outcome)
            outcomes.append(outcome)
    outcomes.sort(key=lambda o: o.student)
    write_status(course, outcomes)
    for outcome in outcomes:
        echo(f"{outcome.student}: {outcome.message}")
    return outcomes


@contextlib.contextmanager
def _finished_jobs(course, students, shared, workers, sandbox, seed, budget, scheduler, echo=print):
    """(student, Outcome or why-not line) as jobs finish, here or on a Dask cluster. Submissions are
    read from the course only when their job is about to start."""
    seconds = budget + BOOKKEEPING_SECONDS
    if scheduler is None:
        workers = max(1, min(workers or os.cpu_count() or 1, len(students)))
        with tempfile.TemporaryDirectory(prefix="autograder-") as scratch:  # also what a killed job leaves
            work = (jobs.Job(student, (job_input(course, student, shared), sandbox, seed, budget, scratch))
                    for student in students)
            yield ((job.key, result) for job, result in jobs.run(grade_job, work, workers=workers, seconds=seconds))
        return
    from autograder.grading import cluster
    with cluster.connect(scheduler, workers, warn=echo) as client:
        cluster.check_workers(client, sandbox)
        submissions = ((student, job_input(course, student, shared).submission) for student in students)
        yield cluster.run(client, shared, submissions, sandbox=sandbox, seed=seed, budget=budget, seconds=seconds)


def _progress(iterable, total, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc="grading", unit="submission")


HELP = "autograde (all, or --student), sandboxed"


def add_arguments(parser):
    parser.add_argument("--student", action="append", metavar="ID", help="grade only this student (repeatable)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="parallel graders here, or worker processes of --cluster local (default: cores)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code without bubblewrap (trusted code only)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="course-wide seed mixed into each submission's hidden inputs; change it per term "
                             "(default: $BACKPROP_GRADER_SEED or 0)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="grade on an existing Dask cluster (`dask scheduler` and `dask worker`, or any Dask "
                            "deployment); this machine only merges the results")
    where.add_argument("--cluster", choices=["local"],
                       help="start a Dask LocalCluster here (--workers processes) and grade on it")


def run(course, args):
    outcomes = grade(course, args.student, workers=args.workers, sandbox=not args.no_sandbox, seed=args.seed,
                     scheduler=args.scheduler or args.cluster)
    failed = [o.student for o in outcomes if not o.ok]
    print(f"graded {len(outcomes) - len(failed)} of {len(outcomes)} submissions"
          + (f"; not graded: {', '.join(failed)}" if failed else ""))
