"""Run untrusted student code (a Jupyter kernel, or any command) in a bubblewrap sandbox.

What the sandboxed process gets:

* no network: a new, empty network namespace (only a loopback with nothing listening), so the
  kernel talks to its client over unix sockets (jupyter ``transport='ipc'``) in a private
  directory bound into the sandbox;
* a file system that shows only what is needed to run Python: /usr (+ the /bin, /lib...
  symlinks), a few harmless files of /etc, the interpreter's prefixes (the venv and its base
  Python) read-only, and three size-capped private tmpfs: /tmp, /dev/shm and the working
  directory.  Each entry of the host's working directory (the notebook, helpers.py, data/...) is
  bound read-only on top of the working directory's tmpfs, so whatever the code writes there stays
  in the sandbox, is bounded in size, and vanishes with it: nothing it writes reaches the host.
  Everything else -- the course directory around the working directory, the kit's repository,
  home directories -- does not exist in there;
* a clean environment (``--clearenv``) with a minimal set of variables plus an allow-list passed
  through from the parent;
* its own pid, ipc, uts and cgroup namespaces (``--die-with-parent``, ``--new-session``);
* a cap on the total memory and process count of everything it runs: a cgroup that the launched
  process joins before bwrap starts (:mod:`autograder.sandbox.cgroup`; a watchdog where no cgroup can be
  made);
* resource limits set with ``prlimit`` inside the sandbox: address space, CPU seconds, number of
  processes, file size, no core dumps (per process: the cgroup bounds the sum).

RLIMIT_NPROC and root: the kernel never applies RLIMIT_NPROC to processes whose real uid is the
host's root (INIT_USER), even inside a user namespace and even with ``bwrap --uid 65534`` (that
only renames uid 0 inside the namespace).  So when the grader runs as root, the sandbox runs
bwrap in its privileged mode without a user namespace, lets the command inside switch to an
unprivileged host uid (``setpriv``, default 65534 = nobody; all capabilities dropped and
no_new_privs set), then enters a fresh user namespace (``unshare --user``) so that the process
count is per sandbox (kernel >= 5.14 counts RLIMIT_NPROC per user namespace) instead of shared by
every process of that uid, then applies the limits.  Files of the working directory must be
readable by that uid (see :func:`make_sandbox_readable`).  (Plain ``bwrap --unshare-all`` as root
would also leave the command uid 0 with every capability inside its user namespace, e.g. able to
remount the read-only binds.)  As a normal user, bwrap makes its own user namespace
(``--unshare-all --disable-userns``) and the limits apply directly.
"""
from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile

BWRAP_MISSING_HELP = (
    "bubblewrap (bwrap) is not installed: run `apt-get install bubblewrap` (Debian/Ubuntu) "
    "or pass --no-sandbox to grade without isolation"
)

# Variables copied from the parent's environment into the sandbox when they are set.
DEFAULT_ENV_PASSTHROUGH = (
    "NBGRADER_EXECUTION",
    "NBGRADER_VALIDATING",
    "BACKPROP_GRADER_SEED",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)

# The environment of every process that runs student code (the sandbox clears everything else).
# One BLAS thread: several submissions share the machine's cores.
SANDBOX_ENV = {
    "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
    "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "JUPYTER_PLATFORM_DIRS": "1",
}

# Host uid the sandboxed process runs as when the grader is root (see the module docstring).
DEFAULT_SANDBOX_UID = 65534

# The only entries of /etc visible inside (dynamic linker cache, users/groups for getpwuid,
# time zone, CA certificates, mime types); /etc holds credentials on many machines.
ETC_ALLOWLIST = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
    "nsswitch.conf", "hosts", "host.conf", "ssl", "ca-certificates", "alternatives",
    "mime.types", "fonts", "os-release", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}",
)

# Top-level system directories: bound read-only, or re-created as the same symlink (merged /usr).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")

_HELPERS = ("prlimit", "setpriv", "unshare")
_BIN_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")


