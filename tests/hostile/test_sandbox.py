"""Hostile student code against autograder.sandbox: the kernel (and a plain sandboxed python)
must compute normally yet see nothing of the course, reach no network, write nowhere but its
working directory, and be stopped by the limits, the cell timeout and kernel death detection.
"""
import asyncio
import contextlib
import errno
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient
from nbformat.v4 import new_code_cell, new_notebook

from autograder.sandbox.bwrap import (
    BWRAP_MISSING_HELP,
    _bwrap_supports,
    _uid_can_unshare_user,
    bwrap_available,
    make_sandbox_readable,
    sandbox_argv,
)
from autograder.sandbox.kernel import SandboxedKernelManager

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not bwrap_available(), reason=f"sandbox unusable here: {BWRAP_MISSING_HELP} "
    "(or user namespaces are disabled)")

SECRET = "sandbox-test-secret-token-7f3a"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A fake course: the kernel works in autograded/student/ps1, next to secrets."""
    root = tmp_path_factory.mktemp("course")
    (root / "source" / "ps1").mkdir(parents=True)
    (root / "source" / "ps1" / "secret.ipynb").write_text("HIDDEN TESTS")
    (root / "gradebook.db").write_text("GRADES")
    (root / "submitted" / "other_student" / "ps1").mkdir(parents=True)
    (root / "submitted" / "other_student" / "ps1" / "x").write_text("OTHER STUDENT")
    workdir = root / "autograded" / "student" / "ps1"
    workdir.mkdir(parents=True)
    (workdir / "helpers.py").write_text("ANSWER = 42\n")
    return root, workdir


def _ns_of(pid):
    """pid-namespace inode of the sandbox started as host process `pid` (bwrap)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return os.readlink(f"/proc/{kids[0]}/ns/pid") if kids else None


def _procs_in_ns(ns):
    """Live processes in pid namespace `ns` (bwrap exits without reaping the namespace's init:
    it is left a zombie for the host's init to reap)."""
    count = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "ns" / "pid") == ns:
                    count += "\nState:\tZ" not in (p / "status").read_text()
            except OSError:
                pass
    return count


class Kernel:
    """A SandboxedKernelManager driven from a private event loop, with a blocking client."""

    def __init__(self, workdir, **traits):
        self.loop = asyncio.new_event_loop()
        self.km = SandboxedKernelManager(kernel_name="python3", **traits)
        self.loop.run_until_complete(self.km.start_kernel(cwd=str(workdir)))
        self.kc = BlockingKernelClient()
        self.kc.load_connection_info(self.km.get_connection_info())
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.pid = self.km.provisioner.pid
        self.ns = _ns_of(self.pid)

    def run(self, code, timeout=30):
        out = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = self.kc.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=hook)
        content = reply["content"]
        assert content["status"] == "ok", f"{content.get('ename')}: {content.get('evalue')}"
        return "".join(out)

    def alive(self):
        return self.loop.run_until_complete(self.km.is_alive())

    def shutdown(self):
        self.kc.stop_channels()
        self.loop.run_until_complete(self.km.shutdown_kernel(now=False))
        self.loop.close()


@pytest.fixture(scope="module")
def kernel(course):
    _, workdir = course
    old = os.environ.get("SECRET_TOKEN")
    os.environ["SECRET_TOKEN"] = SECRET
    os.environ["BACKPROP_GRADER_SEED"] = "1234"
    try:
        k = Kernel(workdir)
    finally:
        if old is None:
            os.environ.pop("SECRET_TOKEN", None)
        else:
            os.environ["SECRET_TOKEN"] = old
        os.environ.pop("BACKPROP_GRADER_SEED", None)
    yield k
    sandbox_dir = k.km._sandbox_dir
    k.shutdown()
    assert not Path(f"/proc/{k.pid}").exists(), "bwrap still running after shutdown"
    deadline = time.monotonic() + 5
    while _procs_in_ns(k.ns) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_in_ns(k.ns) == 0, "processes left in the sandbox after shutdown"
    assert not os.path.exists(os.path.dirname(sandbox_dir)), "socket dir not cleaned up"


