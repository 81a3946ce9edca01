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
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from autograder import notebook, testcells
from autograder.judge.channel import StudentError, Worker
from autograder.judge.session import Proxy, Session
from autograder.judge.submission import student_code_at, tests_at

HERE = Path(__file__).resolve().parent
WORKER_FILES = ("worker.py", "wire.py")
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


# the grader's namespace
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _assignment_modules(source_dir):
    """While the block runs, imports find the assignment's own modules in its source folder first, as
    the kernel finds them beside the notebook (a helper module may import a sibling, or be a package);
    never from the submission. Before, a module of the same name loaded earlier in this process (the
    kit's helpers, another assignment's) is set aside; after, these are forgotten and it is put back."""
    folder = str(Path(source_dir).resolve())
    names = {p.stem for p in Path(folder).glob("*.py")} | {
        p.name for p in Path(folder).iterdir() if p.is_dir() and (p / "__init__.py").is_file()}

    def ours(module_name):
        return module_name.split(".")[0] in names

    saved = {name: sys.modules.pop(name) for name in [n for n in sys.modules if ours(n)]}
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(folder)
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


def grader_namespace(setup, source_dir, session):
    """The test cells' namespace: the imports cell run here, with the assignment's own Python
    modules (helpers.py) imported from the source folder, never from the submission; every student
    function a Proxy."""
    namespace = {"__name__": "__main__"}
    with _assignment_modules(source_dir):
        exec(compile(setup, "<imports>", "exec"), namespace)
    for name in session.functions:
        namespace[name] = Proxy(session, name)
    return namespace


# ---------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------

def _prepare_rundir(source_dir, workdir):
    """A fresh directory under workdir: what students receive with the notebook (the source
    folder's other files: helpers.py, data/) and, in .grader/, the worker's code."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="verify-", dir=workdir))
    run.chmod(0o755)
    for path in source_dir.iterdir():
        if path.suffix == ".ipynb" or path.name.startswith(".") or path.is_symlink():
            continue
        if path.is_dir():
            shutil.copytree(path, run / path.name, symlinks=False,
                            ignore=shutil.ignore_patterns(".*", "__pycache__"))
        elif path.is_file():
            shutil.copy2(path, run / path.name)
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


WORKER_ENV = {"MNIST_OFFLINE": "1", "NBGRADER_EXECUTION": "autograde"}  # on top of the sandbox's own


def _worker(run, sandbox, config):
    """The worker of a run directory: sandboxed with the kernel's limits (SandboxedKernelManager's
    settings) and a fresh cgroup at every start, or a plain process for trusted code."""
    command = [sys.executable, "-I", str(run / ".grader" / "worker.py")]
    from autograder.sandbox.bwrap import SANDBOX_ENV, sandbox_argv
    if not sandbox:
        env = {"PATH": os.defpath, **SANDBOX_ENV, "HOME": str(run), "TMPDIR": str(run), **WORKER_ENV,
               "MPLCONFIGDIR": str(run / ".matplotlib")}
        return Worker(lambda: (command, env, None), str(run))
    from autograder.sandbox.kernel import SandboxedKernelManager
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
        submitted_nb = testcells.read_notebook(submitted_notebook)
        located = student_code_at(source_nb, submitted_nb)
        at = tests_at(submitted_nb, {cell.grade_id for cell in cells})
    except Exception as exc:  # noqa: BLE001 - any unreadable notebook fails every cell the same way
        message = f"the submitted notebook could not be read: {type(exc).__name__}: {str(exc)[:200]}"
        return Verification({cell.grade_id: Verdict(False, message, False) for cell in cells}, notes=[message],
                            seconds=time.monotonic() - start)

    run = _prepare_rundir(source_notebook.parent, workdir)
    session = None
    results = {}
    try:
        if sandbox:
            from autograder.sandbox.bwrap import make_sandbox_readable
            make_sandbox_readable(run)
        code = [(label, source) for label, source, _ in located]

        def code_above(gid):  # how many of the student's cells lie above this test in the submission
            return sum(1 for *_, index in located if index < at.get(gid, len(submitted_nb.cells)))

        session = Session(_worker(run, sandbox, config), setup, code, cell_timeout, start + total_timeout,
                          total_timeout, upto=code_above(cells[0].grade_id) if cells else len(code),
                          functions=testcells.student_functions(source_nb))
        session.start()  # the worker imports and loads while the grader sets up
        session.namespace = grader_namespace(setup, source_notebook.parent, session)
        session.finish_load()
        for cell in cells:
            if time.monotonic() >= session.deadline:
                message = f"timed out: not run, the verification time limit of {total_timeout:g} s was reached"
                results[cell.grade_id] = Verdict(False, message, False, timed_out=True)
                continue
            timeouts = session.timeouts  # a restart at the cell's start counts for the cell
            session.before_cell(cell.grade_id, code_above(cell.grade_id))
            results[cell.grade_id] = _judge(session, cell, seed, config, timeouts)
    finally:
        if session is not None:
            session.close()
        shutil.rmtree(run, ignore_errors=True)
    return Verification(results, session.load_errors, session.notes, time.monotonic() - start)


def _judge(session, cell, seed, config, timeouts):
    """The verdict on one test cell: its hidden preamble (the grader's own definitions), its
    visible part and, if that passed, its hidden part."""
    parts = notebook.split_hidden(cell.source, config)

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
