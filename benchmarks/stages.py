"""Where one submission's time goes: grade_in_scratch in a fresh process, instrumented stage by stage.

`profiled_job` is the function a benchmark hands to autograder.grading.jobs.run in place of
grade_in_scratch: the same spawned child process as production, but before grading it wraps the
pipeline's steps (sandbox set-up, kernel start, each notebook cell, nbgrader's bookkeeping, the
verification worker's start, the test cells) with timestamps, and it puts itself into a fresh
cgroup-v1 `cpuacct` group so that the CPU of every process of the job -- the grader, the sandboxed
kernel, the sandboxed verification worker -- is read at each step boundary (one file read; the
sandbox's own memory/pids cgroups are other hierarchies, so its processes stay counted here).

Each step's time is exclusive: what a step spends inside another instrumented step is that step's.
The job grades the same submission twice in one process, in two scratch folders: the first call is
what a fresh job process pays (production: one process per submission), the second what a process
that had already graded one submission would pay (warm imports and caches), so their difference is
the start-up cost of one process per job.

Imports here are stdlib only: this module is loaded in the job's process before the measurement.
"""
import functools
import inspect
import os
import shutil
import time
from pathlib import Path

CPUACCT = Path("/sys/fs/cgroup/cpuacct")

# label -> the part of the breakdown it belongs to
GROUPS = {
    "job process start (spawn, interpreter, unpickling)": "process start-up",
    "import autograder.grading.job (nbgrader, traitlets, SQLAlchemy)": "process start-up",
    "scratch copy of the course, notebook check": "nbgrader bookkeeping",
    "nbgrader API construction (open_api)": "nbgrader bookkeeping",
    "nbgrader autograde: converter, sanitize steps, files, gradebook": "nbgrader bookkeeping",
    "SaveAutoGrades (SQLite)": "nbgrader bookkeeping",
    "SaveVerdictComments (SQLite)": "nbgrader bookkeeping",
    "reading the grades back (SQLite)": "nbgrader bookkeeping",
    "kernel sandbox: socket dir, chmod walk, cgroup jail, bwrap argv": "sandbox start",
    "kernel process launch (Popen bwrap)": "sandbox start",
    "kernel start until ready (Python, ipykernel)": "kernel start and imports",
    "imports cell (numpy, matplotlib, helpers)": "kernel start and imports",
    "GradingExecute other (kernel_info, cleanup of special files)": "kernel start and imports",
    "notebook's own cells": "the notebook's own cells",
    "kernel shutdown, jail close": "kernel start and imports",
    "verification: run dir (copy helpers, data, worker, font cache)": "re-verification: worker start",
    "verification: sandbox chmod walk": "re-verification: worker start",
    "verification: worker launch (cgroup jail, bwrap Popen, load sent)": "re-verification: worker start",
    "verification: grader namespace (imports cell in the grader)": "re-verification: worker start",
    "verification: waiting for the worker (Python, numpy, imports, student code)": "re-verification: worker start",
    "verification: test cells (grader + worker)": "re-verification: test cells",
    "verification: worker shutdown": "re-verification: test cells",
    "verification: rest (notebooks, seed, verdict record)": "re-verification: test cells",
}
GROUP_ORDER = ("process start-up", "sandbox start", "kernel start and imports", "the notebook's own cells",
               "nbgrader bookkeeping", "re-verification: worker start", "re-verification: test cells")


