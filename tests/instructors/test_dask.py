"""Grading on a Dask cluster gives the grades of the local pool, and a worker that dies mid-batch
costs a retry, never a lost or duplicated grade.

A real `dask scheduler` and two `dask worker` processes on 127.0.0.1 (as an instructor starts them,
with the environment the worker setup asks for); one worker is SIGKILLed with everything it started
as soon as it is running a grading job, read from its own state, not guessed with a sleep.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import course_with_class, sandbox_ok

from autograder.course import Course, CourseError
from autograder.grading import cluster
from autograder.verbs import grade as grade_verb

quiet = lambda *args, **kwargs: None  # noqa: E731
POINTS = {"test_softmax": 2, "test_one_hot": 1, "test_sce_loss": 2, "test_sce_grad": 3, "test_relu": 1,
          "test_forward": 2, "test_loss_value": 2, "test_gradients": 4, "test_weight_decay": 2,
          "test_predict": 1, "test_train": 2}
# The cells each student loses (as in test_parallel.py): 1/n missing in dZ also fails the visible
# gradient check of the student's own loss_and_grad.
LOST = {"perfect": set(), "dz_missing_1_over_n": {"test_sce_grad", "test_gradients"},
        "relu_mask_missing": {"test_gradients"}, "untouched": set(POINTS)}
DASK = Path(sys.executable).with_name("dask")
START_SECONDS = 120


def _start(argv, cwd, log):
    """A process in a session of its own, so that it can be killed with everything it starts."""
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", "MNIST_OFFLINE": "1"}
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _wait_for(condition, what, procs):
    deadline = time.monotonic() + START_SECONDS
    while not condition():
        dead = [p.args[:2] for p in procs if p.poll() is not None]
        assert not dead and time.monotonic() < deadline, f"{what}: not ready (exited: {dead})"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """(scheduler address, {worker name: (Popen, address)}, a Client for watching the workers)."""
    from distributed import Client

    root = tmp_path_factory.mktemp("dask")
    scheduler_file = root / "scheduler.json"
    procs = [_start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(scheduler_file)], root, root / "scheduler.log")]
    try:
        _wait_for(scheduler_file.is_file, "dask scheduler", procs)
        for name in ("w0", "w1"):
            procs.append(_start([str(DASK), "worker", "--scheduler-file", str(scheduler_file), "--name", name,
                                 "--nthreads", "1", "--nworkers", "1",
                                 "--preload", "autograder.grading.cluster", "--host", "127.0.0.1", "--no-dashboard",
                                 "--local-directory", str(root / name)], root, root / f"{name}.log"))
        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout="30s") as watcher:
            _wait_for(lambda: len(watcher.scheduler_info()["workers"]) == 2, "two dask workers", procs)
            names = {info["name"]: addr for addr, info in watcher.scheduler_info()["workers"].items()}
            yield address, {"w0": (procs[1], names["w0"]), "w1": (procs[2], names["w1"])}, watcher
    finally:
        for proc in reversed(procs):
            _kill(proc)


def _grading(dask_worker):
    """On a worker: the keys of the grading jobs it is executing now."""
    return [ts.key for ts in dask_worker.state.executing if str(ts.key).startswith("autograder-grade-")]


def _kill_when_grading(watcher, worker, address, record):
    """SIGKILL the worker (and its whole session) once it is executing a grading job."""
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            running = watcher.run(_grading, workers=[address])[address]
        except Exception as exc:  # noqa: BLE001 - not reachable (yet): look again
            record["errors"] = f"{type(exc).__name__}: {exc}"
            running = []
        if running:
            record["killed_while"] = running
            _kill(worker)
            return
        time.sleep(0.1)


@pytest.mark.skipif(not DASK.exists(), reason="dask's command line is not installed in this venv")
def test_a_dask_cluster_grades_like_the_local_pool_even_when_a_worker_dies(released_course, tmp_path, dask_cluster,
                                                                           monkeypatch):
    address, workers, watcher = dask_cluster
    sandbox = sandbox_ok()
    local = course_with_class(released_course, tmp_path / "local", LOST)
    local_outcomes = grade_verb.grade(local, workers=2, sandbox=sandbox, progress=False, echo=quiet)

    merged = []
    real_merge = grade_verb.merge
    monkeypatch.setattr(grade_verb, "merge", lambda course, outcome: (merged.append(outcome.student),
                                                                      real_merge(course, outcome)))
    record = {}
    proc, worker_address = workers["w0"]
    killer = threading.Thread(target=_kill_when_grading, args=(watcher, proc, worker_address, record), daemon=True)
    killer.start()
    on_dask = course_with_class(released_course, tmp_path / "dask", LOST)
    dask_outcomes = grade_verb.grade(on_dask, sandbox=sandbox, progress=False, echo=quiet, scheduler=address)
    killer.join(timeout=30)

    assert record.get("killed_while"), f"the worker was never seen running a grading job ({record})"
    assert proc.poll() is not None
    assert sorted(merged) == sorted(LOST)  # every student merged exactly once

    def table(outcomes):
        return {o.student: (o.ok, o.scores, o.tamper_cells, o.kernel_scores) for o in outcomes}
    assert table(dask_outcomes) == table(local_outcomes)
    expected = {name: {cell: 0.0 if cell in LOST[name] else float(points) for cell, points in POINTS.items()}
                for name in LOST}
    assert {o.student: o.scores for o in dask_outcomes if o.ok} == expected

    # What the course holds afterwards: the same grades in both gradebooks, one submission each.
    from nbgrader.api import Gradebook
    books = {}
    for course in (local, on_dask):
        with Gradebook(course.db_url) as gb:
            books[course.root.name] = {s.student.id: s.score for s in gb.assignment_submissions(course.assignment)}
    assert books["dask"] == books["local"] and sorted(books["dask"]) == sorted(LOST)


def test_a_worker_without_bubblewrap_refuses_the_job_with_the_local_message(monkeypatch):
    import autograder.sandbox.bwrap as bwrap
    monkeypatch.setattr(bwrap, "bwrap_available", lambda: False)
    assert cluster.worker_problem(sandbox=True) == bwrap.BWRAP_MISSING_HELP
    with pytest.raises(cluster.WorkerRefused, match=r"apt-get install bubblewrap.*--no-sandbox"):
        cluster.grade_on_worker(None, "ada", {}, True, None, 300, 330)
    assert cluster.worker_problem(sandbox=False) == ""


def test_an_unreachable_scheduler_is_one_line_that_says_what_to_start(released_course, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "2s")
    course = course_with_class(released_course, tmp_path / "course", LOST)
    with pytest.raises(CourseError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 .*dask scheduler"):
        grade_verb.grade(course, progress=False, echo=quiet, scheduler="tcp://127.0.0.1:9")


RUNNER = """\
import time
from autograder.grading import jobs
if __name__ == "__main__":
    list(jobs.run(time.sleep, [jobs.Job("sleeper", (600,))], workers=1, seconds=900))
