"""Re-verify every autograded cell outside the student's kernel.

During nbgrader's autograde the student's code shares the kernel with the tests and can patch
numpy, helpers or builtins to forge passing verdicts. Here the grader -- a process the student's
code never touched -- runs the trusted test cells of the SOURCE notebook itself, with every
function students write bound to a Proxy. A call sends the arguments to a sandboxed worker
(worker.py) that holds the student's code and only computes; the raw result comes back through
wire.py (JSON + .npy, never pickle) and every comparison happens here. While a hidden test
judges one function with `_using_reference(...)`, the functions it rebound run here too: the
worker calls back for them.

    verify(source_nb, submitted_nb, workdir) -> Verification(cells, load_errors, notes)
"""
import contextlib
import importlib.util
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import notebook, testcells, wire

CONTRACT = testcells.STUDENT_FUNCTIONS
HERE = Path(__file__).resolve().parent
WORKER_FILES = ("worker.py", "wire.py")
WORKER_STDERR = subprocess.DEVNULL  # set to None to see the worker's stderr while debugging
GRADER_MEMORY_HEADROOM = 2 << 30    # bytes a test cell may allocate in the grader (see _memory_cap)


class Verdict(NamedTuple):
    """The grader's verdict on one test cell. `visible_passed` is the verdict on the part the
    student's kernel also ran (what a tamper comparison may use); `timed_out` says a time limit,
    not the student's answer, decided a failure."""

    passed: bool
    message: str
    visible_passed: bool
    timed_out: bool = False


@dataclass
class Verification:
    cells: dict                                     # grade_id -> Verdict
    load_errors: dict = field(default_factory=dict)  # "imports" / solution grade_id / "cell N" -> "Type: message"
    notes: list = field(default_factory=list)       # e.g. "worker died during test_train (...); restarted"
    seconds: float = 0.0


class WorkerError(Exception):
    """The worker died, timed out or broke the protocol during a call; the test fails."""


class StudentError(Exception):
    """An exception raised by the student's code in the worker (subclassed under its own name)."""


def _student_exception(ename, evalue):
    name = ename if isinstance(ename, str) and ename.isidentifier() and len(ename) <= 80 else "StudentError"
    return type(name, (StudentError,), {})(str(evalue)[:2000])


# ---------------------------------------------------------------------------------------------
# the student's code
# ---------------------------------------------------------------------------------------------

