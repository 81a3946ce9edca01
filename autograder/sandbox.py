"""Run untrusted student code (a Jupyter kernel, or any command) in a bubblewrap sandbox.

What the sandboxed process gets:

* no network: a new, empty network namespace (only a loopback with nothing listening), so the
  kernel talks to its client over unix sockets (jupyter ``transport='ipc'``) in a private
  directory bound into the sandbox;
* a file system that shows only what is needed to run Python: /usr (+ the /bin, /lib...
  symlinks), a few harmless files of /etc, the interpreter's prefixes (the venv and its base
  Python) read-only, a private size-capped tmpfs on /tmp and /dev/shm, and the working directory
  read-write.  Everything else -- the course directory around the working directory, the kit's
  repository, home directories -- does not exist in there;
* a clean environment (``--clearenv``) with a minimal set of variables plus an allow-list passed
  through from the parent;
* its own pid, ipc, uts and cgroup namespaces (``--die-with-parent``, ``--new-session``);
* resource limits set with ``prlimit`` inside the sandbox: address space, CPU seconds, number of
  processes, file size, no core dumps.

RLIMIT_NPROC and root: the kernel never applies RLIMIT_NPROC to processes whose real uid is the
host's root (INIT_USER), even inside a user namespace and even with ``bwrap --uid 65534`` (that
only renames uid 0 inside the namespace).  So when the grader runs as root, the sandbox runs
bwrap in its privileged mode without a user namespace, lets the command inside switch to an
unprivileged host uid (``setpriv``, default 65534 = nobody; all capabilities dropped and
no_new_privs set), then enters a fresh user namespace (``unshare --user``) so that the process
count is per sandbox (kernel >= 5.14 counts RLIMIT_NPROC per user namespace) instead of shared by
every process of that uid, then applies the limits.  The working directory is therefore made
writable for that uid while a kernel runs (see :func:`grant_sandbox_write`).  (Plain
``bwrap --unshare-all`` as root would also leave the command uid 0 with every capability inside
its user namespace, e.g. able to remount the read-only binds.)  As a normal user, bwrap makes its
own user namespace (``--unshare-all --disable-userns``) and the limits apply directly.

Not covered: the memory limit is per process (RLIMIT_AS), so up to ``max_processes`` times it in
total, plus the tmpfs sizes; disk use of the working directory is only capped per file.  A cgroup
would be needed for aggregate memory / disk quotas.
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
import weakref

from jupyter_client.manager import AsyncKernelManager, KernelManager
from traitlets import Dict, Integer, List, Unicode

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


def sandbox_argv(workdir, *, ro_paths=(), rw_paths=(), memory_limit_mb=2048, cpu_seconds=120,
                 max_processes=64, max_file_size_mb=64, env=None,
                 env_passthrough=DEFAULT_ENV_PASSTHROUGH, source_env=None, tmp_size_mb=256,
                 sandbox_uid=DEFAULT_SANDBOX_UID):
    """The command prefix that runs a command in the sandbox; append the command to it.

    ``workdir`` becomes the read-write working directory (and the cwd); ``ro_paths`` and
    ``rw_paths`` are extra host paths bound at the same place read-only / read-write.  The
    interpreter's prefixes (this venv and its base Python) are always bound read-only.  A limit of
    ``None`` or 0 is not applied.  ``env`` sets extra variables inside; ``env_passthrough`` names
    variables copied from ``source_env`` (default ``os.environ``) when set there.  Stdin, stdout
    and stderr are inherited through bwrap, so pipes work.  When run as root the command runs as
    host uid ``sandbox_uid``: it can only write to the working directory if that uid may (see
    :func:`grant_sandbox_write`).
    """
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
    argv = [_which("env") or "/usr/bin/env", "-i", bwrap]
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

    binds = {}
    for p in [*python_paths(), *map(os.fspath, ro_paths)]:
        for q in {os.path.abspath(p), os.path.realpath(p)}:
            if os.path.exists(q):
                binds.setdefault(q, "--ro-bind")
    for p in [workdir, *map(os.fspath, rw_paths)]:
        q = os.path.realpath(p)
        if not os.path.exists(q):
            raise FileNotFoundError(f"sandbox rw path does not exist: {q}")
        binds[q] = "--bind"
    # parents before children, so a read-write dir inside a read-only one stays writable
    for dest in sorted(binds, key=lambda s: (s.count("/"), s)):
        if dest == "/":
            raise ValueError("refusing to bind / into the sandbox")
        ensure_parents(dest)
        argv.extend([binds[dest], dest, dest])
        host_mounts.append(dest)
    argv.extend(["--chdir", workdir])

    # --- environment ------------------------------------------------------------------------
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    inside = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
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


@contextlib.contextmanager
def grant_sandbox_write(path, sandbox_uid=DEFAULT_SANDBOX_UID):
    """Let the sandboxed uid create files in directory ``path`` while the block runs.

    Only matters when root: the directory itself (not its contents) is chowned to the sandbox
    uid and given back afterwards; files and directories below it that the uid could not read are
    made world-readable (never following symlinks).  A no-op for a normal user.
    """
    restore = _grant(os.fspath(path), sandbox_uid)
    try:
        yield
    finally:
        restore()


def _grant(path, sandbox_uid):
    if not _running_as_root():
        return lambda: None
    uid = int(sandbox_uid)
    path = os.path.realpath(path)
    _make_readable(path)
    st = os.lstat(path)
    os.chown(path, uid, uid, follow_symlinks=False)

    def restore():
        try:
            if os.lstat(path).st_ino == st.st_ino:
                os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        except OSError:
            pass
    return restore


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


def _short_tmp_root():
    # unix socket paths are limited to ~107 bytes: keep the socket directory short
    for candidate in ("/tmp", tempfile.gettempdir()):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK) and len(candidate) < 60:
            return candidate
    return None


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel runs in the bubblewrap sandbox of :func:`sandbox_argv`.

    The kernel talks over ipc (unix sockets) in a private temporary directory bound into the
    sandbox; its cwd (the ``cwd`` launch argument, e.g. nbgrader's autograded submission folder)
    is the only writable host directory.  Interrupts are sent as ``interrupt_request`` messages on
    the control channel (the kernel runs in a pid namespace behind bwrap; a SIGINT to bwrap would
    kill the sandbox instead of interrupting).  Shutdown kills bwrap, which kills the whole pid
    namespace.
    """

    memory_limit_mb = Integer(2048, help="Address-space limit of each sandboxed process (MiB); 0: none").tag(config=True)
    cpu_seconds = Integer(120, help="CPU-time limit of each sandboxed process (s); 0: none").tag(config=True)
    max_processes = Integer(64, help="Processes/threads the sandbox may have at once; 0: none").tag(config=True)
    max_file_size_mb = Integer(64, help="Largest file the sandbox may write (MiB); 0: none").tag(config=True)
    tmp_size_mb = Integer(256, help="Size of the sandbox's private /tmp and /dev/shm (MiB)").tag(config=True)
    sandbox_uid = Integer(DEFAULT_SANDBOX_UID, help="Host uid of the kernel when grading as root").tag(config=True)
    extra_ro_paths = List(Unicode(), help="More host paths visible read-only in the sandbox").tag(config=True)
    extra_rw_paths = List(Unicode(), help="More host paths visible read-write in the sandbox").tag(config=True)
    env_passthrough = List(Unicode(), list(DEFAULT_ENV_PASSTHROUGH),
                           help="Variables copied from the grader's environment if set").tag(config=True)
    extra_env = Dict(help="Variables set in the sandbox").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.transport = "ipc"
        self.cache_ports = False
        self._sandbox_dir = None
        self._sandbox_finalizer = None

    def _make_sandbox_dir(self, workdir):
        outer = os.path.realpath(tempfile.mkdtemp(prefix="nbsbx-", dir=_short_tmp_root()))
        # the sockets and connection file (with the message-signing key) live one level down,
        # under a random name in a directory that only its owner may list
        d = tempfile.mkdtemp(dir=outer)
        restore_workdir = lambda: None  # noqa: E731
        if _running_as_root():
            os.chmod(outer, 0o711)
            os.chown(d, self.sandbox_uid, self.sandbox_uid)
            restore_workdir = _grant(workdir, self.sandbox_uid)
        self._sandbox_dir = d
        self._sandbox_finalizer = weakref.finalize(self, _cleanup_sandbox_dir, outer, restore_workdir)
        self.connection_file = os.path.join(d, "kernel.json")
        self.ip = os.path.join(d, "k")

    async def _async_pre_start_kernel(self, **kw):
        if not bwrap_available():
            raise RuntimeError(BWRAP_MISSING_HELP)
        workdir = os.path.realpath(kw.get("cwd") or os.getcwd())
        if self._sandbox_dir is None or not os.path.isdir(self._sandbox_dir):
            self._make_sandbox_dir(workdir)
        self.transport = "ipc"
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        if _running_as_root() and os.path.exists(self.connection_file):
            os.chown(self.connection_file, self.sandbox_uid, self.sandbox_uid)
        self.kernel_spec.interrupt_mode = "message"
        launch_env = kw.get("env") or os.environ
        prefix = sandbox_argv(
            workdir,
            ro_paths=[*self.extra_ro_paths, *_kernel_prefix(kernel_cmd)],
            rw_paths=[self._sandbox_dir, *self.extra_rw_paths],
            memory_limit_mb=self.memory_limit_mb,
            cpu_seconds=self.cpu_seconds,
            max_processes=self.max_processes,
            max_file_size_mb=self.max_file_size_mb,
            # the kernel's parent inside the pid namespace is bwrap's init (pid 1); saying so
            # keeps ipykernel from polling for a parent change and from printing a console note
            env={"JPY_PARENT_PID": "1", **self.extra_env},
            env_passthrough=self.env_passthrough,
            source_env=launch_env,
            tmp_size_mb=self.tmp_size_mb,
            sandbox_uid=self.sandbox_uid,
        )
        kw["cwd"] = workdir
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # bwrap's own; cleared inside
        return prefix + list(kernel_cmd), kw

    async def _async_cleanup_resources(self, restart=False):
        await KernelManager._async_cleanup_resources(self, restart=restart)
        if not restart and self._sandbox_finalizer is not None:
            self._sandbox_finalizer()
            self._sandbox_dir = None
            self._sandbox_finalizer = None

    cleanup_resources = _async_cleanup_resources
    pre_start_kernel = _async_pre_start_kernel


def _kernel_prefix(kernel_cmd):
    """A kernelspec may name an absolute interpreter outside this venv: bind its prefix too."""
    if not kernel_cmd or not os.path.isabs(kernel_cmd[0]):
        return []
    exe = os.path.realpath(kernel_cmd[0])
    known = python_paths() + ["/usr"]
    if any(_is_within(exe, p) for p in known):
        return []
    return [os.path.dirname(os.path.dirname(exe))]


def _cleanup_sandbox_dir(path, restore_workdir):
    try:
        restore_workdir()
    finally:
        shutil.rmtree(path, ignore_errors=True)
