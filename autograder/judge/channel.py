"""The worker process and its pipes: frames out and in, each read and write bounded by a deadline,
and a watchdog that kills the worker (and its cgroup) at that deadline whatever it is doing."""
import contextlib
import os
import select
import subprocess
import threading
import time

from autograder.judge import wire

WORKER_STDERR = subprocess.DEVNULL  # set to None to see the worker's stderr while debugging


class WorkerError(Exception):
    """The worker died, timed out or broke the protocol during a call; the test fails."""


class StudentError(Exception):
    """An exception raised by the student's code in the worker (subclassed under its own name)."""


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

    def loaded(self, deadline, per_cell):
        """The worker's 'loaded' reply; each cell it loads must finish within `per_cell` seconds."""
        self.loading = None
        reply = self.receive(min(time.monotonic() + per_cell, deadline))
        while reply.get("op") == "loading":
            self.loading = reply.get("cell")
            reply = self.receive(min(time.monotonic() + per_cell, deadline))
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