def test_kernel_computes(kernel):
    out = kernel.run("""
        import numpy as np, matplotlib, matplotlib.pyplot as plt
        from helpers import ANSWER
        plt.plot(np.arange(5) ** 2); plt.savefig("plot.png")
        print(matplotlib.get_backend(), ANSWER, float(np.linalg.norm(np.ones(4))))
    """)
    assert out.lower().split() == ["agg", "42", "2.0"]


def test_cwd_is_private_and_writable(kernel, course):
    """The kernel's cwd shows the host folder's files read-only; what it writes stays inside."""
    _, workdir = course
    before = sorted(p.name for p in workdir.iterdir())
    out = kernel.run("""
        import errno, os
        open("result.txt", "w").write("mine")
        print(os.getcwd(), open("result.txt").read(), "helpers.py" in os.listdir("."))
        for attempt in (lambda: open("helpers.py", "a"), lambda: os.unlink("helpers.py"),
                        lambda: os.rename("helpers.py", "h.py")):
            try:
                attempt()
                print("CHANGED")
            except OSError as exc:
                print(errno.errorcode[exc.errno])
    """)
    first, *errors = out.splitlines()
    assert first.split() == [str(workdir.resolve()), "mine", "True"]
    # as root the kernel's uid does not own the file nor its mount point (sticky tmpfs); as a
    # normal user it does, and the read-only bind (a mount point) is what refuses
    expected = ["EACCES", "EPERM", "EPERM"] if os.geteuid() == 0 else ["EROFS", "EBUSY", "EBUSY"]
    assert errors == expected, out
    # neither result.txt nor the plot.png saved by test_kernel_computes reached the host
    assert sorted(p.name for p in workdir.iterdir()) == before == ["helpers.py"]
    assert (workdir / "helpers.py").read_text() == "ANSWER = 42\n"


def test_course_home_and_kit_are_invisible(kernel, course):
    root, workdir = course
    secrets = [root / "source" / "ps1" / "secret.ipynb", root / "gradebook.db",
               root / "submitted" / "other_student" / "ps1" / "x",
               ROOT / "autograder" / "sandbox" / "bwrap.py", ROOT / "requirements.txt", Path("/etc/shadow"),
               Path.home() / ".bashrc", Path("/root/.bash_history")]
    for path in secrets[:5]:
        assert path.exists()  # so each probe below could have succeeded without the sandbox
    out = kernel.run(f"""
        import os
        for path in {[str(p) for p in secrets]!r} + ["../../../source/ps1/secret.ipynb", "../../../gradebook.db"]:
            try:
                open(path).read()
                print("READ", path)
            except OSError as exc:
                pass
        def ls(d):
            try:
                return sorted(os.listdir(d))
            except OSError:
                return []
        print("COURSE", ls({str(root)!r}), ls(".."), ls("../.."))
        print("HOME", ls("/root"), ls({str(Path.home())!r}))
        print("KIT", ls({str(ROOT)!r}))
    """)
    assert "READ" not in out, out
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["COURSE"] == "['autograded'] ['ps1'] ['student']"
    inside_home = lines["HOME"]
    assert ".bashrc" not in inside_home and ".ssh" not in inside_home
    assert "autograder" not in lines["KIT"] and "requirements.txt" not in lines["KIT"]


