"""The grader's side of one verification: the student's functions as proxies, calls with their
deadlines, restarts after a dead or stuck worker, callbacks for the reference functions."""
import contextlib
import subprocess
import time

import numpy as np

from autograder.judge import wire
from autograder.judge.channel import StudentError, WorkerError
from autograder.judge.mirror import mirror_arguments

CALLBACK_MAX_ENTRIES = 1 << 22


def _within_contract(value, depth=0):
    """Arguments a reference function may run on in the grader's own process."""
    if depth > 8:
        return False
    if isinstance(value, np.ndarray):
        return (value.dtype.kind in "biuf" and value.dtype.itemsize <= 8 and value.ndim <= 3
                and value.size <= CALLBACK_MAX_ENTRIES)
    if isinstance(value, dict):
        return all(_within_contract(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return len(value) <= CALLBACK_MAX_ENTRIES and all(_within_contract(v, depth + 1) for v in value)
    return value is None or isinstance(value, (bool, int, float, str, np.generic)) and \
        not (isinstance(value, np.generic) and value.dtype.itemsize > 8)


def _student_exception(ename, evalue):
    name = ename if isinstance(ename, str) and ename.isidentifier() and len(ename) <= 80 else "StudentError"
    return type(name, (StudentError,), {})(str(evalue)[:2000])



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

    def __init__(self, worker, setup, code, cell_timeout, deadline, total_timeout, upto=None, functions=()):
        self.worker, self.setup, self.code = worker, setup, code
        self.functions = tuple(functions)  # the student functions (testcells.student_functions)
        self.upto = len(code) if upto is None else upto  # how many cells of `code` the worker should hold
        self.loaded = 0           # how many it holds (a restart loads self.upto of them at once)
        self._offset = 0          # where the load in progress starts in `code`
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
        self._offset, self.loaded = 0, 0
        try:
            self.worker.start(self._load_msg(), self._load_deadline())
        except (wire.WireError, TimeoutError) as exc:  # reported by finish_load
            self._start_error = exc

    def _load_msg(self):
        return {"op": "load", "setup": self.setup, "cells": [src for _, src in self.code[:self.upto]]}

    def _load_deadline(self):
        """Loading runs cells of the submission: each gets the cell limit, as in the kernel."""
        return min(time.monotonic() + self.cell_timeout * (self.upto - self._offset + 1), self.deadline)

    def load_more(self, upto):
        """Load the student's cells up to `upto` into the running worker (the cells above the next
        test); never fewer than it holds: a test cell moved up still sees what is loaded."""
        self.upto = max(self.upto, upto)
        if not self.running or self.loaded >= self.upto:
            return
        self._offset = self.loaded
        self.worker.loading = None  # a culprit named by an earlier load must not be blamed for this one
        msg = {"op": "load", "setup": "", "cells": [src for _, src in self.code[self.loaded:self.upto]]}
        self._start_error = None
        try:
            self.worker.send_frame(wire.encode(msg), self._load_deadline())
        except (wire.WireError, TimeoutError) as exc:
            self._start_error = exc
        self.running = False
        self.finish_load()

    def finish_load(self):
        """Wait for the worker's 'loaded'; if a cell kills or hangs it, load again without that
        cell (its functions then fail their tests, the others are judged), else give up for good."""
        try:
            if self._start_error:
                raise self._start_error
            deadline = self._load_deadline()
            with self.worker.watchdog(deadline):
                errors = self.worker.loaded(deadline, self.cell_timeout)
        except (wire.WireError, TimeoutError, OSError) as exc:
            reason = self._why(exc, "loading the submission")
            culprit = self.worker.loading
            culprit = self._offset + int(culprit) if str(culprit).isdigit() else None
            self.worker.kill()
            if culprit is None or culprit >= self.upto or time.monotonic() >= self.deadline:
                self.unusable = reason
                self.notes.append(f"{reason}; every call fails")
                return
            label = self.code[culprit][0]
            self.notes.append(f"{reason} (in {label}); loading again without {label}")
            self.load_errors[label] = f"{reason}: left out"
            del self.code[culprit]
            self.upto -= 1
            self.start()
            return self.finish_load()
        if self._first_load or not self.load_errors or self._offset:
            labels = ["imports" if not self._offset else "(none)"] + [
                label for label, _ in self.code[self._offset:self.upto]]
            for key, message in errors.items():
                index = 0 if key == "setup" else int(key) + 1 if str(key).isdigit() else None
                label = labels[index] if index is not None and index < len(labels) else str(key)[:40]
                self.load_errors[label] = str(message)[:500]
        self._first_load = False
        self.loaded = self.upto
        self.running = True

    def before_cell(self, gid, upto=None):
        """A test cell starts, with the student's cells above it (`upto` of them) loaded; it gets
        `cell_timeout` seconds, like a cell in the kernel."""
        self.cell = gid
        if upto is not None:
            self.upto = max(self.upto, upto)
        if not self.running and not self.unusable and time.monotonic() < self.deadline:
            self.notes[-1] += "; restarted"
            self.start()
            self.finish_load()
        elif self.running and self.loaded < self.upto and time.monotonic() < self.deadline:
            self.load_more(self.upto)
        self.cell_deadline = min(time.monotonic() + self.cell_timeout, self.deadline)

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
            if self.unusable.startswith("timed out"):
                self.timeouts += 1  # this call fails because of a limit, not the student's answer
            raise WorkerError(self.unusable)
        if time.monotonic() >= self.cell_deadline:
            raise WorkerError(self._timed_out(f"calling {name}()"))
        if not self.running:
            raise WorkerError("the worker is not running (it failed earlier in this cell)")
        reference = [n for n in self.functions if n in self.namespace and not isinstance(self.namespace[n], Proxy)]
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
            mirror_arguments(args, kwargs, msg.get("mutated"))
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
        elif not _within_contract((args, kwargs)):
            # The reference runs here, outside the worker's limits: it only takes what the
            # assignment's functions take (no long doubles, no huge or high-dimensional arrays).
            reply = {"op": "error", "ename": "ValueError", "evalue": (
                f"{fn}() was called with arguments outside the assignment's contract (numeric arrays of "
                f"at most 3 dimensions and {CALLBACK_MAX_ENTRIES:,} entries, 64-bit at most)")}
        else:
            try:
                reply = {"op": "result", "value": self.namespace[fn](*args, **kwargs)}
            except Exception as exc:  # noqa: BLE001 - the student's arguments may break the reference
                reply = {"op": "error", "ename": type(exc).__name__, "evalue": str(exc)[:500]}
        try:
            return wire.encode(reply)
        except wire.WireError as exc:
            return wire.encode({"op": "error", "ename": "WireError", "evalue": str(exc)})
