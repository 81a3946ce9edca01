"""Run jobs in child processes, a few at a time, each killed when it outruns its time.

A process pool cannot take one task back: a worker stuck on one submission holds a slot until it
finishes by itself. Here every job is a fresh process; the parent watches the clock and kills a
job's whole process tree at its deadline, whatever the job (or the student code under it) does.
Jobs are forked from a forkserver that has imported the job's module once: a freshly spawned
interpreter spent ~2.5 CPU s per submission importing nbgrader (benchmarks/results/grading.md).
The forkserver imports autograder.grading.prewarm first: what every job would otherwise load or
warm on its first submission (benchmarks/results/cheaper.md).
No student code ever runs in a job process itself (kernels and workers are sandboxed children).
"""
import contextlib
import os
import time
import traceback
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import Any, NamedTuple

import psutil

from autograder.sandbox.cgroup import reap_stale


class Job(NamedTuple):
    key: str      # what the caller calls it (a student id)
    args: tuple   # for the function; picklable


def run(fn, work, *, workers, seconds):
    """Yield (job, result) as jobs finish, in completion order. `result` is fn(*job.args), or a
    one-line string saying why there is none (timed out, crashed, died). `work` may be a generator:
    a job is taken from it only when a slot is free, so a large class is never all in memory."""
    ctx = start_forkserver(fn.__module__)
    pending, running = iter(work), {}
    upcoming = next(pending, None)

    def fill_free_slots():
        nonlocal upcoming
        while upcoming is not None and len(running) < workers:
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(fn, upcoming.args, send), name=f"grade {upcoming.key}")
            proc.start()
            send.close()
            running[receive] = (proc, upcoming, time.monotonic() + seconds)
            upcoming = next(pending, None)

    fill_free_slots()
    while running:
        soonest = min(deadline for _, _, deadline in running.values())
        finished = []
        for conn in wait(list(running), timeout=max(0.0, soonest - time.monotonic())):
            proc, job, _ = running.pop(conn)
            finished.append((job, _result(conn, proc)))
        now = time.monotonic()
        for conn, (proc, job, deadline) in list(running.items()):
            if now >= deadline:
                running.pop(conn)
                kill_tree(proc.pid)
                proc.join()
                conn.close()
                reap_stale()  # the cgroups its sandboxes could not close
                finished.append((job, f"timed out: the submission used up its time budget ({seconds:g} s in all); "
                                      "stopped"))
        fill_free_slots()  # before the caller spends time on the results (merging them): no slot waits
        yield from finished


def start_forkserver(module):
    """The forkserver jobs are forked from, started now with `module` imported once (a no-op once
    it runs): a grading process started before any job runs pays the imports up front."""
    ctx = get_context("forkserver")
    # only before the forkserver starts; later a no-op. prewarm first: it must precede nbformat's import
    ctx.set_forkserver_preload(["autograder.grading.prewarm", module])
    from multiprocessing import forkserver
    forkserver.ensure_running()
    return ctx


def _result(conn, proc):
    try:
        kind, value = conn.recv()
    except (EOFError, OSError):
        proc.join(5)
        return f"the grading process died (exit code {proc.exitcode})"
    finally:
        conn.close()
    proc.join(5)
    if proc.is_alive():
        kill_tree(proc.pid)
    return value if kind == "ok" else f"grader crashed: {value}"


def _child(fn, args, send):
    _exit_with_parent(send)
    try:
        outcome: Any = ("ok", fn(*args))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
        traceback.print_exc()
        outcome = ("error", f"{type(exc).__name__}: {str(exc)[:300]}")
    send.send(outcome)
    send.close()
    os._exit(0)  # the result is sent: skip the interpreter's teardown (~2 s of module finalizers)


def _exit_with_parent(send):
    """The job ends when the process waiting for its result is gone (a killed `grade`, a Dask
    worker that died mid-batch): a job must not go on grading, a core busy, while the scheduler
    retries it elsewhere. A watcher thread waits on the result pipe, whose write end reports an
    error once nobody holds the read end; the job's sandboxes follow it (bwrap --die-with-parent).
    (Not the forkserver's exit: every job holds the forkserver's keep-alive pipe.)"""
    import select
    import threading

    def watch():
        poller = select.poll()
        poller.register(send.fileno(), 0)  # no events asked: only error, hang-up, closed
        poller.poll()
        os._exit(1)  # the result is sent already, or nobody will read it

    threading.Thread(target=watch, name="parent watcher", daemon=True).start()


def kill_tree(pid):
    """SIGKILL a process and every descendant (sandboxes start new sessions, so a process-group
    kill would miss them)."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for _ in range(3):  # a child may fork while we look: look again
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            family = [root]
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(family, timeout=5)