def test_cannot_write_outside_workdir(kernel, course):
    root, _ = course
    name = f"pwned-{os.getpid()}.txt"
    targets = [root / "gradebook.db", root / "source" / "ps1" / "secret.ipynb",
               root / name, ROOT / name, ROOT.parent / name, Path(sys.prefix) / name,
               Path(sys.base_prefix) / name, root / "autograded" / "student" / name]
    try:
        out = kernel.run(f"""
            for path in {[str(t) for t in targets]!r} + ["../{name}", "/usr/{name}", "/etc/{name}"]:
                try:
                    with open(path, "a") as f:
                        f.write("PWNED")
                    print("WROTE", path)
                except OSError:
                    pass
        """)
        assert (root / "gradebook.db").read_text() == "GRADES"
        assert (root / "source" / "ps1" / "secret.ipynb").read_text() == "HIDDEN TESTS"
        for t in targets[2:]:
            assert not t.exists(), f"sandbox wrote {t}"
        # as root the sandbox runs as an unprivileged uid: even the attempt fails (but for paths
        # under /tmp, the sandbox's own private tmpfs, where a kit cloned into /tmp has its parent)
        if os.geteuid() == 0:
            wrote = [line for line in out.splitlines() if line.startswith("WROTE ")
                     and not line.removeprefix("WROTE ").startswith("/tmp/")]
            assert not wrote, out
    finally:  # should the sandbox be broken, leave no litter in the kit or the venv
        for t in targets[2:]:
            with contextlib.suppress(OSError):
                t.unlink()


def test_no_network(kernel):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from the host
    try:
        out = kernel.run(f"""
            import socket
            for host in ("127.0.0.1", "1.1.1.1", "8.8.8.8"):
                try:
                    socket.create_connection((host, {port} if host == "127.0.0.1" else 80), timeout=5).close()
                    print("CONNECTED", host)
                except OSError as exc:
                    print("FAILED", host, type(exc).__name__, exc.errno)
            try:
                socket.getaddrinfo("example.com", 80)
                print("RESOLVED")
            except OSError:
                pass
        """)
    finally:
        listener.close()
    assert "CONNECTED" not in out and "RESOLVED" not in out, out
    # refused or unreachable at once (an empty network namespace), not a firewall's silence: a
    # timeout (errno None) would mean the packets went somewhere
    failed = [line.split() for line in out.strip().splitlines()]
    assert [host for _, host, _, _ in failed] == ["127.0.0.1", "1.1.1.1", "8.8.8.8"], out
    assert [errno.errorcode.get(int(code), code) if code != "None" else "timeout" for *_, code in failed] == \
        ["ECONNREFUSED", "ENETUNREACH", "ENETUNREACH"], out


def test_environment_is_clean(kernel):
    out = kernel.run(f"""
        import os
        print(sorted(os.environ))
        print({SECRET!r} in str(dict(os.environ)), os.environ.get("BACKPROP_GRADER_SEED"))
        try:
            print({SECRET!r}.encode() in open("/proc/1/environ", "rb").read())
        except OSError:
            print(False)
    """)
    names, leaked, seed, init_leaked = out.strip().splitlines()[0], *out.split()[-3:]
    assert "SECRET_TOKEN" not in names and leaked == "False" and init_leaked == "False", out
    assert seed == "1234"  # allow-listed variables do pass through


def test_limits_are_applied(kernel):
    out = kernel.run("""
        import resource as r
        print(*(r.getrlimit(x)[0] for x in (r.RLIMIT_AS, r.RLIMIT_CPU, r.RLIMIT_NPROC, r.RLIMIT_FSIZE)))
        try:
            with open("/tmp/big", "wb") as f:
                f.write(b"x" * (65 << 20))
            print("BIG WRITTEN")
        except OSError as exc:
            print("EFBIG" if exc.errno == 27 else exc)
    """)
    assert out.split() == [str(2048 << 20), "120", "64", str(64 << 20), "EFBIG"]