def student_code(source_nb, submitted_nb):
    """[(label, source)] of the submission's code, in notebook order: the solution cells whose
    grade_id is one of the source notebook's, and the code cells the student added (no nbgrader
    role), IPython magics removed. Locked and test cells of the submission are ignored."""
    solution_ids = set(testcells.solution_cells(source_nb))
    code = []
    for index, cell in enumerate(submitted_nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if meta.get("solution") and meta.get("grade_id") in solution_ids:
            label = meta["grade_id"]
        elif not any(meta.get(role) for role in ("solution", "grade", "locked", "task")):
            label = f"cell {index}"  # a cell the student added
        else:
            continue  # locked cells and tests: the grader runs the source notebook's own
        source = cell.get("source", "")
        if not isinstance(source, str):
            raise TypeError(f"cell {index} has a source of type {type(source).__name__}")
        code.append((label, testcells.strip_magics(source)))
    return code


# ---------------------------------------------------------------------------------------------
# the worker process
# ---------------------------------------------------------------------------------------------

class _Pipes:
    """A worker's stdout/stdin as one stream whose reads and writes give up at `deadline`."""

    def __init__(self, proc):
        self.rfd, self.wfd = proc.stdout.fileno(), proc.stdin.fileno()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        self.deadline = 0.0

    def _wait(self, fd, event):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        poller = select.poll()
        poller.register(fd, event)
        poller.poll(max(1, int(left * 1000) + 1))

    def _check(self):
        # Also when data keeps coming: a worker that floods the pipe never makes a read block.
        if time.monotonic() >= self.deadline:
            raise TimeoutError

    def read(self, n):
        while True:
            self._check()
            try:
                return os.read(self.rfd, n)  # b"" at end of file
            except BlockingIOError:
                self._wait(self.rfd, select.POLLIN)

    def write(self, data):
        view = memoryview(data)
        while view:
            self._check()
            try:
                view = view[os.write(self.wfd, view):]
            except BlockingIOError:
                self._wait(self.wfd, select.POLLOUT)
            except (BrokenPipeError, ConnectionResetError):
                raise wire.WireClosed("the worker closed its input") from None


class Worker:
    """One worker process: start, load the student's code, exchange frames, kill."""

    def __init__(self, launch, cwd):
        self.launch, self.cwd = launch, cwd  # launch() -> (argv, env, jail or None), fresh per start
        self.proc = self.pipes = self.jail = None
        self.loading = None  # the cell the worker said it was loading last ("setup" or an index)
        self.expired = False  # the watchdog killed it at a deadline

    @contextlib.contextmanager
    def watchdog(self, deadline):
        """Kill the worker at `deadline` from another thread, whatever it is doing: the clock
        enforces the limit, not the reads and writes the worker's code controls."""
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _expire(self):
        proc, jail = self.proc, self.jail
        if proc is not None and proc.poll() is None:
            self.expired = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 9)
            if jail is not None:
                jail.close()  # whatever the worker started in a session of its own

    def start(self, load_msg, deadline):
        """Spawn the worker and send it the code to load (the reply is read by `loaded`)."""
        self.expired = False
        argv, env, self.jail = self.launch()
        self.proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=WORKER_STDERR,
                                     start_new_session=True)
        if self.jail is not None:
            self.jail.watch(self.proc.pid)
        self.pipes = _Pipes(self.proc)
        self.send_frame(wire.encode(load_msg), deadline)

    def loaded(self, deadline):
        self.loading = None
        reply = self.receive(deadline)
        while reply.get("op") == "loading":
            self.loading = reply.get("cell")
            reply = self.receive(deadline)
        if reply.get("op") != "loaded" or not isinstance(reply.get("errors"), dict):
            raise wire.WireError("expected a 'loaded' reply")
        return reply["errors"]

    def send_frame(self, frame, deadline):
        self.pipes.deadline = deadline
        self.pipes.write(frame)

    def receive(self, deadline):
        self.pipes.deadline = deadline
        msg = wire.receive(self.pipes)
        if not isinstance(msg, dict):
            raise wire.WireError("a message is not a dict")
        return msg

    def exit_status(self):
        code = self.proc.poll() if self.proc else None
        if code is None:
            return ""
        limit = self.jail and (self.jail.killed_for or (self.jail.oom_kills() and "the memory limit"))
        if limit:
            return f" (killed by the sandbox: {limit})"
        return f" (killed by signal {-code})" if code < 0 else f" (exit code {code})"

    def kill(self):
        if self.jail is not None:
            self.jail.close()
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.proc = self.pipes = None


class Proxy:
    """Stands for a student's function in the grader's namespace; calls run in the worker."""

    def __init__(self, session, name):
        self._session, self._name = session, name

    def __call__(self, *args, **kwargs):
        return self._session.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<student function {self._name} (runs in the worker)>"