def _which(name):
    path = shutil.which(name)
    if path:
        return path
    for d in _BIN_DIRS:  # PATH of the grader may be minimal
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _running_as_root():
    return os.geteuid() == 0


@functools.lru_cache(maxsize=None)
def _bwrap_supports(option):
    try:
        text = subprocess.run([_which("bwrap"), "--help"], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError, TypeError):
        return False
    return option in text.split()


@functools.lru_cache(maxsize=None)
def _uid_can_unshare_user(uid):
    """Can host uid `uid` create a user namespace (not e.g. forbidden by an AppArmor policy)?"""
    setpriv, unshare, true = _which("setpriv"), _which("unshare"), _which("true")
    if not (setpriv and unshare and true):
        return False
    try:
        return subprocess.run(
            [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
             unshare, "--user", "--", true],
            env={}, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
        ).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def python_paths():
    """Directories needed to run this interpreter and its site-packages (bound read-only)."""
    paths = []
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        for q in (os.path.abspath(p), os.path.realpath(p)):
            if q not in paths:
                paths.append(q)
    exe = os.path.realpath(sys.executable)
    exe_prefix = os.path.dirname(os.path.dirname(exe))
    if not any(exe == p or exe.startswith(p + os.sep) for p in paths) and exe_prefix not in paths:
        paths.append(exe_prefix)
    return [p for p in paths if p not in ("/", "/usr", "/usr/local")]


def _limit(res, value):
    """'soft:hard' for prlimit, never above the current hard limit (a user cannot raise it)."""
    _, hard = resource.getrlimit(res)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    return f"{value}:{value}"