def test_memory_bomb(kernel):
    out = kernel.run("""
        import numpy as np
        for make in (lambda: bytearray(10 << 30), lambda: np.ones(10 << 27)):
            try:
                make()
                print("ALLOCATED")
            except MemoryError:
                print("MemoryError")
        hog = []
        try:
            while True:
                hog.append(np.ones(64 << 17))  # 64 MiB at a time, touched
        except MemoryError:
            print("MemoryError", len(hog) * 64 < 2048)
        del hog
    """, timeout=60)
    assert out.split() == ["MemoryError", "MemoryError", "MemoryError", "True"]
    assert kernel.alive()


def test_fork_limit_in_kernel(kernel):
    out = kernel.run("""
        import os, time
        pids, err = [], None
        for _ in range(500):
            try:
                pid = os.fork()
            except OSError as exc:
                err = exc.errno
                break
            if pid == 0:
                time.sleep(10)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        print(len(pids), err)
    """)
    forked, err = out.split()
    assert int(forked) < 64 and err == str(errno.EAGAIN), out


def test_interrupt_stops_infinite_loop(kernel):
    # stop_on_error=False as nbclient sends it for nbgrader (allow_errors): otherwise the kernel
    # aborts requests that arrive just after the error, and the next run() could be one of them.
    msg_id = kernel.kc.execute("while True: pass", stop_on_error=False)
    time.sleep(1)
    kernel.loop.run_until_complete(kernel.km.interrupt_kernel())
    deadline = time.monotonic() + 10
    while True:
        reply = kernel.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert kernel.run("print(6 * 7)").strip() == "42"  # the kernel survived the interrupt


def _sandboxed(cmd, workdir, **limits):
    return [*sandbox_argv(workdir, **limits), sys.executable, "-I", "-c", textwrap.dedent(cmd)]