class Session:
    """The grader's side of one verification: the worker, restarts, time limits, callbacks."""

    def __init__(self, worker, setup, code, cell_timeout, deadline, total_timeout):
        self.worker, self.setup, self.code = worker, setup, code
        self.cell_timeout, self.deadline, self.total_timeout = cell_timeout, deadline, total_timeout
        self.cell_deadline = deadline
        self.timeouts = 0         # how many times a deadline killed or stopped the worker
        self.namespace = {}
        self.cell = "loading"
        self.notes, self.load_errors = [], {}
        self.running = False      # the worker is up and in sync
        self.unusable = ""        # why the worker cannot load the code at all: no more restarts
        self._first_load = True
        self._start_error = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self):
        self._start_error = None
        try:
            self.worker.start(self._load_msg(), self._load_deadline())
        except (wire.WireError, TimeoutError) as exc:  # reported by finish_load
            self._start_error = exc

    def _load_msg(self):
        return {"op": "load", "setup": self.setup, "cells": [src for _, src in self.code]}

    def _load_deadline(self):
        return min(time.monotonic() + self.cell_timeout, self.deadline)

    def finish_load(self):
        """Wait for the worker's 'loaded'; if a cell kills or hangs it, load again without that
        cell (its functions then fail their tests, the others are judged), else give up for good."""
        try:
            if self._start_error:
                raise self._start_error
            deadline = self._load_deadline()
            with self.worker.watchdog(deadline):
                errors = self.worker.loaded(deadline)
        except (wire.WireError, TimeoutError, OSError) as exc:
            reason = self._why(exc, "loading the submission")
            culprit = self.worker.loading
            self.worker.kill()
            if not (str(culprit).isdigit() and int(culprit) < len(self.code) and time.monotonic() < self.deadline):
                self.unusable = reason
                self.notes.append(f"{reason}; every call fails")
                return
            label = self.code[int(culprit)][0]
            self.notes.append(f"{reason} (in {label}); loading again without {label}")
            self.load_errors[label] = f"{reason}: left out"
            del self.code[int(culprit)]
            self.start()
            return self.finish_load()
        if self._first_load or not self.load_errors:
            labels = ["imports"] + [label for label, _ in self.code]
            for key, message in errors.items():
                index = 0 if key == "setup" else int(key) + 1 if str(key).isdigit() else None
                label = labels[index] if index is not None and index < len(labels) else str(key)[:40]
                self.load_errors[label] = str(message)[:500]
        self._first_load = False
        self.running = True

    def before_cell(self, gid):
        """A test cell starts: it gets `cell_timeout` seconds, like a cell in the kernel."""
        self.cell = gid
        self.cell_deadline = min(time.monotonic() + self.cell_timeout, self.deadline)
        if not self.running and not self.unusable and time.monotonic() < self.deadline:
            self.notes[-1] += "; restarted"
            self.start()
            self.finish_load()

    def close(self):
        if self.worker.proc is not None:
            with contextlib.suppress(Exception):
                self.worker.send_frame(wire.encode({"op": "exit"}), time.monotonic() + 0.2)
        self.worker.kill()

    def _timed_out(self, doing):
        self.timeouts += 1
        if time.monotonic() >= self.deadline:
            return f"timed out: the verification time limit of {self.total_timeout:g} s was reached while {doing}"
        return f"timed out: the cell time limit of {self.cell_timeout:g} s was reached while {doing}"

    def _why(self, exc, doing):
        if isinstance(exc, TimeoutError) or self.worker.expired:
            return self._timed_out(doing)
        if isinstance(exc, wire.WireClosed):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.worker.proc.wait(timeout=1)
            return f"worker died while {doing}{self.worker.exit_status()}"
        return f"worker sent garbage while {doing} ({str(exc)[:120]})"

    # --- calls ----------------------------------------------------------------------------------
    def call(self, name, args, kwargs):
        if self.unusable:
            raise WorkerError(self.unusable)
        if time.monotonic() >= self.cell_deadline:
            raise WorkerError(self._timed_out(f"calling {name}()"))
        if not self.running:
            raise WorkerError("the worker is not running (it failed earlier in this cell)")
        reference = [n for n in CONTRACT if n in self.namespace and not isinstance(self.namespace[n], Proxy)]
        try:
            frame = wire.encode({"op": "call", "fn": name, "args": list(args), "kwargs": kwargs,
                                 "reference": reference})
        except wire.WireError as exc:
            raise WorkerError(f"cannot send the arguments of {name}(): {exc}") from None
        try:
            with self.worker.watchdog(self.cell_deadline):
                msg = self._exchange(frame, reference, self.cell_deadline)
        except (wire.WireError, TimeoutError, OSError) as exc:
            reason = self._why(exc, f"running {name}()")
            self._lose_worker(f"{reason} during {self.cell}")
            raise WorkerError(reason) from None
        except BaseException:  # the grader itself failed mid-call: the worker is out of step
            self._lose_worker(f"call of {name}() interrupted during {self.cell}")
            raise
        if msg.get("op") == "error":
            raise _student_exception(msg.get("ename"), msg.get("evalue"))
        try:
            _mirror_arguments(args, kwargs, msg.get("mutated"))
        except wire.WireError as exc:
            raise WorkerError(f"{name}() sent a bad reply ({exc})") from None
        return msg.get("value")

    def _exchange(self, frame, reference, deadline):
        """Send a call, answer its callbacks; the reply (a 'result' or 'error' message)."""
        self.worker.send_frame(frame, deadline)
        while True:
            msg = self.worker.receive(deadline)
            if msg.get("op") in ("result", "error"):
                return msg
            if msg.get("op") != "callback":
                raise wire.WireError(f"unexpected reply {str(msg.get('op'))[:40]!r}")
            self.worker.send_frame(self._callback(msg, reference), deadline)

    def _lose_worker(self, note):
        self.worker.kill()
        self.running = False
        self.notes.append(note)

    def _callback(self, msg, reference):
        """The frame answering the worker's call of a reference function (run here)."""
        fn, args, kwargs = msg.get("fn"), msg.get("args"), msg.get("kwargs")
        if fn not in reference or not isinstance(args, list) or not isinstance(kwargs, dict):
            reply = {"op": "error", "ename": "NameError", "evalue": f"{str(fn)[:40]!r} cannot be called back now"}
        else:
            try:
                reply = {"op": "result", "value": self.namespace[fn](*args, **kwargs)}
            except Exception as exc:  # noqa: BLE001 - the student's arguments may break the reference
                reply = {"op": "error", "ename": type(exc).__name__, "evalue": str(exc)[:500]}
        try:
            return wire.encode(reply)
        except wire.WireError as exc:
            return wire.encode({"op": "error", "ename": "WireError", "evalue": str(exc)})


