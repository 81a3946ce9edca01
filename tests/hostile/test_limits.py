"""Limits enforced from outside whatever the student's code does: output caps held by the grader,
a disk quota (the working directory is a size-capped tmpfs), and the total memory and process
count of one submission capped by a cgroup (or, forced here too, the watchdog fallback).
"""
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.sandbox import cgroup
from autograder.sandbox.bwrap import BWRAP_MISSING_HELP, bwrap_available, sandbox_argv
from autograder.sandbox.cgroup import Jail
from autograder.sandbox.kernel import SandboxedKernelManager

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not bwrap_available(), reason=f"sandbox unusable here: {BWRAP_MISSING_HELP} "
    "(or user namespaces are disabled)")

MiB = 1 << 20


def _probe_jail():
    jail = Jail.create(memory_mb=64, max_processes=8, use_cgroups=True)
    jail.close()
    return jail.kind


CGROUP_KIND = _probe_jail()
needs_cgroup = pytest.mark.skipif(
    CGROUP_KIND.startswith("fallback"),
    reason=f"no usable cgroup on this machine ({CGROUP_KIND}): the aggregate cap is the fallback's")


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / "autograded" / "student" / "ps1"
    d.mkdir(parents=True)
    (d / "helpers.py").write_text("ANSWER = 42\n")
    return d