"""


def _job_of(runner):
    """The job process a runner's forkserver forked (None until it exists)."""
    import psutil
    for child in psutil.Process(runner.pid).children():
        if "forkserver" in " ".join(child.cmdline()):
            jobs = child.children()
            return jobs[0] if jobs else None
    return None


def test_a_job_dies_with_the_worker_that_runs_it(tmp_path):
    """A Dask worker (or `grade`) killed alone, not its whole session: its running job must not go
    on grading (and burning a core) while the scheduler retries it elsewhere."""
    import psutil
    (tmp_path / "runner.py").write_text(RUNNER)
    runner = subprocess.Popen([sys.executable, str(tmp_path / "runner.py")], start_new_session=True)
    try:
        _wait_for(lambda: _job_of(runner) is not None, "the runner's job", [runner])
        job = _job_of(runner)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=30)
        gone, alive = psutil.wait_procs([job], timeout=30)
        assert not alive, f"job {job.pid} outlived the process that ran it"
    finally:
        _kill(runner)


def _listening():
    import psutil
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections() if c.status == psutil.CONN_LISTEN}


def test_the_local_cluster_opens_no_port_that_runs_code_and_grades_like_the_pool(released_course, tmp_path):
    """`grade --cluster local`: a Dask scheduler runs whatever a client sends it, so the local
    cluster talks in-process; only its status pages listen, on 127.0.0.1."""
    before = _listening()
    with cluster.connect("local", 1) as client:
        assert client.scheduler.address.startswith("inproc://")
        assert all(address.startswith("inproc://") for address in client.scheduler_info()["workers"])
        opened = _listening() - before
    assert opened and all(ip == "127.0.0.1" for ip, _ in opened), opened

    course = course_with_class(released_course, tmp_path / "course", LOST)
    for name in ("relu_mask_missing", "untouched"):  # two students are enough here
        shutil.rmtree(course.submitted(name).parent)
    outcomes = grade_verb.grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=quiet, scheduler="local")
    expected = {name: {cell: 0.0 if cell in LOST[name] else float(points) for cell, points in POINTS.items()}
                for name in ("perfect", "dz_missing_1_over_n")}
    assert {o.student: o.scores for o in outcomes if o.ok} == expected


def test_a_tcp_scheduler_is_named_unauthenticated_and_jobs_never_carry_the_database_url(released_course, tmp_path,
                                                                                        monkeypatch):
    warned = []
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(CourseError):
        with cluster.connect("tcp://127.0.0.1:9", warn=warned.append):
            pass
    assert len(warned) == 1 and "neither encrypted nor authenticated" in warned[0]

    from autograder.grading.job import course_files
    course = Course(tmp_path / "course")
    shutil.copytree(released_course.root, course.root)
    url = f"sqlite:///{course.gradebook}?password=hunter2"  # a URL with a secret in it, as a Postgres one may have
    with open(course.config_file, "a") as config:
        config.write(f"\nc.CourseDirectory.db_url = {url!r}\n")
    shipped = course_files(Course(course.root)).root_files["nbgrader_config.py"].decode()
    assert "hunter2" not in shipped and "db_url" not in shipped
    assert "c.GradingExecute.sandbox" in shipped  # the rest of the config still travels