def _mirror_arguments(args, kwargs, mutated):
    """Apply the worker's in-place changes of arguments to the grader's own objects, so that
    tests which check an input is left untouched see what they would see in the kernel."""
    if not mutated:
        return
    if not (isinstance(mutated, dict) and all(isinstance(mutated.get(k, {}), dict) for k in ("args", "kwargs"))):
        raise wire.WireError("bad 'mutated'")
    for key, new in (mutated.get("args") or {}).items():
        if not (key.isdigit() and int(key) < len(args)):
            raise wire.WireError("bad 'mutated' argument index")
        _mirror(args[int(key)], new)
    for key, new in (mutated.get("kwargs") or {}).items():
        if key not in kwargs:
            raise wire.WireError("bad 'mutated' keyword")
        _mirror(kwargs[key], new)


def _mirrorable(old, new):
    if isinstance(old, np.ndarray):
        return isinstance(new, np.ndarray) and old.shape == new.shape and old.flags.writeable
    return (isinstance(old, dict) and isinstance(new, dict) or isinstance(old, list) and isinstance(new, list)
            or isinstance(old, tuple) and isinstance(new, tuple) and len(old) == len(new))


def _mirror(old, new):
    if not _mirrorable(old, new):
        if isinstance(old, (np.ndarray, dict, list, tuple)):
            raise WorkerError(f"the function changed an argument in place beyond repair "
                              f"({type(old).__name__} became {type(new).__name__} "
                              f"{getattr(new, 'shape', '')})")
        return
    if isinstance(old, np.ndarray):
        np.copyto(old, new, casting="unsafe")
    elif isinstance(old, dict):
        for key in [k for k in old if k not in new]:
            del old[key]
        for key, value in new.items():
            if key in old and _mirrorable(old[key], value):
                _mirror(old[key], value)
            else:
                old[key] = value
    elif isinstance(old, list) and len(old) != len(new):
        old[:] = new
    else:  # list of the same length, or tuple: mirror element-wise
        for i, (o, n) in enumerate(zip(old, new)):
            if _mirrorable(o, n):
                _mirror(o, n)
            elif isinstance(old, list):
                old[i] = n


# ---------------------------------------------------------------------------------------------
# the grader's namespace
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _trusted_module(name, path):
    """sys.modules[name] is the module loaded from `path` while the block runs."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = sys.modules.get(name)
    sys.modules[name] = module
    try:
        yield module
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved


def grader_namespace(setup, helpers_path, session):
    namespace = {"__name__": "__main__"}
    with _trusted_module("helpers", helpers_path):
        exec(compile(setup, "<imports>", "exec"), namespace)
    for name in CONTRACT:
        namespace[name] = Proxy(session, name)
    return namespace


# ---------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------

def _prepare_rundir(source_dir, workdir):
    """A fresh directory under workdir: helpers.py, data/ and (in .grader/) the worker's code."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="verify-", dir=workdir))
    run.chmod(0o755)
    shutil.copy2(source_dir / "helpers.py", run / "helpers.py")
    if (source_dir / "data").is_dir():
        shutil.copytree(source_dir / "data", run / "data", symlinks=False)
    (run / ".grader").mkdir()
    for name in WORKER_FILES:
        shutil.copy2(HERE / name, run / ".grader" / name)
    _seed_matplotlib_cache(run / ".matplotlib")
    return run


def _seed_matplotlib_cache(mpl_dir):
    """The grader's font list for the worker's matplotlib: `import matplotlib.pyplot` in the
    imports cell would otherwise scan the system's fonts first (~0.4 s at every worker start,
    2-3 s on a busy machine)."""
    mpl_dir.mkdir()
    import matplotlib  # the grader's namespace imports it next anyway
    for fontlist in Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
        shutil.copy2(fontlist, mpl_dir / fontlist.name)