class CpuClock:
    """CPU seconds of this process and all its descendants: a cpuacct cgroup of our own, or (no
    writable cpuacct hierarchy) this process plus its waited-for children (misses live children)."""

    def __init__(self):
        self.group = None
        if CPUACCT.is_dir():
            group = CPUACCT / f"bench-stages-{os.getpid()}"
            try:
                group.mkdir()
                (group / "cgroup.procs").write_text(str(os.getpid()))
                self.group = group
            except OSError:
                self._remove(group)
        self.kind = "cpuacct cgroup (all processes of the job)" if self.group else \
            "os.times (this process and exited children only)"

    def __call__(self):
        if self.group is not None:
            try:
                return int((self.group / "cpuacct.usage").read_text()) / 1e9
            except (OSError, ValueError):
                pass
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def close(self):
        if self.group is not None:
            try:
                (CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                pass
            self._remove(self.group)

    @staticmethod
    def _remove(group, tries=20, at_exit=True):
        for _ in range(tries):
            try:
                group.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)  # a sandbox's last process is still exiting
        if not at_exit:
            return
        # still in use (e.g. by multiprocessing's forkserver, which lives until we exit): at exit,
        # move what is left to the root group and remove ours
        import atexit
        atexit.register(CpuClock._evict, group)

    @staticmethod
    def _evict(group):
        try:
            for pid in (group / "cgroup.procs").read_text().split():
                (CPUACCT / "cgroup.procs").write_text(pid)
        except OSError:
            pass
        CpuClock._remove(group, 1, at_exit=False)


class Recorder:
    """Exclusive wall and CPU seconds per label, from nested enter/exit."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.reset()

    def reset(self):
        self.stack = []  # [label, wall0, cpu0, child wall, child cpu]
        self.wall = {}
        self.cpus = {}
        self.cells = []  # (grade_id or index, wall seconds)

    def enter(self, label):
        self.stack.append([label, time.monotonic(), self.cpu(), 0.0, 0.0])

    def exit(self):
        label, w0, c0, cw, cc = self.stack.pop()
        w, c = time.monotonic() - w0, self.cpu() - c0
        self.wall[label] = self.wall.get(label, 0.0) + w - cw
        self.cpus[label] = self.cpus.get(label, 0.0) + c - cc
        if self.stack:
            self.stack[-1][3] += w
            self.stack[-1][4] += c
        return w

    def add(self, label, wall, cpu):
        self.wall[label] = self.wall.get(label, 0.0) + wall
        self.cpus[label] = self.cpus.get(label, 0.0) + cpu


def _wrap(owner, name, label, recorder):
    fn = getattr(owner, name)
    choose = label if callable(label) else (lambda *a, **k: label)
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            recorder.enter(choose(*args, **kwargs))
            try:
                return await fn(*args, **kwargs)
            finally:
                recorder.exit()
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            recorder.enter(choose(*args, **kwargs))
            try:
                return fn(*args, **kwargs)
            finally:
                recorder.exit()
    setattr(owner, name, wrapper)


def instrument(recorder):
    """Wrap the pipeline's steps (class and module attributes, in this process only)."""
    from nbclient.client import NotebookClient
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.preprocessors import SaveAutoGrades

    import autograder.judge.verify as verify_mod
    import autograder.sandbox.bwrap as bwrap_mod
    from autograder.grading import job as job_mod
    from autograder.grading.execute import GradingExecute
    from autograder.grading.pipeline import Reverify, SaveVerdictComments
    from autograder.judge.session import Session
    from autograder.sandbox.kernel import SandboxedKernelManager

    _wrap(job_mod, "grade_job", "scratch copy of the course, notebook check", recorder)
    _wrap(job_mod, "open_api", "nbgrader API construction (open_api)", recorder)
    _wrap(job_mod, "_read_scratch_grades", "reading the grades back (SQLite)", recorder)
    _wrap(NbGraderAPI, "autograde", "nbgrader autograde: converter, sanitize steps, files, gradebook", recorder)
    _wrap(SaveAutoGrades, "preprocess", "SaveAutoGrades (SQLite)", recorder)
    _wrap(SaveVerdictComments, "preprocess", "SaveVerdictComments (SQLite)", recorder)
    _wrap(GradingExecute, "preprocess", "GradingExecute other (kernel_info, cleanup of special files)", recorder)
    _wrap(SandboxedKernelManager, "_async_pre_start_kernel",
          "kernel sandbox: socket dir, chmod walk, cgroup jail, bwrap argv", recorder)
    _wrap(SandboxedKernelManager, "_async_launch_kernel", "kernel process launch (Popen bwrap)", recorder)
    # nbconvert's Execute calls nbclient's sync wrappers (run_sync, bound when the class was made)
    _wrap(NotebookClient, "start_new_kernel", "kernel process launch (Popen bwrap)", recorder)
    _wrap(NotebookClient, "start_new_kernel_client", "kernel start until ready (Python, ipykernel)", recorder)
    _wrap(NotebookClient, "_cleanup_kernel", "kernel shutdown, jail close", recorder)

    first_code = {}

    def cell_label(self, cell, resources, index):
        if cell.cell_type != "code":
            return "notebook's own cells"
        first = first_code.setdefault(id(self.nb), index)
        return "imports cell (numpy, matplotlib, helpers)" if index == first else "notebook's own cells"

    execute_cell = GradingExecute.preprocess_cell

    @functools.wraps(execute_cell)
    def preprocess_cell(self, cell, resources, index):
        recorder.enter(cell_label(self, cell, resources, index))
        try:
            return execute_cell(self, cell, resources, index)
        finally:
            seconds = recorder.exit()
            if cell.cell_type == "code":
                gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {index}"
                recorder.cells.append((gid, seconds))
    GradingExecute.preprocess_cell = preprocess_cell

    _wrap(Reverify, "preprocess", "verification: rest (notebooks, seed, verdict record)", recorder)
    _wrap(verify_mod, "_prepare_rundir", "verification: run dir (copy helpers, data, worker, font cache)", recorder)
    _wrap(bwrap_mod, "make_sandbox_readable", "verification: sandbox chmod walk", recorder)
    _wrap(Session, "start", "verification: worker launch (cgroup jail, bwrap Popen, load sent)", recorder)
    _wrap(verify_mod, "grader_namespace", "verification: grader namespace (imports cell in the grader)", recorder)
    _wrap(Session, "finish_load", "verification: waiting for the worker (Python, numpy, imports, student code)",
          recorder)
    _wrap(verify_mod, "_judge", "verification: test cells (grader + worker)", recorder)
    _wrap(Session, "close", "verification: worker shutdown", recorder)
    return job_mod


