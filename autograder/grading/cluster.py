"""Grading on a Dask cluster: the same job as the local pool (job.grade_job), on Dask workers.

`grade --scheduler tcp://HOST:PORT` uses an existing cluster (`dask scheduler` and `dask worker`,
dask-jobqueue on Slurm/PBS, dask-kubernetes, ...); `grade --cluster local` starts a LocalCluster on
this machine. What stays as in the local pool:

* a job is data in, data out: the course files shared by the batch go to the cluster once (one task
  whose result every job depends on; the scheduler can recompute it if the worker holding it dies),
  each job carries only its submission's files and returns an Outcome with the notebook's bytes;
* the clock: on the worker, each job runs in a child process of its own through jobs.run, killed
  with its whole process tree at the submission budget plus bookkeeping, as on this machine;
* the sandbox: a worker without a working bubblewrap refuses the job with the local path's message;
* this process stays the one writer of the gradebook: results are merged here, once per student.

A worker that dies mid-batch loses the jobs it was running; the scheduler gives them to another
worker (Dask's own rescheduling, plus `retries` for a job that raised). A student's result is handed
back at most once (deduplicated by student), and merging is idempotent anyway.
"""
import contextlib
import multiprocessing
import tempfile
import uuid
import warnings

from autograder.course import CourseError

# Times a job that raised (a worker that refused it, a grader crash) is tried again, anywhere.
RETRIES = 2
# Jobs in flight per worker thread: enough to keep every worker busy while results come back,
# few enough that a class of 10,000 never sits in the scheduler's memory at once.
IN_FLIGHT_PER_THREAD = 2
CONNECT_TIMEOUT = "30s"
WORKER_WAIT_SECONDS = 60
DAEMON_HELP = ("the Dask worker runs as a daemon process, which may not start the child process each job "
               "is killed in: start it with DASK_DISTRIBUTED__WORKER__DAEMON=False in its environment "
               "(or `dask worker --no-nanny`)")


class WorkerRefused(RuntimeError):
    """A worker that cannot grade safely; the message says how to fix it."""


def worker_problem(sandbox):
    """Why this process (a Dask worker) cannot grade, or "" if it can."""
    if multiprocessing.current_process().daemon:
        return DAEMON_HELP
    if sandbox:
        from autograder.sandbox.bwrap import BWRAP_MISSING_HELP, bwrap_available
        if not bwrap_available():
            return BWRAP_MISSING_HELP
    return ""


def dask_setup(worker):
    """`dask worker --preload autograder.grading.cluster`: the worker imports the grader and starts
    the forkserver its jobs are forked from when it starts, not while its first job waits (the
    imports hold the GIL for seconds, long enough to stall the worker's event loop)."""
    import os

    from autograder.grading import job, jobs
    # The nanny tunes glibc's malloc of its workers for Dask's own data; a job is not Dask's data:
    # its process gets the environment it has under `grade` on one machine.
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    jobs.start_forkserver(job.__name__)


def grade_on_worker(course, student, submission, sandbox, seed, budget, seconds):
    """The Dask task: one submission graded on this worker, in a child process killed at `seconds`.
    Returns an Outcome, or a one-line string saying why there is none (as jobs.run does)."""
    from autograder.grading import jobs
    from autograder.grading.job import JobInput, grade_job

    problem = worker_problem(sandbox)
    if problem:
        raise WorkerRefused(problem)
    with tempfile.TemporaryDirectory(prefix="autograder-") as scratch:  # also what a killed job leaves
        work = [jobs.Job(student, (JobInput(student, course, submission), sandbox, seed, budget, scratch))]
        [(_, result)] = list(jobs.run(grade_job, work, workers=1, seconds=seconds))
    return result


def _shared(course):
    """The course files as a task result, so that every job fetches them from a worker (once per
    worker) and the scheduler can compute them again if the worker holding them dies."""
    return course