def _gone(pid, wait=10.0):
    """Has process `pid` ended (a zombie awaiting its reaper counts as ended)?"""
    deadline = time.monotonic() + wait
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def _run_sandboxed(code, workdir, jail=None, **limits):
    """Run python `code` in the sandbox (in `jail`, watched and closed); (returncode, out, err)."""
    argv = [*sandbox_argv(workdir, jail=jail, **limits), sys.executable, "-I", "-c",
            textwrap.dedent(code)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if jail is not None:
        jail.watch(proc.pid)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, out, err


# --- output -------------------------------------------------------------------------------------

def _notebook(*sources):
    nb = new_notebook(cells=[new_code_cell(textwrap.dedent(s)) for s in sources])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _output_bytes(outputs):
    from autograder.grading.execute import _payload_bytes
    return sum(_payload_bytes(dict(o)) for o in outputs)


class PeakRSS:
    """The highest resident memory of this (grader) process while the block runs."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def growth(self):
        return self.peak - self.start


def test_output_flood_is_capped(workdir):
    """200 MB printed at once, 200 MB in 2 MB pieces, 300 images, an error past the cap: the
    stored notebook stays under the caps, later cells still run and store their output, the
    failing cell still fails, and the grader's memory does not follow the flood."""
    from autograder.grading.execute import GradingExecute

    nb = _notebook(
        'print("a" * (200 << 20))',
        'for _ in range(100):\n    print("b" * (2 << 20), flush=True)',  # a message each
        """
        import base64, os
        from IPython.display import display
        blob = base64.b64encode(os.urandom(150_000)).decode()
        for _ in range(300):
            display({"image/png": blob}, raw=True)
        """,
        'print("after")',
        'raise ValueError("v" * (1 << 20))',
        'open("written-by-kernel.txt", "w").write("x" * 1000); print(sorted(os.listdir(".")))',
    )
    before = _listing(workdir)
    ep = GradingExecute(timeout=60, max_cell_output_bytes=MiB, max_output_bytes=3 * MiB)
    with PeakRSS() as rss:
        nb, _ = ep.preprocess(nb, {"metadata": {"path": str(workdir)}})
    sizes = [_output_bytes(c.outputs) for c in nb.cells]
    notice = "[output truncated: more than"
    # the 200 MB message never reached the grader: libzmq dropped the connection at 4 MiB, and
    # the grader opened a new one for the next cells
    assert [o.text for o in nb.cells[0].outputs] == [
        "[output lost: part of this cell's output never arrived (the grader refuses messages "
        "above its size cap)]\n"]
    for i in (1, 2):
        assert MiB - (300 << 10) < sizes[i] <= MiB + 200, (i, sizes[i])
        assert nb.cells[i].outputs[-1].text.startswith(notice + f" {MiB} bytes in this cell]")
    assert [o.text for o in nb.cells[3].outputs] == ["after\n"]
    errors = [o for o in nb.cells[4].outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "ValueError" and len(errors[0].evalue) == 2000
    assert nb.cells[4].outputs[-1].text.startswith(notice)
    assert "written-by-kernel.txt" in nb.cells[5].outputs[0].text
    assert sum(sizes) <= 3 * MiB + 16 << 10
    assert _listing(workdir) == before  # nothing the kernel wrote is on the host
    # the flood was over 400 MB; the grader held at most a few of the capped messages at once
    assert rss.growth < 150 * MiB, f"grader grew by {rss.growth >> 20} MiB"


def test_submission_budget_uses_timeout_func(workdir):
    """The whole-submission budget shortens a cell's timeout through nbclient's timeout_func."""
    from autograder.grading.execute import GradingExecute

    nb = _notebook("x = 1", "while True:\n    pass", "while True:\n    pass", "print(x)")
    ep = GradingExecute(timeout=60, submission_timeout=3)
    asked = []
    budget = ep.timeout_func
    ep.timeout_func = lambda cell: asked.append(budget(cell)) or asked[-1]
    nb, _ = ep.preprocess(nb, {"metadata": {"path": str(workdir)}})
    assert ep.timeout == 60  # the per-cell setting is no longer rewritten
    assert len(asked) >= 2 and all(1 <= t <= 3 for t in asked), asked
    assert "CellTimeoutError" in [o.ename for o in nb.cells[1].outputs if o.output_type == "error"]
    assert nb.cells[3].outputs[0].ename == "SubmissionTimeout"  # 3 s were used up before it


# --- disk -----------------------------------------------------------------------------------------

def test_disk_fill_stops_at_the_quota(workdir):
    """Writing 1 GB into the working directory, /tmp and /dev/shm stops at each tmpfs's size;
    the host folder gets nothing."""
    before = _listing(workdir)
    code = """
        import errno, os
        chunk = b"x" * (1 << 20)
        for where in (".", "/tmp", "/dev/shm"):
            written, err = 0, None
            try:
                for i in range(1024):  # 1 GB, in files below the per-file size limit
                    with open(os.path.join(where, f"fill{i}"), "wb") as f:
                        for _ in range(8):
                            f.write(chunk)
                            f.flush()
                            written += 1
            except OSError as exc:
                err = errno.errorcode[exc.errno]
            print(where, written, err)
    """
    rc, out, err = _run_sandboxed(code, workdir, workdir_size_mb=24, tmp_size_mb=16)
    assert rc == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert [(w, e) for w, _, e in lines] == [(".", "ENOSPC"), ("/tmp", "ENOSPC"), ("/dev/shm", "ENOSPC")]
    written = {w: int(n) for w, n, _ in lines}
    # MiB that fit: the size, less what the tmpfs keeps for itself (never more than the size)
    assert 20 <= written["."] <= 24 and 12 <= written["/tmp"] <= 16 and 12 <= written["/dev/shm"] <= 16, out
    assert _listing(workdir) == before


# --- memory and processes ---------------------------------------------------------------------

HOG = """
import subprocess, sys
child = '''
import sys
n = {size}
b = bytearray(n)
b[::4096] = b"\\x01" * len(range(0, n, 4096))  # touch every page: real memory
print("held", flush=True)
sys.stdin.read()
'''
kids = [subprocess.Popen([sys.executable, "-I", "-c", child], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True) for _ in range({count})]
said = [k.stdout.readline().strip() for k in kids]  # "" once a child was killed
alive = [k.poll() is None and s == "held" for k, s in zip(kids, said)]
print("HOLDING", sum(alive), flush=True)
for k in kids:
    k.stdin.close()
print("CODES", *sorted(k.wait() for k in kids))
"""


@needs_cgroup
def test_aggregate_memory_capped(workdir):
    """Three processes touching 1 GB each under a 2 GiB cap: never all three at once, the OS
    kills for the limit, and the group's peak never exceeds it; one alone succeeds."""
    jail = Jail.create(memory_mb=2048, max_processes=64, use_cgroups=True)
    try:
        rc, out, err = _run_sandboxed(HOG.format(size=10**9, count=3), workdir, jail=jail)
        peak, kills = jail.peak_memory(), jail.oom_kills()
    finally:
        jail.close()
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert rc == 0, err
    assert int(lines["HOLDING"]) <= 2, out
    assert lines["CODES"].split()[0] == "-9", out  # a child killed by the OS for the limit
    assert kills >= 1
    assert peak <= 2048 * MiB

    control = Jail.create(memory_mb=2048, max_processes=64, use_cgroups=True)
    try:
        rc, out, err = _run_sandboxed(HOG.format(size=10**9, count=1), workdir, jail=control)
        peak = control.peak_memory()
    finally:
        control.close()
    assert rc == 0 and out.split() == ["HOLDING", "1", "CODES", "0"], (out, err)
    assert 10**9 < peak <= 2048 * MiB


def test_aggregate_memory_fallback_watchdog(workdir):
    """With cgroups switched off, the watchdog kills the whole sandbox once its process tree's
    resident memory passes the cap."""
    jail = Jail.create(memory_mb=512, max_processes=64, use_cgroups=False)
    assert jail.kind == "fallback: cgroups switched off" and jail.join_argv() == []
    try:
        rc, out, err = _run_sandboxed(HOG.format(size=300 * MiB, count=3), workdir, jail=jail)
    finally:
        jail.close()
    assert rc == -9, (rc, out, err)  # bwrap, killed with everything below it
    assert "HOLDING" not in out
    assert jail.killed_for.startswith("the 512 MiB memory limit (")
    assert jail.oom_kills() == 1


@needs_cgroup
def test_thread_and_fork_bomb_bounded_by_the_group(workdir):
    """With RLIMIT_NPROC off, the cgroup alone stops a thread bomb and a fork bomb."""
    code = """
        import errno, os, threading, time
        stop = threading.Event()
        threads = []
        try:
            while len(threads) < 1000:
                t = threading.Thread(target=stop.wait)
                t.start()
                threads.append(t)
        except RuntimeError:
            pass
        print("THREADS", len(threads))
        stop.set()
        for t in threads:
            t.join()
        pids, err = [], None
        while len(pids) < 1000:
            try:
                pid = os.fork()
            except OSError as exc:
                err = errno.errorcode[exc.errno]
                break
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            pids.append(pid)
        print("FORKS", len(pids), err)
        for pid in pids:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    """
    jail = Jail.create(memory_mb=0, max_processes=24, use_cgroups=True)
    try:
        rc, out, err = _run_sandboxed(code, workdir, jail=jail, max_processes=0)
        events = [cgroup._read(os.path.join(d, "pids.events")) for d in jail.group_dirs]
    finally:
        jail.close()
    assert rc == 0, err
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    # 24 tasks in all: bwrap (2), the python and what it starts
    assert 10 < int(lines["THREADS"][0]) < 24 and 10 < int(lines["FORKS"][0]) < 24, out
    assert lines["FORKS"][1] == "EAGAIN"
    assert any(e and "max " in e and e.split("max ")[1].split()[0] != "0" for e in events), events


# --- the group's life ---------------------------------------------------------------------------

@needs_cgroup
def test_kernel_runs_in_its_group_and_the_group_goes_with_it(workdir):
    import asyncio

    loop = asyncio.new_event_loop()
    km = SandboxedKernelManager(kernel_name="python3")
    try:
        loop.run_until_complete(km.start_kernel(cwd=str(workdir)))
        kc = km.client()
        kc.start_channels()
        loop.run_until_complete(kc.wait_for_ready(timeout=60))  # the kernel is up in there
        kc.stop_channels()
        jail = km.jail
        assert jail.kind == CGROUP_KIND and jail.kind.startswith("cgroup v")
        name = os.path.basename(jail.group_dirs[0])
        assert name.startswith(f"autograder-{os.getpid()}-")
        bwrap = km.provisioner.pid
        in_group = [p for p in psutil.Process(bwrap).children(recursive=True)]
        assert in_group and all(name in Path(f"/proc/{p.pid}/cgroup").read_text() for p in in_group)
        for d in jail.group_dirs:
            assert bwrap in cgroup._procs(d)
    finally:
        loop.run_until_complete(km.shutdown_kernel(now=True))
        loop.close()
    assert km.jail is jail and not any(os.path.exists(d) for d in jail.group_dirs)
    jail.close()  # idempotent


def test_kernel_fallback_forced_by_trait(workdir):
    import asyncio

    loop = asyncio.new_event_loop()
    km = SandboxedKernelManager(kernel_name="python3", use_cgroups=False)
    try:
        loop.run_until_complete(km.start_kernel(cwd=str(workdir)))
        assert km.jail.kind == "fallback: cgroups switched off"
        assert km.jail._thread is not None and km.jail._thread.is_alive()  # the watchdog runs
    finally:
        loop.run_until_complete(km.shutdown_kernel(now=True))
        loop.close()
    assert not km.jail._thread.is_alive()


@needs_cgroup
def test_stale_groups_of_a_dead_owner_are_reaped(tmp_path):
    """A grader killed before closing its jail leaves a group with a process in it; reap_stale
    kills that process and removes the group, and leaves the groups of live owners alone."""
    owner = """
import os, subprocess, sys
from autograder.sandbox.cgroup import Jail
jail = Jail.create(memory_mb=256, max_processes=8, use_cgroups=True)
child = subprocess.Popen([*jail.join_argv(), "sleep", "600"], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, *jail.group_dirs, flush=True)
os._exit(0)  # dies without closing the jail
"""
    out = subprocess.run([sys.executable, "-c", owner], capture_output=True, text=True, timeout=60)
    pid, *dirs = out.stdout.split()
    pid = int(pid)
    live = Jail.create(memory_mb=256, max_processes=8, use_cgroups=True)
    try:
        assert all(os.path.isdir(d) for d in dirs) and psutil.pid_exists(pid)
        removed = cgroup.reap_stale()
        assert set(dirs) <= set(removed)  # (with any other dead grader's leftovers)
        assert all(cgroup._owner_dead(os.path.basename(d)) for d in removed)
        assert not any(os.path.exists(d) for d in dirs)
        assert _gone(pid)
        assert all(os.path.isdir(d) for d in live.group_dirs)  # our own jail is not stale
    finally:
        live.close()
        if not _gone(pid, wait=0):
            os.kill(pid, 9)


def test_jail_never_raises_without_cgroups(monkeypatch):
    monkeypatch.setattr(cgroup, "_mounts", lambda: [])
    jail = Jail.create(memory_mb=256, max_processes=8, use_cgroups=True)
    assert jail.kind == "fallback: no cgroup v1 memory+pids hierarchies; no cgroup v2 hierarchy"
    jail.close()
    jail.close()


def test_cgroup_v2_layout(tmp_path, monkeypatch):
    """Where only the unified hierarchy has the controllers, the jail enables them for its
    children, sets memory.max, memory.swap.max=0 and pids.max, and the join targets the group.
    (A directory tree stands in for cgroupfs: this machine has no v2 controllers to try.)"""
    own = tmp_path / "grader.slice"
    own.mkdir()
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroup, "_mounts", lambda: [(str(tmp_path), "/", "cgroup2", ["rw"])])
    monkeypatch.setattr(cgroup, "_own_paths", lambda: {"": "/grader.slice"})
    real_mkdir = os.mkdir

    def mkdir_like_cgroupfs(path, *args):  # the kernel creates a group's interface files
        real_mkdir(path, *args)
        for name in ("cgroup.procs", "memory.max", "memory.swap.max", "pids.max"):
            Path(path, name).write_text("max\n")

    monkeypatch.setattr(cgroup.os, "mkdir", mkdir_like_cgroupfs)
    jail = Jail.create(memory_mb=300, max_processes=12, use_cgroups=True)
    (group,) = jail.group_dirs
    assert jail.kind == "cgroup v2" and os.path.dirname(group) == str(own)
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids"
    values = {n: Path(group, n).read_text() for n in ("memory.max", "memory.swap.max", "pids.max")}
    assert values == {"memory.max": str(300 * MiB), "memory.swap.max": "0", "pids.max": "12"}
    assert jail.join_argv()[-2:] == [os.path.join(group, "cgroup.procs"), "--"]
    jail.close()  # a plain directory with files cannot be removed like a group: logged, no raise


@needs_cgroup
def test_a_launch_that_cannot_join_its_group_does_not_run(workdir):
    """The join fails closed: with its group gone, the sandbox never starts."""
    jail = Jail.create(memory_mb=256, max_processes=16, use_cgroups=True)
    argv = sandbox_argv(workdir, jail=jail)
    jail.close()
    proc = subprocess.run([*argv, sys.executable, "-c", "print('ran')"], capture_output=True, text=True)
    assert proc.returncode == 125 and proc.stdout == "", proc