def test_fork_bomb_is_contained(course, tmp_path):
    _, workdir = course
    bomb = """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """
    before = len([p for p in os.listdir("/proc") if p.isdigit()])
    proc = subprocess.Popen(_sandboxed(bomb, workdir, max_processes=32, cpu_seconds=30),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        ns = _ns_of(proc.pid)
        assert ns is not None
        peak = 0
        for _ in range(20):
            peak = max(peak, _procs_in_ns(ns))
            time.sleep(0.1)
        assert 5 < peak <= 32 + 2, f"{peak} processes in the sandbox"  # bomb ran, and was capped
    finally:
        proc.kill()  # bwrap dies; --die-with-parent and the pid namespace take the bomb with it
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _procs_in_ns(ns) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _procs_in_ns(ns) == 0
    after = len([p for p in os.listdir("/proc") if p.isdigit()])
    assert after < before + 20  # the machine is fine (other tests may run concurrently)
    assert subprocess.run(["true"]).returncode == 0


def test_cpu_limit_kills(course):
    _, workdir = course
    # the signal says which limit stopped it (the wall-clock timeout would raise instead)
    proc = subprocess.run(_sandboxed("while True: pass", workdir, cpu_seconds=1),
                          capture_output=True, timeout=60)
    assert proc.returncode in (128 + 9, 128 + 24), proc  # SIGKILL / SIGXCPU, via bwrap


def test_pipes_round_trip(course, tmp_path):
    _, workdir = course
    worker = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n"
    proc = subprocess.Popen(_sandboxed(worker, workdir), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("hello sandbox\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "HELLO SANDBOX\n"
        proc.stdin.write("again\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "AGAIN\n"
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_workdir_readable_and_private(tmp_path):
    """Root's private files in the working folder are readable by the sandbox's uid, and the
    sandbox can write there without anything reaching the host folder."""
    d = tmp_path / "scratch"
    (d / "data").mkdir(parents=True)
    (d / "data" / "x.txt").write_text("input")
    os.chmod(d / "data" / "x.txt", 0o600)
    os.chmod(d / "data", 0o700)
    probe = "print(open('data/x.txt').read()); open('made.txt', 'w').write('ok'); print(open('made.txt').read())"
    if os.geteuid() == 0:  # the sandbox runs as an unprivileged uid: root's 0600 file is closed
        assert subprocess.run(_sandboxed(probe, d), capture_output=True).returncode != 0
    make_sandbox_readable(d)
    proc = subprocess.run(_sandboxed(probe, d), capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split() == ["input", "ok"], proc.stderr
    assert sorted(p.name for p in d.iterdir()) == ["data"]


def _notebook(*sources):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_execute_preprocessor_times_out_and_interrupts(course, tmp_path):
    """nbgrader's path: a cell timeout interrupts the kernel, later cells still run."""
    root, _ = course
    workdir = root / "autograded" / "looper" / "ps1"
    workdir.mkdir(parents=True)
    nb = _notebook("x = 20", "while True:\n    pass", "print(x + 22)")
    from autograder.grading.execute import GradingExecute
    ep = GradingExecute(timeout=3)  # what the course's nbgrader_config.py runs
    assert ep.kernel_manager_class is SandboxedKernelManager
    nb, _ = ep.preprocess(nb, {"metadata": {"path": str(workdir)}})
    loop_out = nb.cells[1].outputs
    assert any(o.output_type == "error" for o in loop_out), loop_out
    assert nb.cells[2].outputs[0]["text"] == "42\n"


def test_special_files_left_by_unsandboxed_code_are_removed(tmp_path):
    """Without the sandbox (--no-sandbox, trusted code) the kernel writes the real folder, which
    becomes the autograded one: a FIFO or a link it left there is deleted before nbgrader copies or
    chmods through it. (A sandboxed kernel writes a private tmpfs: nothing it makes gets here.)"""
    from autograder.grading.execute import GradingExecute

    workdir = tmp_path / "work"
    workdir.mkdir()
    target = tmp_path / "target.txt"
    target.write_text("the grader's")
    nb = _notebook(f"import os\nos.mkfifo('pipe')\nos.symlink({str(target)!r}, 'link')\n"
                   "os.mkdir('sub')\nos.symlink('..', 'sub/up')\nopen('kept.txt', 'w').write('ok')")
    GradingExecute(sandbox=False, timeout=60).preprocess(nb, {"metadata": {"path": str(workdir)}})
    assert not any(o.output_type == "error" for o in nb.cells[0].outputs), nb.cells[0].outputs  # it made them
    left = sorted(os.path.relpath(os.path.join(d, name), workdir)
                  for d, dirs, files in os.walk(workdir) for name in dirs + files)
    assert left == ["kept.txt", "sub"]
    assert target.read_text() == "the grader's"


def test_dead_kernel_detected(course):
    """os._exit in a cell: nbclient reports a dead kernel quickly instead of hanging."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    _, workdir = course
    nb = _notebook("import os\nos._exit(1)", "print('never')")
    client = NotebookClient(nb, timeout=30, kernel_manager_class=SandboxedKernelManager,
                            resources={"metadata": {"path": str(workdir)}})
    with pytest.raises(DeadKernelError):  # not the 30 s cell timeout's CellTimeoutError: no hang
        client.execute()


def test_limits_are_configurable(tmp_path):
    from traitlets.config import Config

    config = Config()
    config.SandboxedKernelManager.memory_limit_mb = 4096
    config.SandboxedKernelManager.max_processes = 16
    config.SandboxedKernelManager.use_cgroups = False
    km = SandboxedKernelManager(config=config)
    assert (km.memory_limit_mb, km.max_processes, km.cpu_seconds) == (4096, 16, 120)
    jail = km.make_jail()
    assert (jail.kind, jail.memory_bytes, jail.max_processes) == ("fallback: cgroups switched off", 4096 << 20, 16)
    argv = sandbox_argv(tmp_path, jail=jail, **km.sandbox_limits())
    assert f"--as={4096 << 20}:{4096 << 20}" in argv and argv[1] == "-i"  # no join prefix: fallback
    # a limit not passed takes the trait's default, not a second one of sandbox_argv's own
    defaults = sandbox_argv(tmp_path)
    assert f"--as={2048 << 20}:{2048 << 20}" in defaults and "--nproc=64:64" in defaults
    assert defaults[defaults.index("--tmpfs") - 1] == str(256 << 20)
    argv = sandbox_argv("/tmp", memory_limit_mb=4096, max_processes=16)
    assert f"--as={4096 << 20}:{4096 << 20}" in argv and "--nproc=16:16" in argv
    assert "--unshare-net" in argv or "--unshare-all" in argv
    assert argv[argv.index("--clearenv") - 1] != "--"


# The non-root command line. CI runs as root, so every sandbox above takes sandbox_argv's root
# branch; a grader run by a normal user gets the other one, which must isolate just as well.

NAMESPACES = ("net", "pid", "user", "ipc", "uts", "mnt", "cgroup")


def _unprivileged_argv(workdir, monkeypatch):
    import autograder.sandbox.bwrap as bwrap
    monkeypatch.setattr(bwrap, "_running_as_root", lambda: False)
    # this interpreter lives under /root (0700) here, which an unprivileged bwrap cannot bind: the
    # probes below run /bin/sh, so the command line is built without the Python prefixes
    monkeypatch.setattr(bwrap, "python_paths", lambda: [])
    return bwrap.sandbox_argv(workdir)


def test_unprivileged_command_line_makes_every_namespace(tmp_path, monkeypatch):
    argv = _unprivileged_argv(tmp_path, monkeypatch)
    options = argv[argv.index("-i") + 2:argv.index("--die-with-parent")]  # between bwrap and the mounts
    expected = ["--unshare-all", "--unshare-user"]
    if _bwrap_supports("--disable-userns"):  # bwrap >= 0.8: no nested user namespace either
        expected.append("--disable-userns")
    assert options == expected
    # none of the root branch: no capabilities kept, no uid switch (bwrap's namespace is the switch)
    assert "--cap-add" not in argv and not any(arg.endswith("setpriv") for arg in argv)
    assert "--clearenv" in argv and argv[-1] == "--" and argv[-2].startswith("--")  # prlimit's limits last


def _as_unprivileged_user(argv):
    """argv run as an unprivileged uid: as root, switched to nobody first (an unprivileged bwrap is
    what a grader run by a normal user starts); as a normal user, as is."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", *argv]


@pytest.mark.skipif(os.geteuid() == 0 and not _uid_can_unshare_user(65534),
                    reason="user namespaces are closed to unprivileged users here")
def test_unprivileged_sandbox_isolates(monkeypatch):
    import tempfile
    # a folder the unprivileged uid can enter (pytest's tmp_path is root's, mode 0700)
    with tempfile.TemporaryDirectory(prefix="sandbox-unprivileged-") as d:
        os.chmod(d, 0o755)
        Path(d, "input.txt").write_text("input")
        os.chmod(Path(d, "input.txt"), 0o644)
        argv = _unprivileged_argv(d, monkeypatch)
        probe = ("for n in " + " ".join(NAMESPACES) + "; do echo $n $(readlink /proc/self/ns/$n); done; "
                 "echo cwd $(cat input.txt); echo kit $(ls -d " + str(ROOT) + " 2>/dev/null || echo none); "
                 "unshare --user true 2>/dev/null && echo nested yes || echo nested no")
        proc = subprocess.run(_as_unprivileged_user([*argv, "/bin/sh", "-c", probe]), capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    host = {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES}
    # every namespace is a new one: it was read (so the comparison means something) and differs
    assert all(seen[n].startswith(f"{n}:[") and seen[n] != host[n] for n in NAMESPACES), (seen, host)
    assert seen["cwd"] == "input" and seen["kit"] == "none"  # the working folder, nothing of the kit
    if _bwrap_supports("--disable-userns"):  # no user namespace of its own to regain privileges in
        assert seen["nested"] == "no"