def _is_within(path, parent):
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def sandbox_argv(workdir, *, ro_paths=(), rw_paths=(), memory_limit_mb=None, cpu_seconds=None,
                 max_processes=None, max_file_size_mb=None, tmp_size_mb=None, workdir_size_mb=None,
                 sandbox_uid=None, env=None, env_passthrough=DEFAULT_ENV_PASSTHROUGH,
                 source_env=None, jail=None):
    """The command prefix that runs a command in the sandbox; append the command to it.

    ``workdir`` is the cwd: a private tmpfs of ``workdir_size_mb`` with each entry of the host
    directory bound read-only on top (writes stay inside).  ``ro_paths`` and ``rw_paths`` are extra
    host paths bound at the same place read-only / read-write.  The interpreter's prefixes (this
    venv and its base Python) are always bound read-only.  A limit left ``None`` takes the default
    of the same-named :class:`SandboxedKernelManager` trait; 0 switches it off.  ``jail`` (a
    :class:`~autograder.sandbox.cgroup.Jail`) puts the join of its cgroup in front, so the total memory and
    process count are capped; call ``jail.watch(pid)`` after starting the command and
    ``jail.close()`` when it is over.  ``env`` sets extra variables inside; ``env_passthrough``
    names variables copied from ``source_env`` (default ``os.environ``) when set there.  Stdin,
    stdout and stderr are inherited through bwrap, so pipes work.  When run as root the command
    runs as host uid ``sandbox_uid``, which must be able to read the files of ``workdir`` (see
    :func:`make_sandbox_readable`).
    """
    from autograder.sandbox.kernel import SandboxedKernelManager  # its traits hold the defaults
    defaults = SandboxedKernelManager.class_traits()

    def setting(value, name):
        return defaults[name].default_value if value is None else value

    memory_limit_mb = setting(memory_limit_mb, "memory_limit_mb")
    cpu_seconds = setting(cpu_seconds, "cpu_seconds")
    max_processes = setting(max_processes, "max_processes")
    max_file_size_mb = setting(max_file_size_mb, "max_file_size_mb")
    tmp_size_mb = setting(tmp_size_mb, "tmp_size_mb")
    workdir_size_mb = setting(workdir_size_mb, "workdir_size_mb")
    sandbox_uid = setting(sandbox_uid, "sandbox_uid")
    bwrap = _which("bwrap")
    if not bwrap:
        raise FileNotFoundError(BWRAP_MISSING_HELP)
    root = _running_as_root()
    helpers = {name: _which(name) for name in _HELPERS}
    needed = ("prlimit", "setpriv") if root else ("prlimit",)
    missing = [n for n in needed if not helpers[n]]
    if missing:
        raise FileNotFoundError(f"the sandbox needs {', '.join(missing)} (util-linux), not found")

    workdir = os.path.realpath(os.fspath(workdir))
    if workdir == "/" or not os.path.isdir(workdir):
        raise ValueError(f"not a usable working directory for the sandbox: {workdir!r}")

    # `env -i`: bwrap itself (and the sandbox's pid 1, which the sandboxed user can inspect when
    # the grader is not root) must not carry the parent's environment either.
    # The cgroup join runs first, outside the sandbox: nothing started by bwrap escapes it.
    argv = [*(jail.join_argv() if jail is not None else []), _which("env") or "/usr/bin/env", "-i", bwrap]
    if root:
        # Privileged mode, no user namespace (see module docstring); all capabilities dropped
        # except those setpriv needs to switch to the unprivileged uid, which it then drops.
        argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                 "--unshare-cgroup-try", "--cap-drop", "ALL"]
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
            argv += ["--cap-add", cap]
    else:
        argv += ["--unshare-all", "--unshare-user"]
        if _bwrap_supports("--disable-userns"):  # bwrap >= 0.8
            argv.append("--disable-userns")
    argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]

    # --- file system, in mount order ------------------------------------------------------
    host_mounts = []  # binds of host dirs, /proc, /dev: what lies below them already exists
    created = set()  # directories made by bwrap (tmpfs and --dir): their children do not

    def ensure_parents(dest):
        parts = dest.strip("/").split("/")[:-1]
        cur = ""
        for part in parts:
            cur += "/" + part
            if cur in created or any(_is_within(cur, m) for m in host_mounts):
                continue
            argv.extend(["--perms", "0755", "--dir", cur])  # bwrap would make it 0700 as root
            created.add(cur)

    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            argv.extend(["--symlink", os.readlink(d), d])
        elif os.path.isdir(d):
            argv.extend(["--ro-bind", d, d])
        else:
            continue
        host_mounts.append(d)
    argv.extend(["--perms", "0755", "--dir", "/etc"])
    created.add("/etc")
    for name in ETC_ALLOWLIST:
        if os.path.exists(os.path.join("/etc", name)):
            argv.extend(["--ro-bind", f"/etc/{name}", f"/etc/{name}"])
    argv.extend(["--proc", "/proc", "--dev", "/dev"])
    host_mounts += ["/proc", "/dev"]
    tmp_size = ["--size", str(int(tmp_size_mb) << 20)] if tmp_size_mb else []
    argv.extend(["--perms", "1777", *tmp_size, "--tmpfs", "/dev/shm"])
    argv.extend(["--perms", "1777", *tmp_size, "--tmpfs", "/tmp"])
    created.add("/tmp")

    binds = {workdir: "tmpfs"}
    for p in [*python_paths(), *map(os.fspath, ro_paths)]:
        for q in {os.path.abspath(p), os.path.realpath(p)}:
            if os.path.exists(q):
                binds.setdefault(q, "--ro-bind")
    for entry in sorted(os.scandir(workdir), key=lambda e: e.name):
        # a link is re-created as the same link: it resolves in the sandbox's view, not the host's
        if entry.is_symlink():
            binds.setdefault(entry.path, ("--symlink", os.readlink(entry.path)))
        elif entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
            binds.setdefault(entry.path, "--ro-bind")
    for p in map(os.fspath, rw_paths):
        q = os.path.realpath(p)
        if not os.path.exists(q):
            raise FileNotFoundError(f"sandbox rw path does not exist: {q}")
        binds[q] = "--bind"
    # parents before children, so a read-write dir inside a read-only one stays writable
    for dest in sorted(binds, key=lambda s: (s.count("/"), s)):
        if dest == "/":
            raise ValueError("refusing to bind / into the sandbox")
        ensure_parents(dest)
        how = binds[dest]
        if how == "tmpfs":
            size = ["--size", str(int(workdir_size_mb) << 20)] if workdir_size_mb else []
            argv.extend(["--perms", "1777", *size, "--tmpfs", dest])
            created.add(dest)
            continue
        if isinstance(how, tuple):
            argv.extend([how[0], how[1], dest])
            continue
        argv.extend([how, dest, dest])
        host_mounts.append(dest)
    argv.extend(["--chdir", workdir])

    # --- environment ------------------------------------------------------------------------
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    inside = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", **SANDBOX_ENV}
    source_env = os.environ if source_env is None else source_env
    for name in env_passthrough or ():
        if name in source_env:
            inside[name] = source_env[name]
    inside.update(env or {})
    argv.append("--clearenv")
    for key, value in inside.items():
        argv.extend(["--setenv", key, str(value)])
    argv.append("--")

    # --- inside: drop to an unprivileged uid (root only), then the limits ----------------------
    if root:
        uid = int(sandbox_uid)
        argv += [helpers["setpriv"], f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--"]
        # A user namespace of its own makes RLIMIT_NPROC count this sandbox's processes only;
        # without one (user namespaces forbidden to that uid) the count is shared by every
        # process of the uid, e.g. all sandboxes running at the same time.
        if _uid_can_unshare_user(uid):
            argv += [helpers["unshare"], "--user", "--"]
    limits = ["--core=0:0"]
    if memory_limit_mb:
        limits.append("--as=" + _limit(resource.RLIMIT_AS, int(memory_limit_mb) << 20))
    if cpu_seconds:
        limits.append("--cpu=" + _limit(resource.RLIMIT_CPU, int(cpu_seconds)))
    if max_processes:
        limits.append("--nproc=" + _limit(resource.RLIMIT_NPROC, int(max_processes)))
    if max_file_size_mb:
        limits.append("--fsize=" + _limit(resource.RLIMIT_FSIZE, int(max_file_size_mb) << 20))
    argv += [helpers["prlimit"], *limits, "--"]
    return argv


def sandbox_uid_for(sandbox_uid=DEFAULT_SANDBOX_UID):
    """The host uid sandboxed processes run as: ``sandbox_uid`` as root, else our own uid."""
    return int(sandbox_uid) if _running_as_root() else os.getuid()


def make_sandbox_readable(path):
    """Let the sandbox's uid read the files below ``path`` (root only; a no-op otherwise).

    As root, the sandbox runs as an unprivileged uid (see the module docstring): files and
    directories that uid could not read are made world-readable (never following symlinks).  The
    sandbox never needs to write host files: its working directory is a private tmpfs.
    """
    if _running_as_root():
        _make_readable(os.path.realpath(os.fspath(path)))


@contextlib.contextmanager
def grant_sandbox_write(path, sandbox_uid=None):
    """Kept for callers written when the working directory was the host's: the sandbox now writes
    to a private tmpfs, so all that is left to do is :func:`make_sandbox_readable`."""
    make_sandbox_readable(path)
    yield


def _make_readable(top):
    for dirpath, dirnames, filenames in os.walk(top):  # does not follow symlinks
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                want = st.st_mode | stat.S_IROTH | stat.S_IXOTH
            elif stat.S_ISREG(st.st_mode):
                want = st.st_mode | stat.S_IROTH | (stat.S_IXOTH if st.st_mode & stat.S_IXUSR else 0)
            else:
                continue
            if want != st.st_mode:
                os.chmod(p, stat.S_IMODE(want))


@functools.lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """bwrap is installed and can actually start a sandbox here (namespaces allowed)."""
    if not _which("bwrap"):
        return False
    with tempfile.TemporaryDirectory(prefix="bwrap-probe-") as d:
        try:
            argv = sandbox_argv(d)
        except (OSError, ValueError):
            return False
        try:
            probe = subprocess.run([*argv, "true"], stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return probe.returncode == 0