WORKER_ENV = {"LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MNIST_OFFLINE": "1", "NBGRADER_EXECUTION": "autograde",
              "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker(run, sandbox, config):
    """The worker of a run directory: sandboxed with the kernel's limits (SandboxedKernelManager's
    settings) and a fresh cgroup at every start, or a plain process for trusted code."""
    command = [sys.executable, "-I", str(run / ".grader" / "worker.py")]
    if not sandbox:
        env = {"PATH": os.defpath, "HOME": str(run), "TMPDIR": str(run), **WORKER_ENV,
               "MPLCONFIGDIR": str(run / ".matplotlib")}
        return Worker(lambda: (command, env, None), str(run))
    from .sandbox import SandboxedKernelManager, sandbox_argv
    limits = SandboxedKernelManager(config=config) if config is not None else SandboxedKernelManager()
    # The run directory is read-only inside: matplotlib's cache goes to /tmp, seeded from ours.
    env = {**WORKER_ENV, "MPLCONFIGDIR": "/tmp/matplotlib", "MPLCONFIG_SEED": str(run / ".matplotlib")}

    def launch():
        jail = limits.make_jail()
        prefix = sandbox_argv(run, ro_paths=[run / ".grader"], env=env, env_passthrough=(), jail=jail,
                              **limits.sandbox_limits())
        return [*prefix, *command], None, jail
    return Worker(launch, str(run))


def verify(source_notebook, submitted_notebook, workdir, *, sandbox=True, seed=0, cell_timeout=60,
           total_timeout=300, config=None):
    """Run the source notebook's test cells here against the submission's code in a worker.

    Each cell's visible part runs first (what the student's kernel ran too), then its hidden part;
    `config` is nbgrader's (for the hidden-test delimiters). A cell, and each call in it, gets
    `cell_timeout` seconds; all of it `total_timeout`.
    """
    start = time.monotonic()
    source_notebook = Path(source_notebook)
    source_nb = testcells.read_notebook(source_notebook)
    cells = notebook.test_cells(source_nb)
    setup = testcells.setup_source(source_nb)
    try:
        code = student_code(source_nb, testcells.read_notebook(submitted_notebook))
    except Exception as exc:  # noqa: BLE001 - any unreadable notebook fails every cell the same way
        message = f"the submitted notebook could not be read: {type(exc).__name__}: {str(exc)[:200]}"
        return Verification({cell.grade_id: Verdict(False, message, False) for cell in cells}, notes=[message],
                            seconds=time.monotonic() - start)

    run = _prepare_rundir(source_notebook.parent, workdir)
    session = None
    results = {}
    try:
        if sandbox:
            from .sandbox import make_sandbox_readable
            make_sandbox_readable(run)
        session = Session(_worker(run, sandbox, config), setup, code, cell_timeout, start + total_timeout,
                          total_timeout)
        session.start()  # the worker imports and loads while the grader sets up
        session.namespace = grader_namespace(setup, source_notebook.parent / "helpers.py", session)
        session.finish_load()
        for cell in cells:
            if time.monotonic() >= session.deadline:
                message = f"timed out: not run, the verification time limit of {total_timeout:g} s was reached"
                results[cell.grade_id] = Verdict(False, message, False, timed_out=True)
                continue
            session.before_cell(cell.grade_id)
            results[cell.grade_id] = _judge(session, cell, seed, config)
    finally:
        if session is not None:
            session.close()
        shutil.rmtree(run, ignore_errors=True)
    return Verification(results, session.load_errors, session.notes, time.monotonic() - start)


def _judge(session, cell, seed, config):
    """The verdict on one test cell: its hidden preamble (the grader's own definitions), its
    visible part and, if that passed, its hidden part."""
    parts = notebook.split_hidden(cell.source, config)
    timeouts = session.timeouts

    def run(source, mute=()):
        [(ok, message)] = testcells.run_test_cells(
            session.namespace, [(cell.grade_id, cell.points, source)], seed, mute).values()
        return ok, message

    with _memory_cap(GRADER_MEMORY_HEADROOM):
        passed, message = run(parts.preamble)
        if not passed:
            raise RuntimeError(f"the hidden preamble of {cell.grade_id} failed: {message}")
        visible_ok, message = passed, message = run(parts.visible)
        if passed and parts.hidden.strip():
            passed, message = run(parts.hidden, mute=StudentError)  # its inputs are the grader's secret
    return Verdict(passed, message, visible_ok, timed_out=not passed and session.timeouts > timeouts)


@contextlib.contextmanager
def _memory_cap(headroom):
    """Lower this process's address-space limit to its current size + headroom for a while.

    The test code computes on whatever the worker returns, and references run on whatever the
    worker passes to callbacks: a hostile submission must not make the grader allocate many GB
    (it gets a MemoryError in that test instead). Linux only; elsewhere a no-op.
    """
    try:
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * resource.getpagesize()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError, IndexError):
        yield
        return
    cap = size + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