def profiled_job(t_submit, course_root, student, scratch_root, sandbox, seed, budget):
    """In the job's child process: grade `student` cold, then warm; {"cold": {...}, "warm": {...}}."""
    wall_entry = time.time()
    t = os.times()
    cpu_entry = t.user + t.system
    cpu = CpuClock()
    results = {"cpu_clock": cpu.kind}
    recorder = Recorder(cpu)
    try:
        for run in ("cold", "warm"):
            recorder.reset()
            if run == "cold":
                recorder.add("job process start (spawn, interpreter, unpickling)", wall_entry - t_submit, cpu_entry)
                recorder.enter("import autograder.grading.job (nbgrader, traitlets, SQLAlchemy)")
                job_mod = instrument(recorder)  # imports the job's modules (what unpickling grade_in_scratch does)
                recorder.exit()
            scratch = Path(scratch_root) / run
            scratch.mkdir()
            shutil.copy2(Path(scratch_root) / "gradebook.db", scratch / "gradebook.db")
            w0 = time.monotonic()
            from autograder.course import Course
            course = Course(course_root)  # the job's input is read from the course, as grade does
            job = job_mod.job_input(course, student, job_mod.course_files(course))
            outcome = job_mod.grade_job(job, sandbox, seed, budget, str(scratch))
            results[run] = {"wall": dict(recorder.wall), "cpu": dict(recorder.cpus), "cells": recorder.cells,
                            "grade_in_scratch": time.monotonic() - w0, "ok": outcome.ok,
                            "scores": dict(outcome.scores), "seconds": outcome.seconds}
    finally:
        cpu.close()
    results["t_return"] = time.time()
    return results


def group_totals(stage):
    """{group: (wall, cpu)} of one run's exclusive times."""
    out = {g: [0.0, 0.0] for g in GROUP_ORDER}
    for label, wall in stage["wall"].items():
        g = GROUPS.get(label, "nbgrader bookkeeping")
        out[g][0] += wall
        out[g][1] += stage["cpu"].get(label, 0.0)
    return out