@contextlib.contextmanager
def connect(scheduler, workers=None, warn=None):
    """A dask.distributed Client: on the scheduler at `scheduler`, or ("local") on a LocalCluster of
    `workers` single-threaded workers started here and stopped on leaving.

    A Dask scheduler runs whatever a connected client sends it, on itself and on every worker. The
    local cluster therefore lives inside this process and talks over Dask's in-process transport:
    no port another user of the machine could connect to (only the status pages listen, on
    127.0.0.1). Each job still runs in a child process of its own (jobs.run), killed at its budget.
    A tcp:// scheduler is unauthenticated: `warn` gets one line saying so; tls:// uses Dask's TLS
    settings (dask config `distributed.comm.tls.*`), which Client reads by itself.
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler == "local":
        with dask.config.set({"distributed.worker.daemon": False}):  # see DAEMON_HELP
            cluster = LocalCluster(n_workers=workers or multiprocessing.cpu_count(), threads_per_worker=1,
                                   processes=False, protocol="inproc://", dashboard_address="127.0.0.1:0",
                                   worker_dashboard_address="127.0.0.1:0", preload=[__name__])
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    if str(scheduler).startswith("tcp://") and warn is not None:
        warn(f"warning: {scheduler} is neither encrypted nor authenticated: whoever can reach that port can run "
             "code on the scheduler, the workers and this process; on a shared network use a tls:// address "
             "with Dask's TLS settings")
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise CourseError(f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}): "
                          "start one with `dask scheduler` and give its tcp://HOST:PORT") from None
    with client:
        yield client


def check_workers(client, sandbox):
    """Refuse the batch, with one line, when no worker can grade: none connected, the kit not
    installed on them, a worker without bubblewrap (the local path's message) or run as a daemon."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except TimeoutError:
        raise CourseError(f"no Dask worker joined the scheduler within {WORKER_WAIT_SECONDS} s: start one with "
                          "`dask worker tcp://HOST:PORT` (see docker/worker.Dockerfile)") from None
    try:
        problems = client.run(worker_problem, sandbox)
    except (ImportError, AttributeError) as exc:
        raise CourseError(f"a Dask worker cannot import the grader ({exc}): install this kit on every worker "
                          "(requirements.txt, then `pip install -e .`; or docker/worker.Dockerfile)") from None
    bad = {address: problem for address, problem in problems.items() if problem}
    if bad:
        address, problem = sorted(bad.items())[0]
        more = f" (and {len(bad) - 1} more workers)" if len(bad) > 1 else ""
        raise CourseError(f"Dask worker {address}{more}: {problem}")


def run(client, course, submissions, *, sandbox, seed, budget, seconds):
    """Yield (student, result) as jobs finish on the cluster, each student once. `submissions`
    yields (student, {relative path: bytes}) and is read only as slots free up."""
    from distributed import as_completed

    threads = sum(client.nthreads().values()) or 1
    batch = uuid.uuid4().hex[:12]
    with warnings.catch_warnings():  # the course files are a few MB, sent once: not worth scattering
        warnings.filterwarnings("ignore", message=".*Large object.*")
        shared = client.submit(_shared, course, key=f"autograder-course-{batch}", pure=False)
    pending = iter(submissions)
    students, done = {}, set()
    finished = as_completed()

    def submit_next():
        item = next(pending, None)
        if item is None:
            return
        student, files = item
        future = client.submit(grade_on_worker, shared, student, files, sandbox, seed, budget, seconds,
                               key=f"autograder-grade-{batch}-{student}", retries=RETRIES, pure=False)
        students[future.key] = student
        finished.add(future)

    for _ in range(threads * IN_FLIGHT_PER_THREAD):
        submit_next()
    try:
        for future in finished:
            student = students.pop(future.key)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a refused, crashed or repeatedly killed job
                result = _failure(exc)
            future.release()
            submit_next()
            if student in done:  # never merge one student twice
                continue
            done.add(student)
            yield student, result
    finally:
        shared.release()


def _failure(exc):
    """The one line a TA reads for a job the cluster could not finish."""
    if isinstance(exc, WorkerRefused):
        return str(exc)
    if type(exc).__name__ == "KilledWorker":
        return "the Dask workers running this job died each time it was tried; grade this student again"
    return f"grader crashed on a Dask worker: {type(exc).__name__}: {str(exc)[:300]}"
